// A run's snapshots, RUN/ckpts/STEP (docs/cli.md "Resume"): the trainer prunes the oldest, resume
// names the newest complete one. One rule for which folders are snapshots, and one for which of
// them belong to the branch the run's log holds.
#pragma once
#include <algorithm>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace uvit {

// The folders of run/ckpts whose names are a step (digits, at most 12: a longer name is not one
// uvit wrote and would overflow), as (step, folder), oldest first; none when ckpts/ is missing.
inline std::vector<std::pair<long, std::filesystem::path>> snapshot_folders(
    const std::filesystem::path& run) {
  std::vector<std::pair<long, std::filesystem::path>> out;
  std::error_code ec, dir_ec;  // dir_ec: a folder that cannot be stat'ed is skipped, not the rest
  for (std::filesystem::directory_iterator it(run / "ckpts", ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string n = it->path().filename().string();
    if (!n.empty() && n.size() <= 12 && n.find_first_not_of("0123456789") == std::string::npos &&
        it->is_directory(dir_ec))
      out.emplace_back(std::stol(n), it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Each snapshot holds RUN/log.jsonl as it was when the snapshot was written
// (RUN/ckpts/STEP/log.jsonl), so that one of a branch the run went back from keeps its history.
inline constexpr const char* kSnapshotLog = "log.jsonl";

// Whether the checkpoint in `folder` belongs to the branch RUN/log.jsonl holds now: its log copy
// begins the run's log, byte for byte (the log only grows, or is cut back to a step with rows
// rewritten as they were); for a save cut between its moves, the copy in its .saving. The run
// folder itself, and a snapshot without a copy (written before snapshots kept one), count as live:
// nothing says otherwise.
bool snapshot_is_live(const std::filesystem::path& run, const std::filesystem::path& folder);
// The same rule on a log copy already read (`copy`, null for none) and the run's log (`run_log`).
inline bool log_copy_is_live(const std::string& run_log, const std::string* copy) {
  return !copy || run_log.compare(0, copy->size(), *copy) == 0;
}

// The run's snapshots as snapshot_folders lists them, split into live ones and those of a branch
// the run left (stale); the run's log is read once.
struct SnapshotBranches {
  std::vector<std::pair<long, std::filesystem::path>> live, stale;
};
SnapshotBranches snapshot_branches(const std::filesystem::path& run);

// RUN/log.jsonl, the history --resume takes (the rows up to the checkpoint, the precision): one
// that cannot be read (another user's, mode 0600) is refused in one line naming it and why, not
// taken for an empty history. A missing one is refused where the run's snapshots keep copies of
// it (the run had one), and is "" otherwise (nothing says the run had one).
std::string read_run_log(const std::filesystem::path& run);

// What a refusal to resume `run` names instead: "its newest complete snapshot is P: --resume P"
// for the newest snapshot of the run's branch that --resume takes: its files of one save
// (checkpoint_resumes: a copied mix, or a save cut between its moves with .saving gone, would be
// refused in turn; one cut with .saving there is finished); "" for none.
std::string newest_snapshot_hint(const std::filesystem::path& run);

}  // namespace uvit
