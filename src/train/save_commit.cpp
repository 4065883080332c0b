#include "train/save_commit.hpp"

#include "io/file.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit {

std::string save_id_in(const std::map<std::string, std::string>& meta) {
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

}  // namespace uvit
