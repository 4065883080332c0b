#include "train/snapshots.hpp"

#include <fstream>
#include <iterator>

namespace fs = std::filesystem;

namespace uvit {

namespace {
// A whole file, "" when it cannot be read (a snapshot without a log copy).
std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

bool snapshot_is_live(const fs::path& run, const fs::path& folder) {
  std::error_code ec;
  if (fs::equivalent(run, folder, ec) || !fs::exists(folder / kSnapshotLog, ec)) return true;
  const std::string copy = read_all(folder / kSnapshotLog);
  return read_all(run / "log.jsonl").compare(0, copy.size(), copy) == 0;
}

std::vector<long> stale_snapshots(const fs::path& run) {
  std::vector<long> out;
  for (const auto& [step, folder] : snapshot_folders(run))
    if (!snapshot_is_live(run, folder)) out.push_back(step);
  return out;
}

}  // namespace uvit
