#include "cli/rank_split.hpp"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "cli/flat_settings.hpp"
#include "dist/weights_hash.hpp"
#include "uvit/clip.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

namespace {
// The refusal of a file the ranks read differently: `count` ranks (`ranks`: " 1, 3") read `other`
// ("other weights") from `what` ("--weights W") than rank 0.
std::string read_other(const std::string& what, int count, const std::string& ranks,
                       const std::string& other) {
  return cat(what, ": rank", count > 1 ? "s" : "", ranks, " read ", other,
             " from it than rank 0: under mpirun every rank reads the file itself, so the path "
             "must name the same file on every node (a node-local or stale copy? "
             "docs/distributed.md)");
}

// The ranks whose hash in `all` (every rank's, in rank order) differs from rank 0's.
struct Differing {
  int count = 0, first = 0;  // how many, and the lowest
  std::string ranks;         // " 1, 3"
};
Differing differing_ranks(const std::vector<uint64_t>& all) {
  Differing d;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) {
      d.ranks += cat(d.count++ ? ", " : " ", r);
      if (!d.first) d.first = int(r);
    }
  return d;
}
// The same for this rank's `h`, alike on every rank (an allgather of 8 bytes each).
Differing differing_ranks(Comm& c, uint64_t h) {
  std::vector<uint64_t> all(size_t(c.size()));
  c.allgather_bytes(&h, sizeof h, all.data());
  return differing_ranks(all);
}
}  // namespace

RankRange rank_range(const Comm& c, long n, long unit) {
  unit = std::max(1L, unit);
  const long units = (n + unit - 1) / unit, W = c.size(), r = c.rank();
  return {std::min(n, units * r / W * unit), std::min(n, units * (r + 1) / W * unit)};
}

void check_loaded_alike(Comm& c, const std::string& what, const std::function<uint64_t()>& hash,
                        const std::string& other) {
  if (c.size() == 1) return;
  const Differing d = differing_ranks(c, hash());
  if (d.count == 0) return;
  throw SameOnEveryRank(read_other(what, d.count, d.ranks, other));
}

void check_file_alike(Comm& c, const std::string& what, const std::string& path) {
  check_loaded_alike(
      c, what,
      [&] {
        std::error_code ec;
        if (!std::filesystem::is_regular_file(path, ec))
          return hash_bytes(path.data(), path.size(), kWeightsHashSeed);
        const std::vector<uint8_t> b = read_file(path);
        return hash_bytes(b.data(), b.size(), kWeightsHashSeed);
      },
      "other bytes");
}

namespace {
// "optimizer.lr 0.0005 on rank 1 against rank 0's 0.001": the first setting (in key order) whose
// value differs between rank `rank`'s `mine` and rank 0's `root` (flat_settings, whose keys are
// sorted), "unset" where one has none.
std::string first_difference(const nlohmann::json& mine, const nlohmann::json& root, int rank) {
  auto a = mine.begin(), b = root.begin();
  while (a != mine.end() || b != root.end()) {
    const bool take_a = b == root.end() || (a != mine.end() && a.key() < b.key());  // a's only
    const bool take_b = a == mine.end() || (b != root.end() && b.key() < a.key());  // b's only
    std::string key = take_a ? a.key() : b.key();
    const std::string va = take_b ? "unset" : a->dump();
    const std::string vb = take_a ? "unset" : b->dump();
    if (!take_b) ++a;
    if (!take_a) ++b;
    if (va == vb) continue;
    key.erase(0, 1);  // the JSON pointer's leading '/'
    std::replace(key.begin(), key.end(), '/', '.');
    return cat(key, " ", va, " on rank ", rank, " against rank 0's ", vb);
  }
  return "";
}
}  // namespace

uint64_t settings_hash(const nlohmann::json& resolved, const std::vector<std::string>& per_node) {
  const std::string text = flat_settings(resolved, per_node).dump();
  return hash_bytes(text.data(), text.size(), kWeightsHashSeed);
}

