#include "train/save_room.hpp"

#include <cstdint>
#include <cstring>
#include <system_error>

#include "core/mem_limit.hpp"
#include "train/save_commit.hpp"
#include "train/snapshots.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit {

namespace {
// Bytes free to this user on the disk of `run`; SIZE_MAX when unknown.
size_t free_bytes(const fs::path& run) {
  std::error_code ec;
  const fs::space_info s = fs::space(run, ec);
  return ec ? size_t(-1) : size_t(s.available);
}
std::string room_clause(const fs::path& run, size_t checkpoint_bytes) {
  const size_t have = free_bytes(run);
  if (have >= checkpoint_bytes) return "";
  return cat("a save writes a whole checkpoint (", gib(checkpoint_bytes),
             ") before it replaces the last one, and the disk of ", run.string(), " has ",
             gib(have), " free");
}
}  // namespace

std::string save_room_warning(const fs::path& run, size_t checkpoint_bytes, long snapshot_step) {
  if (const std::string room = room_clause(run, checkpoint_bytes); !room.empty())
    return cat(room,
               ": the first save will fail unless space is freed (the steps before it are "
               "then lost)");
  if (snapshot_step <= 0) return "";
  // RUN's files replace those it holds (their room freed), then the snapshot is written.
  std::error_code ec;
  size_t held = 0;
  for (const char* f : kCommitOrder)  // the log is the snapshot's copy: RUN's own is not replaced
    if (std::strcmp(f, kSnapshotLog) != 0)
      if (const uintmax_t n = fs::file_size(run / f, ec); !ec) held += n;
  const uintmax_t log = fs::file_size(run / "log.jsonl", ec);
  const size_t need = (held < checkpoint_bytes ? checkpoint_bytes - held : 0) + checkpoint_bytes +
                      (ec ? 0 : size_t(log));
  const size_t have = free_bytes(run);
  if (have >= need) return "";
  return cat("the first save, at step ", snapshot_step,
             ", writes the run's checkpoint and a snapshot of it (",
             (run / "ckpts" / std::to_string(snapshot_step)).string(), "), which take ", gib(need),
             " more than the run holds now, and the disk of ", run.string(), " has ", gib(have),
             " free: the snapshot will fail unless space is freed (the run then stops at step ",
             snapshot_step, ", its checkpoint written)");
}

std::string run_stands(const fs::path& run, long reached, const std::string& room) {
  const fs::path state = run / "train_state.safetensors";
  std::error_code ec;
  std::string kept;  // the checkpoint RUN holds: whole, as a save writes into RUN/.saving
  long kept_step = 0;  // its step; 0 also where unknown or none
  if (fs::exists(state, ec)) {
    try {
      const std::string step = read_safetensors_metadata(state.string()).at("step");
      kept = "its checkpoint of step " + step;
      kept_step = std::stol(step);
    } catch (const std::exception&) {
      kept = "its previous checkpoint";
    }
  }
  const bool steps_lost = reached > kept_step;
  return cat(kept.empty() ? cat(run.string(), " holds no checkpoint yet",
                                steps_lost ? " (the steps trained are lost)" : "")
                          : cat(run.string(), " still holds ", kept,
                                steps_lost ? " (the steps since are lost)" : ""),
             room.empty() ? "" : "; ", room, ": ", "free space, then ",
             kept.empty() ? "run the same command again"
                          : cat("continue with uvit train --out ", run.string(), " --resume"));
}

std::string save_failure(const fs::path& run, long step, const std::string& what,
                         size_t checkpoint_bytes) {
  return cat("the checkpoint of step ", step, " was not written (", what, "); ",
             run_stands(run, step, room_clause(run, checkpoint_bytes)));
}

}  // namespace uvit
