#include "train/snapshots.hpp"

#include <algorithm>
#include <fstream>
#include <iterator>

#include "train/save_commit.hpp"

namespace fs = std::filesystem;

namespace uvit {

namespace {
// A whole file, "" when it cannot be read (a snapshot without a log copy).
std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Whether `folder`'s log copy begins `log` (the run's); true without a copy. A save cut between its
// moves is judged by the copy it moves in (from .saving): the folder's once --resume finishes it.
bool begins(const std::string& log, const fs::path& folder) {
  std::error_code ec;
  const fs::path file = checkpoint_file(folder, kSnapshotLog);
  if (!fs::exists(file, ec)) return true;
  const std::string copy = read_all(file);
  return log_copy_is_live(log, &copy);
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
  const auto newest = std::find_if(live.rbegin(), live.rend(),
                                   [](const auto& s) { return checkpoint_resumes(s.second); });
  if (newest == live.rend()) return "";
  const std::string p = newest->second.string();
  return "its newest complete snapshot is " + p + ": --resume " + p;
}

}  // namespace uvit
