// How `uvit sample`, `uvit eval` and `uvit fid-features` share their work among the ranks of an
// mpirun/srun job (docs/distributed.md): contiguous ranges in whole units (mini-batches), so that
// every unit is computed exactly as in a single process, and a gather to rank 0 in rank order.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "uvit/dist.hpp"

namespace uvit {
class ClipTokenizer;
}

namespace uvit::cli {

struct RankRange {
  long begin = 0, end = 0;
};
// This rank's items of [0, n): whole units of `unit` items (the last may be partial), balanced.
RankRange rank_range(const Comm& c, long n, long unit);
// Every rank's values in rank order on rank 0 (empty elsewhere).
template <class T>
std::vector<T> gather_to_root(Comm& c, const std::vector<T>& mine) {
  if (c.size() == 1) return mine;
  std::vector<uint8_t> b = c.gatherv_bytes(mine.data(), mine.size() * sizeof(T), 0);
  std::vector<T> out(b.size() / sizeof(T));
  if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// Under mpirun every rank reads its files itself, and one path can name different files on
// different nodes (a node-local or stale copy, a checkpoint being rewritten): right after a load
// the ranks compare hash() of what they loaded (src/dist/weights_hash.hpp; computed only with
// several ranks), and a job whose ranks differ is refused in one line from rank 0
// (SameOnEveryRank: every rank exits 1) naming `what` ("--weights W") and the ranks that differ;
// `other` says what they read ("other weights", "another vocabulary").
void check_loaded_alike(Comm& c, const std::string& what, const std::function<uint64_t()>& hash,
                        const std::string& other = "other weights");
// The same for a small file read by path (latent statistics, a config): its bytes ("other bytes");
// a path that names no file (a built-in config's name) is compared as the name itself.
void check_file_alike(Comm& c, const std::string& what, const std::string& path);
// The settings every rank resolved (`resolved`, a config's JSON, less the `per_node` entries,
// JSON pointers such as "/dataset/path"; numbers by value, cli/flat_settings.hpp), compared by a
// hash: `count` ranks differ from rank 0 (`ranks`: " 1, 3"), the same on every rank, so all refuse
// together; on rank 0 `setting` names the first setting in which the first of them differs
// ("optimizer.lr 0.0005 on rank 1 against rank 0's 0.001"). `hashes`: every rank's settings_hash,
// where an earlier exchange carried them (checked_together's digest); empty: exchanged here (8
// bytes a rank). Nothing else is sent unless they differ.
struct SettingsDiff {
  int count = 0;
  std::string ranks, setting;
};
uint64_t settings_hash(const nlohmann::json& resolved,
                       const std::vector<std::string>& per_node = {});
SettingsDiff compare_settings(Comm& c, const nlohmann::json& resolved,
                              const std::vector<std::string>& per_node = {},
                              const std::vector<uint64_t>& hashes = {});
// The config as resolved (--config's file or preset, then --set): its JSON, "other settings",
// and the first setting that differs.
void check_config_alike(Comm& c, const std::string& config, const nlohmann::json& resolved);
// uvit train's settings as resolved (the config or the run's, --set, --steps, --batch, --seed,
// --data), before anything is read or trained; all but dataset.path (a node-local copy of the data
// may lie at another path on each node). `hashes`: every rank's train_settings_hash, carried by
// the exchange of the training function's own checks (one collective round for both).
uint64_t train_settings_hash(const nlohmann::json& resolved);
void check_train_settings_alike(Comm& c, const nlohmann::json& resolved,
                                const std::vector<uint64_t>& hashes);
// Each path given for the inputs in `files` ({"--prompts", path}, ...; empty: not given), as
// check_file_alike.
void check_files_alike(Comm& c, const std::vector<std::pair<std::string, std::string>>& files);
// A latent model's autoencoder files besides its weights, where named: the config
// (`config`, else the preset's autoencoder.config) and the latent statistics (`latent_stats`,
// else the preset's autoencoder.latent_stats), as load_preset_autoencoder resolves them.
void check_autoencoder_files_alike(Comm& c, const nlohmann::json& preset, const std::string& config,
                                   const std::string& latent_stats);
// The CLIP text side: the weights --clip (`weights_hash`), the vocabulary loaded (--vocab, else
// clip_vocab_path's) and --clip-config (where given).
void check_clip_alike(Comm& c, const std::string& clip,
                      const std::function<uint64_t()>& weights_hash, const ClipTokenizer& tok,
                      const std::string& clip_config, const std::string& vocab);

}  // namespace uvit::cli
