// How a checkpoint folder's files are committed (docs/cli.md "Resume", docs/formats.md "Training
// runs"): a save writes them into DIR/.saving, then moves them into DIR in one order; each file's
// metadata `save_id` names the saved state, so files of two saves side by side are told apart even
// at the same step, and a save cut between its moves can be finished from what .saving holds.
#pragma once
#include <array>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

namespace uvit {

inline constexpr const char* kSaveIdKey = "save_id";
inline constexpr const char* kSaveStage = ".saving";
// The order of the moves: train_state last (it marks the folder complete), nnet first (a DIR
// whose nnet has the save_id of .saving's files had its moves started: all of them were written).
// The log copy is a snapshot's only.
inline constexpr std::array<const char*, 4> kCommitOrder = {
    "nnet.safetensors", "nnet_ema.safetensors", "log.jsonl", "train_state.safetensors"};

using FileMetadata = std::map<std::string, std::string>;

// The save_id in a checkpoint file's metadata `meta`; "" for none (written before save ids).
std::string save_id_in(const FileMetadata& meta);
// The same read from the file; "" also when the file is missing or unreadable.
std::string save_id_of(const std::filesystem::path& file);

// Whether `dir` holds a save cut between its moves that finish_interrupted_save finishes: its
// nnet moved in, train_state still in DIR/.saving, all of one save_id (a run's very first save
// cut so has no train_state in DIR yet, and is resumable all the same).
bool interrupted_save_pending(const std::filesystem::path& dir);

// A save of `dir` cut between its moves (a SIGKILL, an OOM kill, a power cut) left DIR holding its
// first files and DIR/.saving the rest, all of one save_id: moves those in (roll forward) and
// returns true. Anything else (no .saving, or one of a save that died before its moves: DIR holds
// the previous checkpoint whole) is left as it is: false.
bool finish_interrupted_save(const std::filesystem::path& dir);

// Removes DIR/.saving left by a save that died before its moves (call finish_interrupted_save
// first). A folder that cannot be removed (another user's, a read-only one) is refused in one line
// naming it and the way out, before the run trains: std::filesystem's own message names no way out.
void remove_dead_save(const std::filesystem::path& dir);

// The file `name` of the checkpoint in `dir` as --resume reads it: DIR/.saving/NAME while DIR
// holds a save cut between its moves (interrupted_save_pending) and .saving holds that file, else
// DIR/NAME. --resume finishes such a save first; a fork of a snapshot whose run another uvit train
// holds does not write there, and reads the save whole this way instead.
std::filesystem::path checkpoint_file(const std::filesystem::path& dir, const char* name);

// Whether weights with metadata `nnet` and `ema` belong with the train_state whose metadata is
// `state`: of its step, and of its save_id when it records one (a train_state written before
// save ids: the step alone). --resume loads no other pairing.
bool same_save(const FileMetadata& state, const FileMetadata& nnet, const FileMetadata& ema);

// Whether the checkpoint in `dir` resumes: its three files, as checkpoint_file finds them, are
// readable and of one save (a save cut between its moves counts: --resume finishes it).
bool checkpoint_resumes(const std::filesystem::path& dir);

// What --resume reads of the checkpoint in `dir` beside the weights, as checkpoint_file finds it:
// train_state's metadata (its step and save_id) and, with `log_copy` (a snapshot), its copy of the
// run's log (nullopt: none), both of one save. A save moving its files in meanwhile (another uvit
// train re-saving the snapshot a fork reads) changes what train_state records, and both are read
// again. The caller checks that the weights it loaded are of this save (their train_state's
// save_id), so that the step and the log rows it takes go with them (docs/cli.md "Resume").
struct CheckpointRecord {
  FileMetadata state;
  std::optional<std::string> log;
};
CheckpointRecord read_checkpoint_record(const std::filesystem::path& dir, bool log_copy);

}  // namespace uvit
