// The ST-VAE's config and official key layout (docs/stvae.md; DerrickWang005/LaVin-DiT
// lib/model/vae3d.py).
#include <filesystem>
#include <nlohmann/json.hpp>

#include "models/stvae.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

namespace {

constexpr const char* kBuiltin = "lavin_stvae";

nlohmann::json read_json(const std::string& text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(what, ": invalid JSON (", e.what(), ")");
  }
}

}  // namespace

StvaeConfig parse_stvae_config(const std::string& json_text, const std::string& what) {
  const nlohmann::json j = read_json(json_text, what);
  UVIT_CHECK(j.is_object() && j.contains("stvae") && j["stvae"].is_object(), what,
             ": an ST-VAE config is {\"stvae\": {...}}");
  for (const auto& [k, v] : j.items()) UVIT_CHECK(k == "stvae", what, ": unknown field '", k, "'");
  StvaeConfig c;
  for (const auto& [k, v] : j["stvae"].items()) {
    try {
      if (k == "in_channels")
        c.in_channels = v.get<int>();
      else if (k == "out_channels")
        c.out_channels = v.get<int>();
      else if (k == "latent_channels")
        c.latent_channels = v.get<int>();
      else if (k == "layers_per_block")
        c.layers_per_block = v.get<int>();
      else if (k == "block_out_channels")
        c.block_out_channels = v.get<std::vector<int>>();
      else if (k == "temporal_compression_ratio")
        c.temporal_compression_ratio = v.get<int>();
      else if (k == "shift_factor")
        c.shift_factor = v.get<double>();
      else if (k == "scaling_factor")
        c.scaling_factor = v.get<double>();
      else
        fail(what, ": unknown stvae field '", k, "'");
    } catch (const nlohmann::json::exception&) {
      fail(what, ": stvae field '", k, "' has the wrong type");
    }
  }
  UVIT_CHECK(c.in_channels > 0 && c.out_channels > 0 && c.latent_channels > 0 &&
                 c.layers_per_block > 0 && !c.block_out_channels.empty(),
             what, ": channels, layers_per_block and block_out_channels must be positive");
  for (int b : c.block_out_channels)
    UVIT_CHECK(b > 0 && b % 32 == 0, what, ": block_out_channels must be multiples of 32 ",
               "(GroupNorm has 32 groups), got ", b);
  UVIT_CHECK(c.temporal_compression_ratio >= 1 &&
                 (c.temporal_compression_ratio & (c.temporal_compression_ratio - 1)) == 0,
             what, ": temporal_compression_ratio must be a power of 2");
  UVIT_CHECK(c.scaling_factor > 0, what, ": scaling_factor must be positive");
  return c;
}

bool is_stvae_config(const std::string& name_or_path) {
  if (name_or_path == kBuiltin) return true;
  if (name_or_path.empty() || !std::filesystem::is_regular_file(name_or_path)) return false;
  const std::vector<uint8_t> b = read_file(name_or_path);
  try {
    const nlohmann::json j = nlohmann::json::parse(b.begin(), b.end());
    return j.is_object() && j.contains("stvae");
  } catch (const nlohmann::json::exception&) {
    return false;  // not JSON: the KL autoencoder's parser names the problem
  }
}

StvaeConfig stvae_config_from(const std::string& name_or_path) {
  if (name_or_path == kBuiltin) return StvaeConfig{};
  const std::vector<uint8_t> b = read_file(name_or_path);
  return parse_stvae_config(std::string(b.begin(), b.end()), name_or_path);
}

// Module registration order of vae3d.py, so the list reads like the state_dict. A causal conv
// holds its Conv3d as `.conv`; the resnet's 1x1x1 shortcut is a bare nn.Conv3d; the up/down
// samplers are nn.Conv2d.
std::vector<std::pair<std::string, std::vector<int64_t>>> stvae_param_shapes(const StvaeConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto add = [&](const std::string& n, std::vector<int64_t> w) {
    const int64_t cout = w[0];
    out.push_back({n + ".weight", std::move(w)});
    out.push_back({n + ".bias", {cout}});
  };
  auto conv3 = [&](const std::string& n, int64_t cin, int64_t cout, int64_t k) {
    add(n + ".conv", {cout, cin, k, k, k});
  };
  const int64_t zc = c.latent_channels;
  auto norm = [&](const std::string& n, int64_t ch, bool spatial) {
    if (!spatial) return add(n, {ch});
    add(n + ".norm_layer", {ch});  // STVAESpatialNorm3D: GroupNorm, then conv_y, conv_b on z
    conv3(n + ".conv_y", zc, ch, 1);
    conv3(n + ".conv_b", zc, ch, 1);
  };
  auto res = [&](const std::string& n, int64_t cin, int64_t cout, bool spatial) {
    norm(n + ".norm1", cin, spatial);
    norm(n + ".norm2", cout, spatial);
    conv3(n + ".conv1", cin, cout, 3);
    conv3(n + ".conv2", cout, cout, 3);
    if (cin != cout) add(n + ".conv_shortcut", {cout, cin, 1, 1, 1});
  };
  const auto& b = c.block_out_channels;
  const int L = c.levels();
  conv3("encoder.conv_in", c.in_channels, b[0], 3);
  for (int i = 0; i < L; ++i) {
    const std::string n = cat("encoder.down_blocks.", i);
    for (int j = 0; j < c.layers_per_block; ++j)
      res(cat(n, ".resnets.", j), j == 0 ? b[size_t(i == 0 ? 0 : i - 1)] : b[size_t(i)],
          b[size_t(i)], false);
    if (i != L - 1) add(n + ".downsamplers.0.conv", {b[size_t(i)], b[size_t(i)], 3, 3});
  }
  for (int j = 0; j < 2; ++j) res(cat("encoder.mid_block.resnets.", j), b.back(), b.back(), false);
  norm("encoder.norm_out", b.back(), false);
  conv3("encoder.conv_out", b.back(), 2 * zc, 3);

  const std::vector<int> r(b.rbegin(), b.rend());
  conv3("decoder.conv_in", zc, r[0], 3);
  for (int j = 0; j < 2; ++j) res(cat("decoder.mid_block.resnets.", j), r[0], r[0], true);
  for (int i = 0; i < L; ++i) {
    const std::string n = cat("decoder.up_blocks.", i);
    for (int j = 0; j <= c.layers_per_block; ++j)
      res(cat(n, ".resnets.", j), j == 0 ? r[size_t(i == 0 ? 0 : i - 1)] : r[size_t(i)],
          r[size_t(i)], true);
    if (i != L - 1) add(n + ".upsamplers.0.conv", {r[size_t(i)], r[size_t(i)], 3, 3});
  }
  norm("decoder.norm_out", r.back(), true);
  conv3("decoder.conv_out", r.back(), c.out_channels, 3);
  return out;
}

}  // namespace uvit
