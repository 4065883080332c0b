#include "train/save_commit.hpp"

#include <fstream>
#include <iterator>
#include <vector>

#include "io/file.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit {

std::string save_id_in(const FileMetadata& meta) {
  const auto it = meta.find(kSaveIdKey);
  return it == meta.end() ? "" : it->second;
}

std::string save_id_of(const fs::path& file) {
  std::error_code ec;
  if (!fs::is_regular_file(file, ec)) return "";
  try {
    return save_id_in(read_safetensors_metadata(file.string()));
  } catch (const std::exception&) {  // not a checkpoint file uvit wrote whole
    return "";
  }
}

bool interrupted_save_pending(const fs::path& dir) {
  const fs::path stage = dir / kSaveStage;
  std::error_code ec;
  // Moves started (nnet is out of .saving and in DIR with the stage's id) and not finished
  // (train_state, moved last, still staged).
  if (!fs::exists(stage / "train_state.safetensors", ec) || fs::exists(stage / kCommitOrder[0], ec))
    return false;
  const std::string id = save_id_of(dir / kCommitOrder[0]);
  if (id.empty()) return false;
  for (const char* f : kCommitOrder)
    if (fs::path(f).extension() == ".safetensors" && fs::exists(stage / f, ec) &&
        save_id_of(stage / f) != id)
      return false;
  return true;
}

bool finish_interrupted_save(const fs::path& dir) {
  if (!interrupted_save_pending(dir)) return false;
  const fs::path stage = dir / kSaveStage;
  std::error_code ec;
  {
    const io::SignalHold hold;  // as the save's own moves
    for (const char* f : kCommitOrder)
      if (fs::exists(stage / f, ec)) fs::rename(stage / f, dir / f);
  }
  io::sync_dir(dir.string());
  fs::remove_all(stage, ec);
  return true;
}

void remove_dead_save(const fs::path& dir) {
  const fs::path stage = dir / kSaveStage;
  std::error_code ec;
  fs::remove_all(stage, ec);
  UVIT_CHECK(!ec, stage.string(), ": cannot remove what an unfinished save left there (",
             ec.message(), "): its owner can remove it, or continue in a new folder with uvit ",
             "train --resume ", dir.string(), " --out NEW");
}

fs::path checkpoint_file(const fs::path& dir, const char* name) {
  std::error_code ec;
  const fs::path staged = dir / kSaveStage / name;
  return fs::exists(staged, ec) && interrupted_save_pending(dir) ? staged : dir / name;
}

bool same_save(const FileMetadata& state, const FileMetadata& nnet, const FileMetadata& ema) {
  const auto step = [](const FileMetadata& m) {
    const auto it = m.find("step");
    return it == m.end() ? std::string() : it->second;
  };
  const std::string id = save_id_in(state);
  return !step(state).empty() && step(nnet) == step(state) && step(ema) == step(state) &&
         (id.empty() || (save_id_in(nnet) == id && save_id_in(ema) == id));
}

bool checkpoint_resumes(const fs::path& dir) {
  try {
    const auto meta = [&](const char* f) {
      return read_safetensors_metadata(checkpoint_file(dir, f).string());
    };
    return same_save(meta(kCommitOrder[3]), meta(kCommitOrder[0]), meta(kCommitOrder[1]));
  } catch (const std::exception&) {  // a file missing, or not one uvit wrote whole
    return false;
  }
}

CheckpointRecord read_checkpoint_record(const fs::path& dir, bool log_copy) {
  const auto state = [&] {
    return read_safetensors_metadata(checkpoint_file(dir, kCommitOrder[3]).string());
  };
  for (int tries = 1;; ++tries) {
    CheckpointRecord r;
    r.state = state();
    bool moved = false;  // the copy renamed out of .saving between finding it and opening it
    if (log_copy) {
      const fs::path log = checkpoint_file(dir, kCommitOrder[2]);
      std::error_code ec;
      if (std::ifstream in(log, std::ios::binary); in) {
        r.log.emplace(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
      } else if (fs::exists(log, ec)) {
        // There but unreadable (another user's run, mode 0600): read_file's one line says why; a
        // retry would only report it as a save that kept changing.
        const std::vector<uint8_t> b = read_file(log.string());
        r.log.emplace(b.begin(), b.end());
      } else {
        moved = fs::exists(checkpoint_file(dir, kCommitOrder[2]), ec);
      }
    }
    // train_state moves in last: the same record before and after, and no save moved in between.
    if (!moved && state() == r.state) return r;
    UVIT_CHECK(tries < 100, dir.string(),
               ": its checkpoint kept changing while it was read (another uvit train saving into "
               "it); run the command again");
  }
}

}  // namespace uvit
