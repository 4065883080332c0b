// Configurations: the network's constructor arguments (official names) and the full preset JSON.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "uvit/network.hpp"

namespace uvit {

struct NetConfig {
  std::string name = "uvit";  // "uvit" or "uvit_t2i"
  int img_size = 224;
  int patch_size = 16;
  int in_chans = 3;
  int embed_dim = 768;
  int depth = 12;
  int num_heads = 12;
  double mlp_ratio = 4.0;
  bool qkv_bias = false;
  double qk_scale = 0;  // 0 means None: 1/sqrt(head_dim)
  bool mlp_time_embed = false;
  int num_classes = -1;  // uvit only
  bool use_checkpoint = false;
  bool conv = true;
  bool skip = true;
  int clip_dim = 768;       // uvit_t2i only
  int num_clip_token = 77;  // uvit_t2i only
  // The paper's ablation variants (Bao et al. 2023, section 3 / Figure 2; docs/configs.md). The
  // first value listed is the official one; only non-official values appear in to_json().
  std::string skip_mode = "concat_linear";     // concat_linear, add, add_linear, linear_add
  std::string pos_embed = "learned_1d";        // learned_1d, sincos_2d, none
  std::string conv_position = "after_linear";  // after_linear, before_linear
  std::string time_cond = "token";             // token, adaln
  std::string patch_embed = "linear";          // linear, conv_stack
  static const std::vector<std::string>& variant_values(const std::string& field);

  bool t2i() const { return name == "uvit_t2i"; }
  int head_dim() const { return embed_dim / num_heads; }
  int mlp_hidden() const { return int(embed_dim * mlp_ratio); }
  int grid() const { return img_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  bool time_token() const { return time_cond == "token"; }
  bool adaln() const { return time_cond == "adaln"; }
  // Extra tokens before the patches: [label?, time?] or [time?, context...] (no time with adaln).
  int extras() const {
    return (time_token() ? 1 : 0) + (t2i() ? num_clip_token : (num_classes > 0 ? 1 : 0));
  }
  // conv_stack: log2(patch_size) stride-2 3x3 convs, output channels D / 2^(k-1-i)
  // (docs/configs.md).
  int stem_convs() const;
  int stem_channels(int i) const { return embed_dim >> (stem_convs() - 1 - i); }
  int tokens() const { return extras() + num_patches(); }
  int patch_dim() const { return patch_size * patch_size * in_chans; }
  int blocks_per_side() const { return depth / 2; }
  bool learned_pos() const { return pos_embed == "learned_1d"; }
  bool conv_before() const { return conv && conv_position == "before_linear"; }
  bool conv_after() const { return conv && conv_position == "after_linear"; }
  float attn_scale() const;

  void validate() const;  // throws uvit::Error naming the bad field
  nlohmann::json to_json() const;
};

// Typed reads of one config value; the error names `field` (e.g. "nnet.depth: expected an
// integer, got a string \"12\"") and rejects ints that do not fit an int. Every network family
// parses its nnet section with these.
int json_int(const nlohmann::json& v, const std::string& field);
double json_number(const nlohmann::json& v, const std::string& field);
bool json_bool(const nlohmann::json& v, const std::string& field);
std::string json_string(const nlohmann::json& v, const std::string& field);
// nnet.`field` within [lo, hi] (lo 0: "must be non-negative", else "must be positive").
void check_net_range(const std::string& field, long v, long lo, long hi);

// Parses the network section ("nnet" of a preset, or a bare object of constructor arguments).
NetConfig net_config_from_json(const nlohmann::json& j);

// A whole preset: {"name": ..., "nnet": {...}, "train": {...}, "optimizer": {...}, ...}.
// A bare network object (with "name": a registered network) is wrapped as {"nnet": obj}.
struct Config {
  std::string config_name;  // preset name or file stem
  nlohmann::json json;      // the whole document
  NetSpec spec;             // the network as the engine sees it (any family)
  NetConfig net;            // U-ViT's constructor arguments (uvit/uvit_t2i only; else defaults)
  bool is_uvit() const { return spec.name == "uvit" || spec.name == "uvit_t2i"; }
};

// `name_or_path` is a preset name, with or without .json (looked up in UVIT_CONFIG_DIR, then in the
// first of the built-in presets' places that holds any: an install's, the source tree's configs/,
// ...; docs/configs.md "Loading"), a path to a JSON file, or a training run's folder (its
// config.json, named after the preset its checkpoints record).
Config load_config(const std::string& name_or_path);
// The preset names found in those folders (the names load_config finds), sorted.
std::vector<std::string> preset_names();
// Applies "section.key=value" (value parsed as JSON, else taken as a string) and re-validates.
void apply_override(Config& c, const std::string& assignment);

}  // namespace uvit
