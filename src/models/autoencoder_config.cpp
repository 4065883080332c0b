// The autoencoder's JSON config (official ddconfig field names) and its state_dict key layout.
#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "models/autoencoder_tensors.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"

namespace uvit {

namespace {

using json = nlohmann::json;

int get_int(const json& j, const char* key, int def, const std::string& what) {
  if (!j.contains(key)) return def;
  UVIT_CHECK(j[key].is_number_integer(), what, ": ddconfig.", key, " must be an integer");
  return j[key].get<int>();
}

std::vector<int> get_ints(const json& j, const char* key, std::vector<int> def,
                          const std::string& what) {
  if (!j.contains(key)) return def;
  UVIT_CHECK(j[key].is_array(), what, ": ddconfig.", key, " must be a list of integers");
  std::vector<int> v;
  for (const auto& e : j[key]) {
    UVIT_CHECK(e.is_number_integer(), what, ": ddconfig.", key, " must be a list of integers");
    v.push_back(e.get<int>());
  }
  return v;
}

}  // namespace

AutoencoderConfig parse_autoencoder_config(const std::string& text, const std::string& what) {
  json root;
  try {
    root = parse_json(text, what);
  } catch (const json::exception& e) {
    fail(what, ": invalid JSON: ", e.what());
  }
  UVIT_CHECK(root.is_object(), what, ": expected a JSON object with \"ddconfig\"");
  // The preset's "autoencoder" section carries pretrained_path too; weights come from --weights.
  for (const auto& [k, v] : root.items())
    UVIT_CHECK(k == "ddconfig" || k == "embed_dim" || k == "scale_factor" || k == "decoder_only" ||
                   k == "pretrained_path",
               what, ": unknown field '", k, "' (ddconfig, embed_dim, scale_factor, decoder_only)");
  AutoencoderConfig c;
  if (root.contains("ddconfig")) {
    const json& d = root["ddconfig"];
    UVIT_CHECK(d.is_object(), what, ": ddconfig must be an object");
    static const std::set<std::string> known = {
        "double_z", "z_channels", "resolution",     "in_channels",      "out_ch",
        "ch",       "ch_mult",    "num_res_blocks", "attn_resolutions", "dropout"};
    for (const auto& [k, v] : d.items())
      UVIT_CHECK(known.count(k), what, ": unknown ddconfig field '", k, "'");
    if (d.contains("double_z")) {
      UVIT_CHECK(d["double_z"].is_boolean(), what, ": ddconfig.double_z must be true or false");
      c.double_z = d["double_z"].get<bool>();
    }
    c.z_channels = get_int(d, "z_channels", c.z_channels, what);
    c.resolution = get_int(d, "resolution", c.resolution, what);
    c.in_channels = get_int(d, "in_channels", c.in_channels, what);
    c.out_ch = get_int(d, "out_ch", c.out_ch, what);
    c.ch = get_int(d, "ch", c.ch, what);
    c.ch_mult = get_ints(d, "ch_mult", c.ch_mult, what);
    c.num_res_blocks = get_int(d, "num_res_blocks", c.num_res_blocks, what);
    c.attn_resolutions = get_ints(d, "attn_resolutions", c.attn_resolutions, what);
    if (d.contains("dropout")) {
      UVIT_CHECK(d["dropout"].is_number(), what, ": ddconfig.dropout must be a number");
      c.dropout = d["dropout"].get<double>();
    }
  }
  if (root.contains("embed_dim")) {
    UVIT_CHECK(root["embed_dim"].is_number_integer(), what, ": embed_dim must be an integer");
    c.embed_dim = root["embed_dim"].get<int>();
  }
  if (root.contains("scale_factor")) {
    UVIT_CHECK(root["scale_factor"].is_number(), what, ": scale_factor must be a number");
    c.scale_factor = root["scale_factor"].get<double>();
  }
  if (root.contains("decoder_only")) {
    UVIT_CHECK(root["decoder_only"].is_boolean(), what, ": decoder_only must be true or false");
    c.decoder_only = root["decoder_only"].get<bool>();
  }
  UVIT_CHECK(!c.decoder_only || c.embed_dim == c.z_channels, what, ": decoder_only feeds the ",
             "latents to the decoder directly, so embed_dim ", c.embed_dim,
             " must equal ddconfig.z_channels ", c.z_channels);
  UVIT_CHECK(c.z_channels > 0 && c.in_channels > 0 && c.out_ch > 0 && c.ch > 0 &&
                 c.num_res_blocks >= 0 && c.embed_dim > 0 && c.resolution > 0,
             what, ": channel counts, resolution and num_res_blocks must be positive");
  UVIT_CHECK(!c.ch_mult.empty() && c.ch_mult.size() <= 8, what,
             ": ddconfig.ch_mult must have 1 to 8 entries");
  for (int m : c.ch_mult)
    UVIT_CHECK(m > 0 && (c.ch * m) % 32 == 0, what, ": ch * ch_mult entry ", c.ch, " * ", m,
               " must be a positive multiple of 32 (GroupNorm has 32 groups)");
  UVIT_CHECK(c.ch % 32 == 0, what, ": ch ", c.ch, " must be a multiple of 32 (GroupNorm)");
  UVIT_CHECK(c.scale_factor > 0, what, ": scale_factor must be positive");
  // FrozenAutoencoderKL asserts it: quant_conv reads mean and logvar.
  UVIT_CHECK(c.double_z || c.decoder_only, what,
             ": ddconfig.double_z must be true (the KL autoencoder needs it)");
  return c;
}

AutoencoderConfig load_autoencoder_config(const std::string& path) {
  const std::vector<uint8_t> b = read_file(path);
  return parse_autoencoder_config(std::string(b.begin(), b.end()), path);
}

namespace {

// LightningDiT tokenizer/configs/vavae_f16d32.yaml (ddconfig) and tokenizer/autoencoder.py: the
// VA-VAE has no scale factor (latent statistics instead: latent_multiplier 1.0).
AutoencoderConfig vavae_f16d32() {
  AutoencoderConfig c;
  c.z_channels = c.embed_dim = 32;
  c.ch_mult = {1, 1, 2, 2, 4};
  c.attn_resolutions = {16};
  c.scale_factor = 1.0;
  return c;
}

// SVG autoencoder/configs/example_svg_autoencoder_vitsp.yaml (ddconfig) and
// ldm/models/dino_decoder.py: DinoDecoder.decode is self.decoder(z) on the 392 feature channels.
AutoencoderConfig svg_decoder_z392() {
  AutoencoderConfig c = vavae_f16d32();
  c.z_channels = c.embed_dim = 392;
  c.decoder_only = true;
  return c;
}

}  // namespace

std::vector<std::string> autoencoder_config_names() {
  return {"sd_kl_f8", "vavae_f16d32", "svg_decoder_z392"};
}

namespace {

// "sd_kl_f8, vavae_f16d32", for error messages.
std::string config_name_list() {
  std::string s;
  for (const std::string& n : autoencoder_config_names()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

}  // namespace

AutoencoderConfig autoencoder_config_from(const std::string& name_or_path) {
  if (name_or_path.empty() || name_or_path == "sd_kl_f8") return AutoencoderConfig{};
  if (name_or_path == "vavae_f16d32") return vavae_f16d32();
  if (name_or_path == "svg_decoder_z392") return svg_decoder_z392();
  // LaVin-DiT's ST-VAE is another model (models/stvae.hpp) that only some commands load.
  constexpr const char* kStvae = "lavin_stvae (LaVin-DiT's ST-VAE)";
  constexpr const char* kStvaeCommands = "`uvit autoencoder` and `uvit lavin-sample`";
  UVIT_CHECK(name_or_path != "lavin_stvae", "autoencoder config ", kStvae, " is taken by ",
             kStvaeCommands, " only; this command takes ", config_name_list(), " or a JSON file");
  UVIT_CHECK(std::filesystem::is_regular_file(name_or_path), "unknown autoencoder config '",
             name_or_path, "' (not a file; built-in: ", config_name_list(), "; ", kStvae, " in ",
             kStvaeCommands, ")");
  return load_autoencoder_config(name_or_path);
}

TensorList tensor_list(const std::vector<TensorInfo>& tensors) {
  TensorList t;
  t.reserve(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) t.emplace_back(i, tensors[i]);
  return t;
}

namespace {

TensorList tensor_list(const NamedArrays& weights) {
  TensorList t;
  t.reserve(weights.size());
  for (size_t i = 0; i < weights.size(); ++i)
    t.push_back({i, {weights[i].first, weights[i].second.dtype, weights[i].second.shape}});
  return t;
}

// The arrays as t keeps, names and shapes them (the same bytes), in its order.
void apply_list(NamedArrays& weights, const TensorList& t) {
  NamedArrays out;
  out.reserve(t.size());
  for (const auto& [i, info] : t) {
    out.emplace_back(info.name, std::move(weights.at(i).second));
    out.back().second.shape = info.shape;
  }
  weights = std::move(out);
}

}  // namespace

std::string keep_autoencoder_tensors(TensorList& t, bool decoder_only) {
  static const char* kModules[] = {"decoder.", "encoder.", "quant_conv.", "post_quant_conv."};
  const size_t modules = decoder_only ? 1 : std::size(kModules);
  std::map<std::string, int> skipped;  // first name component -> count
  size_t n = 0;
  TensorList kept;
  kept.reserve(t.size());
  for (auto& e : t) {
    const std::string& name = e.second.name;
    bool ours = false;
    for (size_t i = 0; i < modules; ++i) ours = ours || name.rfind(kModules[i], 0) == 0;
    if (ours) {
      kept.push_back(std::move(e));
    } else {
      ++skipped[name.substr(0, name.find('.'))];
      ++n;
    }
  }
  t = std::move(kept);
  if (n == 0) return "";
  std::string line = cat("skipped ", n, " tensors outside the autoencoder:");
  const char* sep = " ";
  for (const auto& [prefix, count] : skipped) {
    line += cat(sep, prefix, ".* (", count, ")");
    sep = ", ";
  }
  return line;
}

std::string keep_autoencoder_tensors(NamedArrays& weights, bool decoder_only) {
  TensorList t = tensor_list(weights);
  std::string line = keep_autoencoder_tensors(t, decoder_only);
  apply_list(weights, t);
  return line;
}

// Module registration order of libs/autoencoder.py, so the list reads like the state_dict.
std::vector<std::pair<std::string, std::vector<int64_t>>> autoencoder_param_shapes(
    const AutoencoderConfig& c) {
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  auto conv = [&](const std::string& n, int64_t cin, int64_t cout, int64_t k) {
    out.push_back({n + ".weight", {cout, cin, k, k}});
    out.push_back({n + ".bias", {cout}});
  };
  auto norm = [&](const std::string& n, int64_t ch) {
    out.push_back({n + ".weight", {ch}});
    out.push_back({n + ".bias", {ch}});
  };
  auto res = [&](const std::string& n, int64_t cin, int64_t cout) {
    norm(n + ".norm1", cin);
    conv(n + ".conv1", cin, cout, 3);
    norm(n + ".norm2", cout);
    conv(n + ".conv2", cout, cout, 3);
    if (cin != cout) conv(n + ".nin_shortcut", cin, cout, 1);
  };
  auto attn = [&](const std::string& n, int64_t ch) {
    norm(n + ".norm", ch);
    for (const char* m : {".q", ".k", ".v", ".proj_out"}) conv(n + m, ch, ch, 1);
  };
  auto has_attn = [&](int res) {
    return std::find(c.attn_resolutions.begin(), c.attn_resolutions.end(), res) !=
           c.attn_resolutions.end();
  };
  const int L = int(c.ch_mult.size());
  // Encoder (none when decoder_only: the loop and the blocks below it are skipped).
  int res_now = c.resolution;
  int64_t block_in = c.ch;
  if (!c.decoder_only) conv("encoder.conv_in", c.in_channels, c.ch, 3);
  for (int i = 0; i < (c.decoder_only ? 0 : L); ++i) {
    block_in = int64_t(c.ch) * (i == 0 ? 1 : c.ch_mult[i - 1]);
    const int64_t block_out = int64_t(c.ch) * c.ch_mult[i];
    const std::string lv = cat("encoder.down.", i);
    std::vector<std::string> attn_names;
    for (int j = 0; j < c.num_res_blocks; ++j) {
      res(cat(lv, ".block.", j), block_in, block_out);
      block_in = block_out;
      if (has_attn(res_now)) attn_names.push_back(cat(lv, ".attn.", attn_names.size()));
    }
    for (const auto& a : attn_names) attn(a, block_in);  // ModuleList `attn` follows `block`
    if (i != L - 1) {
      conv(lv + ".downsample.conv", block_in, block_in, 3);
      res_now /= 2;
    }
  }
  if (!c.decoder_only) {
    res("encoder.mid.block_1", block_in, block_in);
    attn("encoder.mid.attn_1", block_in);
    res("encoder.mid.block_2", block_in, block_in);
    norm("encoder.norm_out", block_in);
    conv("encoder.conv_out", block_in, c.double_z ? 2 * c.z_channels : c.z_channels, 3);
  }
  // Decoder: built from the lowest resolution up, stored with index = level.
  block_in = int64_t(c.ch) * c.ch_mult.back();
  conv("decoder.conv_in", c.z_channels, block_in, 3);
  res("decoder.mid.block_1", block_in, block_in);
  attn("decoder.mid.attn_1", block_in);
  res("decoder.mid.block_2", block_in, block_in);
  std::vector<std::vector<std::pair<std::string, std::vector<int64_t>>>> levels(L);
  res_now = c.resolution >> (L - 1);
  for (int i = L - 1; i >= 0; --i) {
    auto saved = std::move(out);
    out.clear();
    const int64_t block_out = int64_t(c.ch) * c.ch_mult[i];
    const std::string lv = cat("decoder.up.", i);
    std::vector<std::pair<std::string, int64_t>> attn_names;
    for (int j = 0; j <= c.num_res_blocks; ++j) {
      res(cat(lv, ".block.", j), block_in, block_out);
      block_in = block_out;
      if (has_attn(res_now)) attn_names.push_back({cat(lv, ".attn.", attn_names.size()), block_in});
    }
    for (const auto& [a, ch] : attn_names) attn(a, ch);
    if (i != 0) {
      conv(lv + ".upsample.conv", block_in, block_in, 3);
      res_now *= 2;
    }
    levels[size_t(i)] = std::move(out);
    out = std::move(saved);
  }
  for (auto& lvl : levels) out.insert(out.end(), lvl.begin(), lvl.end());
  norm("decoder.norm_out", block_in);
  conv("decoder.conv_out", block_in, c.out_ch, 3);
  if (c.decoder_only) return out;
  conv("quant_conv", 2 * int64_t(c.z_channels), 2 * int64_t(c.embed_dim), 1);
  conv("post_quant_conv", c.embed_dim, c.z_channels, 1);
  return out;
}

namespace {

bool take(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

// "<digits>." at the front of s.
bool take_index(std::string_view& s, int& i) {
  size_t n = 0;
  i = 0;
  while (n < s.size() && n < 6 && s[n] >= '0' && s[n] <= '9') i = i * 10 + (s[n++] - '0');
  if (n == 0 || n >= s.size() || s[n] != '.') return false;
  s.remove_prefix(n + 1);
  return true;
}

struct Renamed {
  std::string name;     // empty: not a diffusers name
  bool linear = false;  // an attention Linear weight/bias (weights become 1x1 convs)
};

// One diffusers name -> the official one. The rules are those of
// huggingface/diffusers:scripts/convert_diffusers_to_original_stable_diffusion.py
// (vae_conversion_map, vae_conversion_map_attn), for any number of levels, plus attention inside
// a level ("attentions.j" of AttnDownEncoderBlock2D / AttnUpDecoderBlock2D; SD's VAE has none).
Renamed diffusers_to_ldm(std::string_view k, int levels) {
  std::string side;
  if (take(k, "encoder."))
    side = "encoder.";
  else if (take(k, "decoder."))
    side = "decoder.";
  else
    return {};
  const bool enc = side == "encoder.";
  auto resnet = [](std::string_view rest) {
    return take(rest, "conv_shortcut.") ? "nin_shortcut." + std::string(rest) : std::string(rest);
  };
  // Both generations of diffusers attention names: query/key/value/proj_attn (files saved by older
  // diffusers) and to_q/to_k/to_v/to_out.0 (diffusers >= 0.15).
  auto attention = [](std::string prefix, std::string_view rest) -> Renamed {
    static const std::pair<const char*, const char*> kMap[] = {
        {"group_norm.", "norm."},  {"query.", "q."}, {"to_q.", "q."}, {"key.", "k."},
        {"to_k.", "k."},           {"value.", "v."}, {"to_v.", "v."}, {"proj_attn.", "proj_out."},
        {"to_out.0.", "proj_out."}};
    for (const auto& [d, l] : kMap)
      if (take(rest, d)) return {prefix + l + std::string(rest), std::string_view(l) != "norm."};
    return {};
  };
  int i = 0, j = 0;
  if (take(k, "conv_norm_out.")) return {side + "norm_out." + std::string(k)};
  if (take(k, "mid_block.")) {
    if (take(k, "resnets.") && take_index(k, j) && j < 2)
      return {side + "mid.block_" + std::to_string(j + 1) + "." + resnet(k)};
    if (take(k, "attentions.0.")) return attention(side + "mid.attn_1.", k);
    return {};
  }
  if (!take(k, enc ? "down_blocks." : "up_blocks.") || !take_index(k, i) || i >= levels) return {};
  // diffusers numbers the decoder's blocks from the lowest resolution up, the official code by
  // level.
  const std::string lv =
      side + (enc ? "down." : "up.") + std::to_string(enc ? i : levels - 1 - i) + ".";
  if (take(k, "resnets.") && take_index(k, j))
    return {lv + "block." + std::to_string(j) + "." + resnet(k)};
  if (take(k, "attentions.") && take_index(k, j))
    return attention(lv + "attn." + std::to_string(j) + ".", k);
  if (take(k, enc ? "downsamplers.0." : "upsamplers.0."))
    return {lv + (enc ? "downsample." : "upsample.") + std::string(k)};
  return {};
}

}  // namespace

bool autoencoder_from_diffusers(TensorList& t, int levels) {
  bool any = false;
  for (auto& [i, info] : t) {
    Renamed r = diffusers_to_ldm(info.name, levels);
    if (r.name.empty()) continue;
    any = true;
    info.name = std::move(r.name);
    if (r.linear && info.shape.size() == 2) info.shape.insert(info.shape.end(), {1, 1});
  }
  return any;
}

bool autoencoder_from_diffusers(NamedArrays& weights, int levels) {
  TensorList t = tensor_list(weights);
  const bool any = autoencoder_from_diffusers(t, levels);
  apply_list(weights, t);  // same bytes
  return any;
}

void check_autoencoder_weights(const TensorList& t, const AutoencoderConfig& cfg,
                               const std::string& what) {
  check_weight_shapes(t, autoencoder_param_shapes(cfg), what, config_name_list());
}

void check_autoencoder_weights(const NamedArrays& weights, const AutoencoderConfig& cfg,
                               const std::string& what) {
  check_autoencoder_weights(tensor_list(weights), cfg, what);
}

void check_weight_shapes(const TensorList& t,
                         const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected,
                         const std::string& what, const std::string& builtin) {
  std::map<std::string, const TensorInfo*> given;
  for (const auto& [i, a] : t)
    UVIT_CHECK(given.emplace(a.name, &a).second, what, ": tensor '", a.name, "' appears twice");
  size_t missing = 0;
  std::string first_missing;
  std::set<std::string> names;
  for (const auto& [name, shape] : expected) {
    names.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      if (missing++ == 0) first_missing = name;
      continue;
    }
    const TensorInfo& a = *it->second;
    UVIT_CHECK(a.shape == shape, what, ": ", name, " has shape ", shape_str(a.shape),
               ", the autoencoder config expects ", shape_str(shape));
    UVIT_CHECK(a.dtype == DType::F32 || a.dtype == DType::F16 || a.dtype == DType::BF16 ||
                   a.dtype == DType::F64,
               what, ": ", name, " has dtype ", dtype_name(a.dtype), ", expected a float type");
  }
  UVIT_CHECK(missing == 0, what, ": missing ", missing, " of ", expected.size(),
             " autoencoder weights, first '", first_missing,
             "' (does the autoencoder config match the weights? built-in: ", builtin, ")");
  for (const auto& [i, a] : t)
    UVIT_CHECK(names.count(a.name), what, ": unexpected key '", a.name, "' (",
               t.size() - expected.size(), " extra; does the config match the weights?)");
}

void check_weight_shapes(const NamedArrays& weights,
                         const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected,
                         const std::string& what, const std::string& builtin) {
  check_weight_shapes(tensor_list(weights), expected, what, builtin);
}

AutoencoderConfig preset_autoencoder_config(const nlohmann::json& preset,
                                            const std::string& config) {
  const nlohmann::json section = preset.value("autoencoder", nlohmann::json::object());
  const std::string config_name = !config.empty() ? config : section.value("config", "");
  AutoencoderConfig ac = autoencoder_config_from(config_name);
  ac.scale_factor = section.value("scale_factor", ac.scale_factor);
  if (preset.contains("z_shape") && preset["z_shape"].is_array() && !preset["z_shape"].empty()) {
    const int c = preset["z_shape"][0].get<int>();
    UVIT_CHECK(c == ac.embed_dim, "the preset's latents have ", c,
               " channels, the autoencoder config ",
               config_name.empty() ? std::string("sd_kl_f8") : config_name, " has embed_dim ",
               ac.embed_dim, " (give --autoencoder-config",
               c == 32 ? " vavae_f16d32)" : " with a matching embed_dim)");
  }
  return ac;
}

LatentStats preset_latent_stats(const nlohmann::json& preset, const std::string& latent_stats,
                                int channels) {
  if (!latent_stats.empty()) return load_latent_stats(latent_stats, channels);
  const std::string path =
      preset.value("autoencoder", nlohmann::json::object()).value("latent_stats", "");
  if (path.empty()) return LatentStats{};
  // The preset named the file, not the command line: its error names the setting too.
  try {
    return load_latent_stats(path, channels);
  } catch (const Error& e) {
    fail(preset.value("name", std::string("the preset")),
         "'s autoencoder.latent_stats: ", e.what());
  }
}

Autoencoder load_preset_autoencoder(const nlohmann::json& preset, const std::string& path,
                                    const std::string& config, const std::string& latent_stats,
                                    const std::string& device, const std::string& precision) {
  const AutoencoderConfig ac = preset_autoencoder_config(preset, config);
  // Checked before the weights load (seconds), which is checked before sampling (hours).
  const LatentStats stats = preset_latent_stats(preset, latent_stats, ac.embed_dim);
  Autoencoder ae = Autoencoder::load(path, ac, device, precision, AutoencoderUse::decode);
  if (stats.channels() > 0) ae.set_latent_stats(stats);
  return ae;
}

}  // namespace uvit
