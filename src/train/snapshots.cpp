#include "train/snapshots.hpp"

#include <algorithm>
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

// Whether `folder`'s log copy begins `log` (the run's); true without a copy.
bool begins(const std::string& log, const fs::path& folder) {
  std::error_code ec;
  if (!fs::exists(folder / kSnapshotLog, ec)) return true;
  const std::string copy = read_all(folder / kSnapshotLog);
  return log.compare(0, copy.size(), copy) == 0;
}
}  // namespace

bool snapshot_is_live(const fs::path& run, const fs::path& folder) {
  std::error_code ec;
  return fs::equivalent(run, folder, ec) || begins(read_all(run / "log.jsonl"), folder);
}

SnapshotBranches snapshot_branches(const fs::path& run) {
  const std::string log = read_all(run / "log.jsonl");
  SnapshotBranches out;
  for (auto& s : snapshot_folders(run)) (begins(log, s.second) ? out.live : out.stale).push_back(s);
  return out;
}

std::string newest_snapshot_hint(const fs::path& run) {
  const auto live = snapshot_branches(run).live;
  std::error_code ec;
  const auto newest = std::find_if(live.rbegin(), live.rend(), [&](const auto& s) {
    return fs::exists(s.second / "train_state.safetensors", ec);
  });
  if (newest == live.rend()) return "";
  const std::string p = newest->second.string();
  return "its newest complete snapshot is " + p + ": --resume " + p;
}

}  // namespace uvit
