#include "cli/rank_split.hpp"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "dist/weights_hash.hpp"
#include "uvit/clip.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

RankRange rank_range(const Comm& c, long n, long unit) {
  unit = std::max(1L, unit);
  const long units = (n + unit - 1) / unit, W = c.size(), r = c.rank();
  return {std::min(n, units * r / W * unit), std::min(n, units * (r + 1) / W * unit)};
}

void check_loaded_alike(Comm& c, const std::string& what, const std::function<uint64_t()>& hash,
                        const std::string& other) {
  if (c.size() == 1) return;
  const uint64_t h = hash();
  std::vector<uint64_t> all(size_t(c.size()));
  c.allgather_bytes(&h, sizeof h, all.data());
  std::string ranks;
  int count = 0;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) ranks += cat(count++ ? ", " : " ", r);
  if (count == 0) return;
  throw SameOnEveryRank(cat(what, ": rank", count > 1 ? "s" : "", ranks, " read ", other,
                            " from it than rank 0: under mpirun every rank "
                            "reads the file itself, so the path must name the same file on every "
                            "node (a node-local or stale copy? docs/distributed.md)"));
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

void check_config_alike(Comm& c, const std::string& config, const nlohmann::json& resolved) {
  check_loaded_alike(
      c, "--config " + config,
      [&] {
        const std::string t = resolved.dump();
        return hash_bytes(t.data(), t.size(), kWeightsHashSeed);
      },
      "other settings");
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