SettingsDiff compare_settings(Comm& c, const nlohmann::json& resolved,
                              const std::vector<std::string>& per_node,
                              const std::vector<uint64_t>& hashes) {
  SettingsDiff d;
  if (c.size() == 1) return d;
  const nlohmann::json mine = flat_settings(resolved, per_node);
  const std::string text = mine.dump();
  const Differing r = hashes.empty() ? differing_ranks(c, settings_hash(resolved, per_node))
                                     : differing_ranks(hashes);
  d.count = r.count, d.ranks = r.ranks;
  if (d.count == 0) return d;
  // Only now, and only the first rank that differs: its settings to rank 0, which names the first
  // setting that differs (a few KB, once; the comparison above is 8 bytes a rank).
  const bool sends = c.rank() == r.first;
  std::vector<uint8_t> got = c.gatherv_bytes(text.data(), sends ? text.size() : 0, 0);
  if (c.rank() == 0)
    d.setting = first_difference(nlohmann::json::parse(got.begin(), got.end()), mine, r.first);
  return d;
}

void check_config_alike(Comm& c, const std::string& config, const nlohmann::json& resolved) {
  const SettingsDiff d = compare_settings(c, resolved);
  if (d.count == 0) return;
  throw SameOnEveryRank(cat(read_other("--config " + config, d.count, d.ranks, "other settings"),
                            d.setting.empty() ? "" : "; first difference: " + d.setting));
}

namespace {
// The dataset's path may differ: a node-local copy of the data (a scratch disk) can lie at another
// path on each node. The run records rank 0's (docs/distributed.md).
const std::vector<std::string> kTrainPerNode = {"/dataset/path"};
}  // namespace

uint64_t train_settings_hash(const nlohmann::json& resolved) {
  return settings_hash(resolved, kTrainPerNode);
}

void check_train_settings_alike(Comm& c, const nlohmann::json& resolved,
                                const std::vector<uint64_t>& hashes) {
  const SettingsDiff d = compare_settings(c, resolved, kTrainPerNode, hashes);
  if (d.count == 0) return;
  throw SameOnEveryRank(cat(
      "the training settings: rank", d.count > 1 ? "s" : "", d.ranks,
      " resolved other ones than rank 0", d.setting.empty() ? "" : " (" + d.setting + ")",
      ": every rank resolves --config, --set and the other options itself, so all must be given "
      "the same ones and find the same config (a node's own UVIT_CONFIG_DIR? "
      "docs/distributed.md)"));
}

void check_files_alike(Comm& c, const std::vector<std::pair<std::string, std::string>>& files) {
  for (const auto& [flag, path] : files)
    if (!path.empty()) check_file_alike(c, flag + " " + path, path);
}

void check_autoencoder_files_alike(Comm& c, const nlohmann::json& preset, const std::string& config,
                                   const std::string& latent_stats) {
  const nlohmann::json section = preset.value("autoencoder", nlohmann::json::object());
  // Named as the user gave it: the flag, else the preset's setting.
  auto check = [&](const std::string& flag, const std::string& given, const char* key) {
    const std::string path = given.empty() ? section.value(key, "") : given;
    if (!path.empty())
      check_file_alike(
          c, (given.empty() ? cat("the preset's autoencoder.", key) : flag) + " " + path, path);
  };
  check("--autoencoder-config", config, "config");
  check("--latent-stats", latent_stats, "latent_stats");
}

void check_clip_alike(Comm& c, const std::string& clip,
                      const std::function<uint64_t()>& weights_hash, const ClipTokenizer& tok,
                      const std::string& clip_config, const std::string& vocab) {
  check_loaded_alike(c, "--clip " + clip, weights_hash);
  check_loaded_alike(
      c, vocab.empty() ? "the CLIP vocabulary " + clip_vocab_path("") : "--vocab " + vocab,
      [&] { return tok.hash(); }, "another vocabulary");
  if (!clip_config.empty()) check_file_alike(c, "--clip-config " + clip_config, clip_config);
}

}  // namespace uvit::cli
