// DiT (facebookresearch/DiT models.py), Skip-DiT (OpenSparseLLMs/Skip-DiT
// class-to-image/models.py, DiT_skip) and LightningDiT (hustvl/LightningDiT
// models/lightningdit.py): patch tokens with a fixed 2-D sin-cos position, a conditioning vector c
// = t_emb + y_emb, adaLN-Zero blocks and an adaLN final layer; Skip-DiT adds depth/2 long skips
// fused before each deep block by Linear(LayerNorm(concat(x, skip))); LightningDiT swaps pieces of
// the same block (RMSNorm, SwiGLU, qk-norm, 2-D RoPE, adaLN without shift) and drops the sigma half
// of its output. FiTv2 (whlzy/FiT fit/model/fit_model.py, modules.py) is the same block with
// AdaLN-LoRA plus a shared global modulation, a parameter-free per-head LayerNorm of q and k,
// timm's split SwiGLU, RoPE without an absolute position, and (c, p1, p2) patch tokens.
// docs/dit.md, docs/lightningdit.md and docs/fit.md have the facts this file relies on.
#include <algorithm>
#include <cmath>
#include <numeric>

#include "models/adaln.hpp"
#include "models/families.hpp"
#include "models/fit_rope.hpp"
#include "models/layers.hpp"
#include "models/row_lists.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/rng.hpp"

namespace uvit {

using namespace layers;
using nlohmann::json;

namespace {

constexpr float kLnEps = 1e-6f;
// Skip-Cache (Skip-DiT class-to-image/models.py DiT_cache): cached calls run only the first and
// last kCacheBranch blocks; the cache is emptied once the timestep is <= kCacheCloseAt.
constexpr int kCacheBranch = 4;
constexpr float kCacheCloseAt = 20;

// FiT's norms (fit/model/norms.py create_norm, eps 1e-6; docs/fit.md "Options"): null, "" or
// "none" is Identity, "layernorm" a LayerNorm without parameters, "w_layernorm" one with a weight
// and no bias, "w_rmsnorm" an RMSNorm with a weight.
enum class FitNorm { None, LayerNorm, WLayerNorm, WRmsNorm };

json fit_norm_json(FitNorm k) {
  switch (k) {
    case FitNorm::LayerNorm:
      return "layernorm";
    case FitNorm::WLayerNorm:
      return "w_layernorm";
    case FitNorm::WRmsNorm:
      return "w_rmsnorm";
    case FitNorm::None:
      break;
  }
  return nullptr;
}

FitNorm parse_fit_norm(const json& v, const std::string& f) {
  const std::string s = v.is_null() ? std::string() : json_string(v, f);
  if (s.empty() || s == "none") return FitNorm::None;
  if (s == "layernorm") return FitNorm::LayerNorm;
  if (s == "w_layernorm") return FitNorm::WLayerNorm;
  if (s == "w_rmsnorm") return FitNorm::WRmsNorm;
  // create_norm calls RMSNorm(dim, include_weight=False, eps=eps), which RMSNorm.__init__ does not
  // take: the official module cannot be built with it.
  UVIT_CHECK(
      s != "rmsnorm", f, ": \"rmsnorm\" fails in the official code (create_norm passes ",
      "include_weight=False, which RMSNorm does not take); \"w_rmsnorm\" is the working one");
  fail(f, ": ", v.dump(),
       " is not supported (only \"layernorm\", \"w_layernorm\", \"w_rmsnorm\", \"none\" or null, "
       "lower case)");
}

// The constructor arguments, official names and defaults (DiT.__init__, LightningDiT.__init__;
// FiT.__init__ with config_fitv2_xl.yaml's values as the defaults of "fitv2" and
// configs/fit/config_fit_xl.yaml's as those of "fitv1").
struct DiTConfig {
  std::string name = "dit";  // or "skip_dit", "lightningdit", "fitv2", "fitv1"
  int input_size = 32, patch_size = 2, in_channels = 4, hidden_size = 1152, depth = 28,
      num_heads = 16, num_classes = 1000;
  double mlp_ratio = 4.0, class_dropout_prob = 0.1;
  bool learn_sigma = true;
  // LightningDiT's switches (all off by default there, as in the official signature).
  bool use_qknorm = false, use_swiglu = false, use_rope = false, use_rmsnorm = false,
       wo_shift = false;

  // FiTv2's (docs/fit.md): adaln_lora_dim 0 is adaln_type "normal"; q_norm/k_norm "layernorm".
  int context_size = 256, adaln_lora_dim = 0;
  int input_w = 0;  // FiTv2: the latent width when input_size is [height, width]; 0: square
  bool use_swiglu_large = false, qkv_bias = true, ffn_bias = true, adaln_bias = true;
  // norm_type (norm1, norm2, norm_final over D) and q_norm / k_norm (per head) as given.
  FitNorm norm_type = FitNorm::LayerNorm, q_norm = FitNorm::None, k_norm = FitNorm::None;
  // qk_norm_weight: "layernorm" q/k norms carry a weight (Attention.__init__); adaln_type
  // "swiglu": every modulation is a timm SwiGLU of c; add_rel_pe_to_v: the RoPE rotates v too
  // (docs/fit.md "Options").
  bool qk_norm_weight = false, adaln_swiglu = false, rope_v = false;
  FitNorm qk_kind(FitNorm k) const {
    return k == FitNorm::LayerNorm && qk_norm_weight ? FitNorm::WLayerNorm : k;
  }
  int ada_swiglu_hidden() const { return hidden_size / 4 * 3; }  // FiTBlock: (D // 4) * 3
  double time_shifting = 1;
  // FiT's use_sit only lays the official tensors out as (B, N, C) instead of (B, C, N); an image
  // interface has neither. time_clamp (ours): FiT.forward's clamp(t, max=1), which with FiTv1's
  // ADM timesteps 0..999 leaves the timestep embedder only [0, 1] (docs/fit.md, "FiTv1").
  bool use_sit = true, time_clamp = true;
  FitRope rope;  // custom_freqs, rope_theta, max_pe_len_h/w, decouple, ori_max_pe_len

  explicit DiTConfig(const std::string& n = "dit") : name(n) {
    if (lightning()) {
      in_channels = 32;
      learn_sigma = false;
    }
    if (name == "fitv2") {
      depth = 36;
      learn_sigma = false;
      use_swiglu = use_rope = true;
      q_norm = k_norm = FitNorm::LayerNorm;
      adaln_lora_dim = 288;
    }
    // config_fit_xl.yaml: ADM with learned sigma, adaLN "normal", no qk-norm, SwiGLU-large.
    if (name == "fitv1") {
      depth = 28;
      use_sit = false;
      use_swiglu = use_swiglu_large = use_rope = true;
    }
  }
  bool skip() const { return name == "skip_dit"; }
  bool lightning() const { return name == "lightningdit"; }
  bool fit() const { return name == "fitv2" || name == "fitv1"; }
  // The final linear's channels; LightningDiT's forward keeps only the first in_channels of them.
  int head_channels() const { return learn_sigma ? 2 * in_channels : in_channels; }
  int out_channels() const { return lightning() ? in_channels : head_channels(); }
  int grid() const { return input_size / patch_size; }  // rows of tokens
  int width() const { return input_w > 0 ? input_w : input_size; }
  int grid_w() const { return width() / patch_size; }  // columns of tokens
  int tokens() const { return grid() * grid_w(); }
  int head_dim() const { return hidden_size / num_heads; }
  int mlp_hidden() const { return int(hidden_size * mlp_ratio); }
  // SwiGLUFFN(D, int(2/3 * mlp_hidden_dim)): w12 has twice this many outputs. FiT's timm SwiGLU:
  // (mlp_hidden_dim * 2) // 3, or mlp_hidden_dim with use_swiglu_large.
  int swiglu_hidden() const {
    if (fit()) return use_swiglu_large ? mlp_hidden() : mlp_hidden() * 2 / 3;
    return int(2.0 / 3.0 * mlp_hidden());
  }
  int fc1_out() const { return use_swiglu ? 2 * swiglu_hidden() : mlp_hidden(); }
  int fc2_in() const { return use_swiglu ? swiglu_hidden() : mlp_hidden(); }
  int mod_chunks() const { return wo_shift ? 4 : 6; }  // (scale, gate) x 2 without the shifts
  // LabelEmbedder: a null row after the classes when labels can be dropped.
  int label_rows() const { return num_classes + (class_dropout_prob > 0 ? 1 : 0); }

  json to_json() const {
    json j = dit_args_json(name, *this);
    if (fit()) {
      // Ours: the latent side or [height, width] (FiT's own input is a token list).
      j["input_size"] = input_w > 0 ? json{input_size, input_w} : json(input_size);
      j["context_size"] = context_size;
      j["use_sit"] = use_sit;
      j["use_swiglu"] = use_swiglu;
      j["use_swiglu_large"] = use_swiglu_large;
      j["rel_pos_embed"] = use_rope ? json("rope") : json(nullptr);
      j["q_norm"] = fit_norm_json(q_norm);
      j["k_norm"] = fit_norm_json(k_norm);
      j["qk_norm_weight"] = qk_norm_weight;
      j["norm_type"] = fit_norm_json(norm_type);
      j["qkv_bias"] = qkv_bias;
      j["ffn_bias"] = ffn_bias;
      j["adaln_bias"] = adaln_bias;
      j["adaln_type"] = adaln_swiglu ? "swiglu" : adaln_lora_dim > 0 ? "lora" : "normal";
      if (adaln_lora_dim > 0) j["adaln_lora_dim"] = adaln_lora_dim;
      j["rope_theta"] = rope.theta;
      j["custom_freqs"] = rope.custom_freqs;
      if (rope.scaled()) {
        j["max_pe_len_h"] = rope.max_pe_len_h > 0 ? rope.max_pe_len_h : grid();
        j["max_pe_len_w"] = rope.max_pe_len_w > 0 ? rope.max_pe_len_w : grid_w();
        j["decouple"] = rope.decouple;
        j["ori_max_pe_len"] = rope.ori_max_pe_len;
      }
      if (rope.online) j["online_rope"] = true;
      if (rope_v) j["add_rel_pe_to_v"] = true;
      j["time_shifting"] = time_shifting;
      if (!time_clamp) j["time_clamp"] = false;
    }
    if (lightning()) {
      j["use_qknorm"] = use_qknorm;
      j["use_swiglu"] = use_swiglu;
      j["use_rope"] = use_rope;
      j["use_rmsnorm"] = use_rmsnorm;
      j["wo_shift"] = wo_shift;
    }
    return j;
  }
};

// FiT.__init__'s own arguments (the shared ones are read by parse). FiTv2's and FiTv1's choices
// are implemented; every other value is refused by name. Returns false for a key that is not FiT's.
bool parse_fit_key(DiTConfig& c, const std::string& k, const json& v, const std::string& f) {
  // A string field that may be null (None).
  auto opt_string = [&] { return v.is_null() ? std::string() : json_string(v, f); };
  auto require = [&](bool ok, const char* what) {
    UVIT_CHECK(ok, f, ": ", v.dump(), " is not supported (only ", what, ")");
  };
  if (k == "context_size") {
    c.context_size = json_int(v, f);
  } else if (k == "use_sit") {
    c.use_sit = json_bool(v, f);
  } else if (k == "time_clamp") {
    c.time_clamp = json_bool(v, f);
  } else if (k == "use_swiglu") {
    c.use_swiglu = json_bool(v, f);
  } else if (k == "use_swiglu_large") {
    c.use_swiglu_large = json_bool(v, f);
  } else if (k == "rel_pos_embed") {
    const std::string s = opt_string();
    require(s.empty() || s == "rope", "\"rope\" or null");
    c.use_rope = s == "rope";
  } else if (k == "abs_pos_embed") {
    require(v.is_null(), "null");
  } else if (k == "norm_type" || k == "q_norm" || k == "k_norm") {
    (k == "norm_type" ? c.norm_type : k == "q_norm" ? c.q_norm : c.k_norm) = parse_fit_norm(v, f);
  } else if (k == "qk_norm_weight") {
    c.qk_norm_weight = json_bool(v, f);
  } else if (k == "qkv_bias") {
    c.qkv_bias = json_bool(v, f);
  } else if (k == "ffn_bias") {
    c.ffn_bias = json_bool(v, f);
  } else if (k == "adaln_bias") {
    c.adaln_bias = json_bool(v, f);
  } else if (k == "adaln_type") {
    const std::string s = json_string(v, f);
    require(s == "lora" || s == "normal" || s == "swiglu", "\"lora\", \"normal\" or \"swiglu\"");
    c.adaln_swiglu = s == "swiglu";
    if (s != "lora") c.adaln_lora_dim = 0;  // FiTBlock reads adaln_lora_dim only for "lora"
    if (s == "lora" && c.adaln_lora_dim == 0) c.adaln_lora_dim = -1;  // needs adaln_lora_dim
  } else if (k == "adaln_lora_dim") {
    c.adaln_lora_dim = v.is_null() ? -1 : json_int(v, f);
  } else if (k == "rope_theta") {
    c.rope.theta = json_number(v, f);
  } else if (k == "custom_freqs") {
    c.rope.custom_freqs = json_string(v, f);
    UVIT_CHECK(fit_rope_known(c.rope.custom_freqs), f, ": \"", c.rope.custom_freqs,
               "\" is not one of ", fit_rope_names());
  } else if (k == "max_pe_len_h" || k == "max_pe_len_w") {
    (k == "max_pe_len_h" ? c.rope.max_pe_len_h : c.rope.max_pe_len_w) =
        v.is_null() ? 0 : json_int(v, f);
  } else if (k == "decouple") {
    c.rope.decouple = json_bool(v, f);
  } else if (k == "ori_max_pe_len") {
    c.rope.ori_max_pe_len = v.is_null() ? 0 : json_int(v, f);
  } else if (k == "online_rope") {
    c.rope.online = json_bool(v, f);
  } else if (k == "add_rel_pe_to_v") {
    c.rope_v = json_bool(v, f);
  } else if (k == "time_shifting") {
    c.time_shifting = json_number(v, f);
  } else if (k == "pretrain_ckpt" || k == "ignore_keys" || k == "finetune") {
    require(v.is_null(), "null: load weights with --weights");
  } else {
    return false;
  }
  return true;
}

DiTConfig parse(const json& j) {
  UVIT_CHECK(j.is_object(), "nnet: expected an object, got ", j.dump());
  DiTConfig c(j.contains("name") ? json_string(j["name"], "nnet.name") : std::string("dit"));
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    const std::string f = "nnet." + k;
    if (k == "name") continue;
    if (k == "input_size" && c.fit() && v.is_array()) {
      UVIT_CHECK(v.size() == 2, f, ": expected a side or [height, width], got ", v.dump());
      c.input_size = json_int(v[0], f + "[0]");
      c.input_w = json_int(v[1], f + "[1]");
      check_net_range("input_size[1]", c.input_w, 1, 4096);
    } else if (read_dit_arg(c, k, v, f))
      continue;
    else if (c.lightning() && k == "use_qknorm")
      c.use_qknorm = json_bool(v, f);
    else if (c.lightning() && k == "use_swiglu")
      c.use_swiglu = json_bool(v, f);
    else if (c.lightning() && k == "use_rope")
      c.use_rope = json_bool(v, f);
    else if (c.lightning() && k == "use_rmsnorm")
      c.use_rmsnorm = json_bool(v, f);
    else if (c.lightning() && k == "wo_shift")
      c.wo_shift = json_bool(v, f);
    else if ((c.lightning() || c.fit()) && k == "use_checkpoint")
      // Activation checkpointing changes memory only; this engine keeps every block's activations.
      json_bool(v, f);
    else if (c.fit() && parse_fit_key(c, k, v, f))
      continue;
    else
      fail(f, ": unknown key (not an argument of ", c.name, ")");
  }
  check_dit_args(c.input_size, c.patch_size, c.in_channels, c.hidden_size, c.depth, c.num_heads,
                 c.num_classes, c.mlp_ratio, c.class_dropout_prob, /*sincos_pos=*/!c.fit());
  UVIT_CHECK(c.width() % c.patch_size == 0, "nnet.input_size ", c.input_size, " x ", c.input_w,
             " is not divisible by nnet.patch_size ", c.patch_size);
  UVIT_CHECK(!c.skip() || c.depth % 2 == 0, "nnet.depth ", c.depth,
             " must be even for skip_dit (depth/2 long skips)");
  UVIT_CHECK(c.tokens() <= (1 << 20), "nnet: ", c.tokens(), " tokens exceed the limit");
  UVIT_CHECK(!c.use_swiglu || c.swiglu_hidden() >= 1, "nnet.mlp_ratio ", c.mlp_ratio,
             " leaves SwiGLU no hidden features");
  // VisionRotaryEmbeddingFast(dim = head_dim / 2): dim/2 frequencies, each used twice per axis,
  // cover head_dim only when head_dim is a multiple of 4.
  UVIT_CHECK(!c.use_rope || c.head_dim() % 4 == 0, "nnet.use_rope needs a head size (hidden_size ",
             "/ num_heads) that is a multiple of 4, got ", c.head_dim());
  // The official qk-norm without use_rmsnorm is an affine LayerNorm (eps 1e-5) per head, which no
  // preset uses; only the RMSNorm form is implemented.
  UVIT_CHECK(!c.use_qknorm || c.use_rmsnorm,
             "nnet.use_qknorm without nnet.use_rmsnorm (a per-head LayerNorm) is not supported");
  if (c.fit()) {
    // FiT.__init__: assert not (learn_sigma and use_sit).
    UVIT_CHECK(!(c.learn_sigma && c.use_sit), "nnet.learn_sigma: ", c.name,
               " with use_sit (a velocity model) has no variance output; set use_sit false");
    UVIT_CHECK(c.time_clamp || c.time_shifting == 1, "nnet.time_clamp false needs time_shifting 1");
    UVIT_CHECK(c.adaln_lora_dim >= 0, "nnet.adaln_type \"lora\" needs nnet.adaln_lora_dim");
    check_net_range("adaln_lora_dim", c.adaln_lora_dim, 0, 65536);
    check_net_range("context_size", c.context_size, 1, 1 << 20);
    // The official RoPE caches positions 0..255 (max_cached_len); online_rope computes its
    // tables from the grid instead.
    UVIT_CHECK(!c.use_rope || c.rope.online || std::max(c.grid(), c.grid_w()) <= 256,
               "nnet: a grid of ", c.grid(), " x ", c.grid_w(),
               " tokens exceeds the 256 positions per side of FiT's RoPE cache");
    // online_get_2d_rope_from_grid calls get_1d_rope_freqs, which raises for "normal", and reads
    // mscale / proportion1/2, which __init__ sets only without online_rope.
    const std::string& cf = c.rope.custom_freqs;
    UVIT_CHECK(
        !c.rope.online || cf == "linear" || cf == "ntk-aware" || cf == "ntk-by-parts",
        "nnet.online_rope needs custom_freqs linear, ntk-aware or ntk-by-parts (the official "
        "online path fails for \"",
        cf, "\")");
    UVIT_CHECK(std::isfinite(c.rope.theta) && c.rope.theta > 1, "nnet.rope_theta must be > 1, got ",
               c.rope.theta);
    UVIT_CHECK(!c.rope.scaled() || c.rope.ori_max_pe_len > 0, "nnet.custom_freqs \"",
               c.rope.custom_freqs, "\" needs nnet.ori_max_pe_len (the training grid side)");
    check_net_range("max_pe_len_h", c.rope.max_pe_len_h, 0, 1 << 16);
    check_net_range("max_pe_len_w", c.rope.max_pe_len_w, 0, 1 << 16);
    check_net_range("ori_max_pe_len", c.rope.ori_max_pe_len, 0, 1 << 16);
    UVIT_CHECK(std::isfinite(c.time_shifting) && c.time_shifting > 0,
               "nnet.time_shifting must be positive, got ", c.time_shifting);
  }
  return c;
}

// The official state_dict: the module's own parameter (pos_embed) first, then the submodules in
// registration order (DiT_skip registers its skip modules after the final layer; LightningDiT's
// feat_rope buffers follow the embedders, and its blocks register norm1, norm2, attn (qkv, q_norm,
// k_norm, proj), mlp, adaLN_modulation).
// FiT registers x_embedder, t_embedder, y_embedder, the RoPE (non-persistent buffers: not in the
// state_dict), global_adaLN_modulation, the blocks (the default norms and qk-norms have no
// parameters; timm SwiGLU: fc1_g, fc1_x, fc2), final_layer (linear before adaLN_modulation).
ParamTable fit_table(const DiTConfig& c) {
  const int64_t D = c.hidden_size, p = c.patch_size, r = c.adaln_lora_dim, Hs = c.fc2_in();
  ParamTable t;
  auto lin = [&](const std::string& n, int64_t out, int64_t in, bool bias) {
    t.add(n + ".weight", {out, in});
    if (bias) t.add(n + ".bias", {out});
  };
  // timm SwiGLU(D, hidden, out, bias=adaln_bias): fc1_g, fc1_x, fc2.
  auto swiglu = [&](const std::string& n, int64_t hidden, int64_t out) {
    lin(n + ".fc1_g", hidden, D, c.adaln_bias);
    lin(n + ".fc1_x", hidden, D, c.adaln_bias);
    lin(n + ".fc2", out, hidden, c.adaln_bias);
  };
  lin("x_embedder.proj", D, p * p * c.in_channels, true);
  lin("t_embedder.mlp.0", D, kFreqDim, true);
  lin("t_embedder.mlp.2", D, D, true);
  t.add("y_embedder.embedding_table.weight", {c.label_rows(), D});
  if (r > 0) lin("global_adaLN_modulation.1", 6 * D, D, c.adaln_bias);
  // A norm's weight [dim] where create_norm gives one (w_layernorm, w_rmsnorm).
  auto norm = [&](const std::string& n, FitNorm k, int64_t dim) {
    if (k == FitNorm::WLayerNorm || k == FitNorm::WRmsNorm) t.add(n + ".weight", {dim});
  };
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    norm(b + "norm1", c.norm_type, D);  // FiTBlock registers norm1, norm2 first
    norm(b + "norm2", c.norm_type, D);
    lin(b + "attn.qkv", 3 * D, D, c.qkv_bias);
    // Attention registers q_norm, k_norm between qkv and proj.
    norm(b + "attn.q_norm", c.qk_kind(c.q_norm), c.head_dim());
    norm(b + "attn.k_norm", c.qk_kind(c.k_norm), c.head_dim());
    lin(b + "attn.proj", D, D, true);
    if (c.use_swiglu) {
      lin(b + "mlp.fc1_g", Hs, D, c.ffn_bias);
      lin(b + "mlp.fc1_x", Hs, D, c.ffn_bias);
    } else {
      lin(b + "mlp.fc1", Hs, D, c.ffn_bias);
    }
    lin(b + "mlp.fc2", D, Hs, c.ffn_bias);
    if (c.adaln_swiglu) {
      swiglu(b + "adaLN_modulation", c.ada_swiglu_hidden(), 6 * D);
    } else if (r > 0) {
      lin(b + "adaLN_modulation.1", r, D, c.adaln_bias);
      lin(b + "adaLN_modulation.2", 6 * D, r, c.adaln_bias);
    } else {
      lin(b + "adaLN_modulation.1", 6 * D, D, c.adaln_bias);
    }
  }
  norm("final_layer.norm_final", c.norm_type, D);  // FinalLayer: norm_final, linear, adaLN
  lin("final_layer.linear", p * p * c.head_channels(), D, true);
  if (c.adaln_swiglu)  // FinalLayer: SwiGLU(D, hidden D // 2, out 2D)
    swiglu("final_layer.adaLN_modulation", D / 2, 2 * D);
  else
    lin("final_layer.adaLN_modulation.1", 2 * D, D, c.adaln_bias);
  return t;
}

ParamTable dit_table(const DiTConfig& c) {
  if (c.fit()) return fit_table(c);
  const int64_t D = c.hidden_size, p = c.patch_size, Dh = c.head_dim();
  ParamTable t;
  t.add("pos_embed", {1, c.tokens(), D}, /*frozen=*/true);
  t.add("x_embedder.proj.weight", {D, c.in_channels, p, p});
  t.add("x_embedder.proj.bias", {D});
  t.add("t_embedder.mlp.0.weight", {D, kFreqDim});
  t.add("t_embedder.mlp.0.bias", {D});
  t.add("t_embedder.mlp.2.weight", {D, D});
  t.add("t_embedder.mlp.2.bias", {D});
  t.add("y_embedder.embedding_table.weight", {c.label_rows(), D});
  if (c.use_rope) {  // frozen tables [tokens, head_dim], persistent buffers of the state_dict
    t.add("feat_rope.freqs_cos", {c.tokens(), Dh}, /*frozen=*/true);
    t.add("feat_rope.freqs_sin", {c.tokens(), Dh}, /*frozen=*/true);
  }
  const std::string fc1 = c.use_swiglu ? "mlp.w12" : "mlp.fc1";
  const std::string fc2 = c.use_swiglu ? "mlp.w3" : "mlp.fc2";
  const int64_t F1 = c.fc1_out(), F2 = c.fc2_in(), Dm = c.mod_chunks() * D;
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    if (c.use_rmsnorm) {
      t.add(b + "norm1.weight", {D});
      t.add(b + "norm2.weight", {D});
    }
    t.add(b + "attn.qkv.weight", {3 * D, D});
    t.add(b + "attn.qkv.bias", {3 * D});
    if (c.use_qknorm) {
      t.add(b + "attn.q_norm.weight", {Dh});
      t.add(b + "attn.k_norm.weight", {Dh});
    }
    t.add(b + "attn.proj.weight", {D, D});
    t.add(b + "attn.proj.bias", {D});
    t.add(b + fc1 + ".weight", {F1, D});
    t.add(b + fc1 + ".bias", {F1});
    t.add(b + fc2 + ".weight", {D, F2});
    t.add(b + fc2 + ".bias", {D});
    t.add(b + "adaLN_modulation.1.weight", {Dm, D});
    t.add(b + "adaLN_modulation.1.bias", {Dm});
  }
  if (c.use_rmsnorm) t.add("final_layer.norm_final.weight", {D});
  t.add("final_layer.linear.weight", {int64_t(p * p * c.head_channels()), D});
  t.add("final_layer.linear.bias", {int64_t(p * p * c.head_channels())});
  t.add("final_layer.adaLN_modulation.1.weight", {2 * D, D});
  t.add("final_layer.adaLN_modulation.1.bias", {2 * D});
  if (c.skip()) {
    for (int i = 0; i < c.depth / 2; ++i) {
      t.add(cat("skip_norms.", i, ".weight"), {2 * D});
      t.add(cat("skip_norms.", i, ".bias"), {2 * D});
    }
    for (int i = 0; i < c.depth / 2; ++i) {
      t.add(cat("skip_linears.", i, ".linear.weight"), {D, 2 * D});
      t.add(cat("skip_linears.", i, ".linear.bias"), {D});
    }
  }
  return t;
}

double dit_flops(const DiTConfig& c) {
  const double D = c.hidden_size, L = c.tokens(), p = c.patch_size;
  double f = 2 * L * D * c.in_channels * p * p;  // patch embedding
  f += 2 * (kFreqDim * D + D * D);               // timestep MLP
  const double r = c.adaln_lora_dim, Dm = c.mod_chunks() * D;
  const double block = 2 * L * D * (3 * D + D + c.fc1_out() + c.fc2_in())  // qkv, proj, MLP
                       + 4 * L * L * D                                     // scores, weighted sum
                       + (c.adaln_swiglu ? 2 * c.ada_swiglu_hidden() * (2 * D + Dm)
                          : r > 0        ? 2 * r * (D + Dm)
                                         : 2 * D * Dm);  // adaLN (LoRA, SwiGLU)
  f += c.depth * block;
  if (r > 0) f += 2 * D * Dm;                            // FiTv2's global adaLN
  if (c.skip()) f += (c.depth / 2) * 2 * L * 2 * D * D;  // skip linears
  f += 2 * L * D * p * p * c.head_channels();            // final layer
  const double half = c.hidden_size / 2;  // its adaLN: a Linear, or SwiGLU(D, D // 2, 2D)
  f += c.adaln_swiglu ? 2 * half * (2 * D + 2 * D) : 2 * D * 2 * D;
  return f;
}

NetSpec dit_spec(const DiTConfig& c) {
  NetSpec s;
  s.name = c.name;
  s.in_chans = c.in_channels;
  s.out_chans = c.out_channels();
  s.img_size = c.input_size;
  s.img_w = c.width() != c.input_size ? c.width() : 0;
  s.num_classes = c.label_rows();
  s.null_class = c.class_dropout_prob > 0 ? c.num_classes : -1;
  // forward_with_cfg guides model_out[:, :3] (the latent eps but its 4th channel) and takes the
  // rest from each half's own pass.
  s.guidance_channels = std::min(3, c.out_channels());
  // forward_with_cfg's scale_pow: sample_fitv2_ddp.py passes it; sample_fit_ddp.py does not (and
  // its clamp of ADM timesteps to 1 would leave no guidance), so FiTv1 refuses it.
  if (c.name == "fitv2") s.power_cos = NetSpec::PowerCos::Fit;
  if (c.name == "fitv1") s.power_cos = NetSpec::PowerCos::None;
  return s;
}

// Per-block activations kept for backward: the adaLN-Zero block's, and Skip-DiT's fusion before it.
struct BlockActs {
  const float* xs = nullptr;  // block input: the stream, or the skip fusion's output
  float* fused = nullptr;     // storage of the fusion's output (skip_dit)
  float *cat = nullptr, *cat_n = nullptr, *cat_mean = nullptr, *cat_rstd = nullptr;  // skip fusion
  AdaLNActs blk;
};

struct BlockW {
  AdaLNBlock blk;
  bool fuse = false;  // Skip-DiT: x = skip_linear(skip_norm(concat(x, skip))) first
  Norm skip_norm;
  Linear skip_linear;
};

class DiT final : public Network {
 public:
  DiT(const DiTConfig& c, Backend& be)
      : Network(dit_spec(c), dit_table(c), be), c_(c), token_rows_(be) {
    const size_t D = c.hidden_size;
    ln_ = adaln_norm_consts(be_, consts_, int(D), kLnEps);
    const ParamTable& t = table_;
    if (c.fit()) {
      if (c.adaln_lora_dim > 0) global_ada_ = linear(t, "global_adaLN_modulation.1");
      if (c.use_rope) {
        // Non-persistent buffers (not parameters): computed for this grid and scaling.
        const size_t n = size_t(c.tokens()) * c.head_dim();
        std::vector<float> tab(2 * n);
        // (A packed batch gathers its tokens' rows: the official module's tables are built once
        // for max_pe_len and indexed by each token's grid position.)
        fit_rope_tables(c.rope, c.grid(), c.grid_w(), c.head_dim(), tab.data(), tab.data() + n);
        rope_ = DeviceBuffer(be_, tab.size() * 4);
        be_.upload(rope_.f32(), tab.data(), tab.size() * 4);
      }
    }
    patch_ = linear(t, "x_embedder.proj");
    cond_ = conditioning(t, int(D));
    final_.norm = c.use_rmsnorm ? rms_norm(t, "final_layer.norm_final", int(D), kLnEps)
                  : c.fit()     ? fit_norm(t, "final_layer.norm_final", c.norm_type, int(D))
                                : ln_;
    if (c.adaln_swiglu)
      final_.ada_mlp = swiglu_modulation(t, "final_layer.adaLN_modulation.");
    else
      final_.ada = linear(t, "final_layer.adaLN_modulation.1");
    final_.linear = linear(t, "final_layer.linear");
    for (int k = 0; k < c.depth; ++k) {
      const std::string p = cat("blocks.", k, ".");
      BlockW w;
      AdaLNBlock& b = w.blk;
      b.wo_shift = c.wo_shift;
      if (c.adaln_swiglu)
        b.ada_mlp = swiglu_modulation(t, p + "adaLN_modulation.");
      else
        b.ada = linear(t, p + "adaLN_modulation.1");
      if (c.fit() && c.adaln_lora_dim > 0) b.ada2 = linear(t, p + "adaLN_modulation.2");
      b.norm1 = c.use_rmsnorm ? rms_norm(t, p + "norm1", int(D), kLnEps)
                : c.fit()     ? fit_norm(t, p + "norm1", c.norm_type, int(D))
                              : ln_;
      b.norm2 = c.use_rmsnorm ? rms_norm(t, p + "norm2", int(D), kLnEps)
                : c.fit()     ? fit_norm(t, p + "norm2", c.norm_type, int(D))
                              : ln_;
      b.attn = attention(t, p + "attn.", c.num_heads);
      if (c.use_qknorm) {
        b.attn.q_norm = rms_norm(t, p + "attn.q_norm", c.head_dim(), kLnEps);
        b.attn.k_norm = rms_norm(t, p + "attn.k_norm", c.head_dim(), kLnEps);
      }
      // FiT: create_norm(q_norm / k_norm, head_dim) (qk_norm_weight makes "layernorm" weighted).
      if (c.fit() && c.q_norm != FitNorm::None)
        b.attn.q_norm = fit_norm(t, p + "attn.q_norm", c.qk_kind(c.q_norm), c.head_dim());
      if (c.fit() && c.k_norm != FitNorm::None)
        b.attn.k_norm = fit_norm(t, p + "attn.k_norm", c.qk_kind(c.k_norm), c.head_dim());
      b.attn.rope_v = c.fit() && c.use_rope && c.rope_v;  // add_rel_pe_to_v
      if (c.use_rope && c.fit()) {
        b.attn.rope_cos_buf = rope_.f32();
        b.attn.rope_sin_buf = rope_.f32() + size_t(c.tokens()) * c.head_dim();
      } else if (c.use_rope) {
        b.attn.rope_cos = t.at("feat_rope.freqs_cos").offset;
        b.attn.rope_sin = t.at("feat_rope.freqs_sin").offset;
      }
      if (c.fit() && c.use_swiglu) {  // timm SwiGLU: fc2(silu(fc1_g(x)) * fc1_x(x))
        b.mlp.fc1 = linear(t, p + "mlp.fc1_g");
        b.mlp.fc1x = linear(t, p + "mlp.fc1_x");
      } else {
        b.mlp.fc1 = linear(t, p + (c.use_swiglu && !c.fit() ? "mlp.w12" : "mlp.fc1"));
      }
      b.mlp.fc2 = linear(t, p + (c.use_swiglu && !c.fit() ? "mlp.w3" : "mlp.fc2"));
      b.mlp.act = Activation::GeluTanh;
      b.mlp.gated = c.use_swiglu;
      if (c.skip() && k >= c.depth / 2) {
        const int i = k - c.depth / 2;
        w.fuse = true;
        w.skip_norm = norm(t, cat("skip_norms.", i), 2 * int(D), kLnEps);
        w.skip_linear = linear(t, cat("skip_linears.", i, ".linear"));
      }
      blocks_.push_back(w);
    }
  }

  void init_random(uint64_t seed) override;
  // FiT's adaln_type "swiglu": timm SwiGLU fc1_g, fc1_x, fc2 under `prefix`.
  static Mlp swiglu_modulation(const ParamTable& t, const std::string& prefix) {
    Mlp m;
    m.fc1 = linear(t, prefix + "fc1_g");
    m.fc1x = linear(t, prefix + "fc1_x");
    m.fc2 = linear(t, prefix + "fc2");
    m.gated = true;
    return m;
  }
  // FiT's create_norm(kind, dim) (eps 1e-6) over the parameter-free LayerNorm's constants.
  Norm fit_norm(const ParamTable& t, const std::string& name, FitNorm kind, int dim) const {
    if (kind == FitNorm::WRmsNorm) return rms_norm(t, name, dim, kLnEps);
    Norm n = norm_no_affine(dim, kLnEps, ln_.one, ln_.zero, ln_.sink);
    n.identity = kind == FitNorm::None;
    if (kind == FitNorm::WLayerNorm)
      n.w = t.at(name + ".weight").offset;  // bias: the zeros, its gradient the sink
    return n;
  }
  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train) override;
  void backward(const float* dout) override;
  bool packs_sizes() const override { return c_.fit(); }
  void set_valid_sizes(const std::vector<std::array<int, 2>>& sizes) override;
  size_t arena_bytes() const override { return arena_ ? arena_->size() : 0; }
  void set_skip_cache(int every) override {
    UVIT_CHECK(every <= 1 || (c_.skip() && c_.depth >= 2 * kCacheBranch), "--skip-cache: network ",
               c_.name, " of depth ", c_.depth,
               " has no Skip-Cache (skip_dit of depth >= ", 2 * kCacheBranch, ")");
    cache_every_ = every;
    cache_calls_ = 0;
    cache_valid_ = false;
  }
  double forward_flops() const override { return dit_flops(c_); }

 protected:
  void plan_batch(int B, bool train) override {
    plan(B, train, c_.tokens(), false);
    // Skip-Cache's copy of the deep blocks' input, as its first full call would allocate it.
    if (cache_every_ > 1 && !train)
      keep_cache(B, size_t(B) * c_.tokens() * c_.hidden_size * be_.act_bytes());
  }
  void plan_packed_batch(int B, bool train) override;

 private:
  // L: tokens per sample (the grid's, or the packed sequence's); packed: the gather buffers.
  void plan(int B, bool train, int L, bool packed);
  // FiTv2's packed batch: the valid tokens of each sample first in its sequence, the per-token
  // RoPE rows, and the blocks' attention switched to varlen (or everything back for a plain one).
  void pack_inputs(const float* x);
  void set_block_attention();
  // The valid tokens between the canvas grid and the packed sequence (to_canvas: packed ->
  // canvas), feat act elements per token: one move_rows over pack_inputs' index lists.
  void move_tokens(float* dst, const float* src, long feat, bool to_canvas);
  // online_rope: the packed batch's RoPE tables (rope_online_), the first row of each sample's.
  std::vector<long> online_tables();
  // FiT.forward's network time: clamp(s t / (1 + (s - 1) t), max = 1) with s = time_shifting
  // (fp32, into tnet_, on the device). The clamp matters to dopri5, which may step a little past
  // t = 1.
  const float* fit_time(const float* t, int B) {
    be_.fit_time_shift(t, tnet_, B, float(c_.time_shifting));
    return tnet_;
  }
  // What the modulations read: silu(c), or c with FiT's SwiGLU modulations; and its gradient.
  const float* cond_in() const { return c_.adaln_swiglu ? cond_acts_.c : cond_acts_.sc; }
  float* dcond_in() const { return c_.adaln_swiglu ? cond_acts_.dc : cond_acts_.dsc; }
  // The input of deep block k >= depth/2 pops the output of block depth-1-k: stream[depth - k].
  int skip_stream(int k) const { return c_.depth - k; }
  // `input`: the block's input instead of stream_[k] (Skip-Cache's cached features).
  void block_forward(int k, BlockActs& A, const float* input = nullptr);
  void block_backward(int k, BlockActs& A);

  DiTConfig c_;
  DeviceBuffer consts_;
  DeviceBuffer rope_;  // FiTv2: cos then sin [tokens, head_dim]
  // online_rope's tables of a packed batch's grids (cos then sin [online_rows_, head_dim]).
  DeviceBuffer rope_online_;
  std::vector<std::array<int, 2>> online_grids_;
  long online_rows_ = 0;
  Norm ln_;
  Linear patch_, global_ada_;
  Conditioning cond_;
  FinalLayer final_;
  std::vector<BlockW> blocks_;

  // The plan of the last forward.
  int B_ = 0, L_ = 0;
  bool train_ = false, packed_ = false;
  // FiTv2 packing: sizes of the next forward, the packed one's token grids and lengths (host).
  std::vector<std::array<int, 2>> pending_sizes_;
  std::vector<int32_t> lens_;
  std::vector<std::array<int, 2>> grids_;
  float *ccols_ = nullptr, *rope_tok_ = nullptr;  // canvas tokens; per-token cos then sin
  // The valid tokens' rows: in the packed batch, on the canvas, and in one canvas grid (RoPE).
  RowLists token_rows_;
  size_t packed_rows_ = 0, canvas_rows_ = 0, grid_rows_ = 0;
  long valid_ = 0;  // valid tokens in the batch
  std::unique_ptr<Arena> arena_;
  float *cols_, *patches_;
  // FiTv2: the network time (fp32 [B]) and the global modulation [B, 6D].
  float *tnet_ = nullptr, *gmod_ = nullptr;
  CondActs cond_acts_;
  FinalActs final_acts_;
  float* img_ = nullptr;        // LightningDiT with learn_sigma: the whole head output as an image
  std::vector<float*> stream_;  // stream_[k]: the output of block k-1 (stream_[0]: the tokens)
  std::vector<BlockActs> acts_;
  AdaLNGrads grads_acts_;
  float *dtok_, *dcat_, *dcatn_;
  std::vector<float*> dskip_;
  // Skip-Cache (DiT_cache.forward): the input of block depth - kCacheBranch from the last full
  // call.
  int cache_every_ = 0;
  long cache_calls_ = 0;
  DeviceBuffer cache_;
  int cache_B_ = 0;
  bool cache_valid_ = false;
  // cache_ for B samples of `bytes` (the first full call, or plan_batch ahead of it).
  void keep_cache(int B, size_t bytes) {
    if (!cache_.as() || cache_B_ != B) cache_ = DeviceBuffer(be_, bytes);
    cache_B_ = B;
  }
};

void DiT::plan(int B, bool train, int Lseq, bool packed) {
  if (L_ != Lseq || packed_ != packed) arena_.reset();  // a new sequence length re-plans too
  if (!begin_plan(be_, arena_, B_, train_, B, train)) return;
  L_ = Lseq;
  packed_ = packed;
  const size_t D = c_.hidden_size, L = size_t(Lseq), M = size_t(B) * L;
  const size_t cpp = size_t(c_.in_channels) * c_.patch_size * c_.patch_size;
  const size_t pd = size_t(c_.patch_size) * c_.patch_size * c_.head_channels();
  const size_t img = size_t(B) * c_.head_channels() * c_.input_size * c_.width();
  const bool drop_sigma = c_.out_channels() != c_.head_channels();
  const int depth = c_.depth, half = depth / 2;
  arena_->plan([&](Arena& a) {
    cols_ = a.act(M * cpp);
    // Packed: the canvas's tokens (im2col of x, and of dout in backward; the output tokens
    // scattered back before col2im) and the per-token RoPE rows.
    const size_t Mc = size_t(B) * c_.tokens();
    ccols_ = packed ? a.act(Mc * std::max(cpp, pd)) : nullptr;
    rope_tok_ = packed && c_.use_rope ? a.f32(2 * M * c_.head_dim()) : nullptr;
    patches_ = c_.fit() ? nullptr : a.act(M * D);  // FiT: no position, the tokens are stream_[0]
    tnet_ = c_.fit() ? a.f32(B) : nullptr;
    gmod_ = c_.fit() && c_.adaln_lora_dim > 0 ? a.act(size_t(B) * 6 * D) : nullptr;
    // FiT's gathered qk-norms (all but a pair of RMSNorms): scratch shared by the blocks.
    const bool qk_ln = blocks_[0].blk.attn.qk_gathered();
    float* qk_tmp = qk_ln ? a.act(M * 2 * D) : nullptr;
    float* qk_dx = qk_ln && train ? a.act(M * 2 * D) : nullptr;
    plan_conditioning(a, cond_acts_, B, int(D), train);
    stream_.assign(depth + 1, nullptr);
    plan_streams(a, stream_, M * D, train, c_.skip() ? half + 1 : 1);  // + 1: the tokens
    acts_.assign(train ? depth : 1, BlockActs{});
    for (size_t k = 0; k < acts_.size(); ++k) {
      BlockActs& A = acts_[k];
      // Fusion buffers where a block fuses (training keeps one set per block; inference shares
      // one set, used by every deep block).
      if (train ? blocks_[k].fuse : c_.skip()) {
        A.fused = a.act(M * D);
        A.cat = a.act(M * 2 * D);
        A.cat_n = a.act(M * 2 * D);
        A.cat_mean = a.f32(M);
        A.cat_rstd = a.f32(M);
      }
      plan_block(a, blocks_[k].blk, A.blk, B, int(L), qk_tmp, qk_dx);
      A.blk.gmod = gmod_;
    }
    plan_final(a, final_, final_acts_, B, int(L));
    img_ = drop_sigma ? a.f32(img) : nullptr;
    if (train) {
      plan_block_grads(a, blocks_[0].blk, grads_acts_, B, int(L));
      dtok_ = a.act(M * pd);
      dcat_ = c_.skip() ? a.act(M * 2 * D) : nullptr;
      dcatn_ = c_.skip() ? a.act(M * 2 * D) : nullptr;
      dskip_.assign(c_.skip() ? half : 0, nullptr);
      for (auto& d : dskip_) d = a.act(M * D);
    }
  });
}

void DiT::block_forward(int k, BlockActs& A, const float* input) {
  const BlockW& w = blocks_[k];
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int B = B_, L = L_, M = B * L, D = c_.hidden_size;
  A.xs = input ? input : stream_[k];
  if (w.fuse) {
    // x = skip_linear(skip_norm(concat([x, skip]))): replaces x (no residual).
    be_.copy_act_2d(A.cat, 2 * D, A.xs, D, M, D);
    be_.copy_act_2d(be_.act_at(A.cat, D), 2 * D, stream_[skip_stream(k)], D, M, D);
    norm_fwd(W, w.skip_norm, A.cat, A.cat_n, A.cat_mean, A.cat_rstd, M);
    linear_fwd(W, w.skip_linear, A.cat_n, 2 * D, A.fused, D, M);
    A.xs = A.fused;
  }
  block_fwd(W, w.blk, A.xs, cond_in(), A.blk, stream_[k + 1], B, L);
}

void DiT::forward(const float* x, const float* t, const int32_t* y, const float* context,
                  float* out, int B, bool train) {
  check_inputs(y, context, B);
  // A packed batch (set_valid_sizes) runs sequences of min(grid tokens, context_size) tokens.
  const std::vector<std::array<int, 2>> sizes = std::move(pending_sizes_);
  pending_sizes_.clear();
  const bool packed = !sizes.empty();
  UVIT_CHECK(!packed || int(sizes.size()) == B, c_.name, ": ", sizes.size(),
             " valid sizes for a batch of ", B);
  if (packed) {
    lens_.assign(size_t(B), 0);
    grids_.assign(size_t(B), {0, 0});
    for (int b = 0; b < B; ++b) {
      grids_[b] = {sizes[b][0] / c_.patch_size, sizes[b][1] / c_.patch_size};
      lens_[b] = grids_[b][0] * grids_[b][1];
    }
  }
  plan(B, train, packed ? std::min(c_.tokens(), c_.context_size) : c_.tokens(), packed);
  set_block_attention();
  act_params();
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int D = c_.hidden_size, C = c_.in_channels, S = c_.input_size, p = c_.patch_size;
  const int L = L_, M = B * L, Co = c_.head_channels();

  // Patch tokens plus the fixed position (FiT: x_embedder's Linear over the (c, p1, p2) features
  // im2col gives, and no position).
  if (packed_)
    pack_inputs(x);
  else
    be_.patch_im2col(x, cols_, B, C, S, p, c_.width());
  if (c_.fit()) {
    linear_fwd(W, patch_, cols_, patch_.in, stream_[0], D, M);
    if (c_.time_clamp) t = fit_time(t, B);  // else time_shifting is 1: t as it is
  } else {
    linear_fwd(W, patch_, cols_, patch_.in, patches_, D, M);
    be_.tokens_fwd(nullptr, patches_, params_ + table_.at("pos_embed").offset, stream_[0], B, 0, L,
                   D);
  }
  conditioning_fwd(W, cond_, t, y, cond_acts_, B);
  if (gmod_) linear_fwd(W, global_ada_, cond_acts_.sc, D, gmod_, 6 * D, B);

  if (cache_every_ > 1 && !train) {
    // DiT_cache: a full call caches stream[depth - 4]; the others run blocks 0..3 (whose outputs
    // are the skips the last 4 blocks pop) and then the last 4 blocks from the cached input.
    const int deep = c_.depth - kCacheBranch;
    const size_t n = size_t(M) * D * be_.act_bytes();
    const bool full = cache_calls_ % cache_every_ == 0 || !cache_valid_ || cache_B_ != B;
    for (int k = 0; k < c_.depth; ++k) {
      if (!full && k >= kCacheBranch && k < deep) continue;
      if (k == deep && full) {
        keep_cache(B, n);
        cache_valid_ = true;
        be_.copy_act(cache_.f32(), stream_[k], size_t(M) * D);
      }
      // (stream_[deep] may be a skip source, so the cached input is passed, not copied there.)
      block_forward(k, acts_[0], k == deep && !full ? cache_.f32() : nullptr);
    }
    ++cache_calls_;
    float t0 = 0;
    be_.download(&t0, t, sizeof(float));
    if (t0 <= kCacheCloseAt) set_skip_cache(cache_every_);
  } else {
    for (int k = 0; k < c_.depth; ++k) block_forward(k, acts_[train ? k : 0]);
  }

  final_fwd(W, final_, stream_[c_.depth], cond_in(), final_acts_, B, L);
  const float* tok = final_acts_.tok;
  if (packed_) {
    // The valid tokens back to their canvas places (padding zero: FiT's output x mask).
    const size_t pd = size_t(p) * p * Co;
    be_.zero_act(ccols_, size_t(B) * c_.tokens() * pd);
    move_tokens(ccols_, tok, long(pd), true);
    be_.patch_col2im(ccols_, out, B, Co, S, p, c_.width());
  } else if (c_.fit()) {
    // unpatchify "b h w (c p1 p2) -> b c (h p1) (w p2)"
    be_.patch_col2im(tok, out, B, Co, S, p, c_.width());
  } else if (img_) {
    // LightningDiT with learn_sigma: x, _ = x.chunk(2, dim=1), the first in_channels.
    const long n = long(c_.in_channels) * S * S;
    be_.unpatchify_fwd(tok, img_, B, 0, Co, S, p);
    be_.copy_2d(out, n, img_, 2 * n, B, n);
  } else {
    be_.unpatchify_fwd(tok, out, B, 0, Co, S, p);
  }
}

void DiT::block_backward(int k, BlockActs& A) {
  const BlockW& w = blocks_[k];
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int B = B_, L = L_, M = B * L, D = c_.hidden_size;
  const AdaLNGrads& G = grads_acts_;
  block_bwd(W, w.blk, A.blk, cond_in(), G, dcond_in(), B, L);
  if (w.fuse) {
    linear_bwd(W, w.skip_linear, A.cat_n, 2 * D, G.dX, D, dcatn_, 2 * D, M);
    be_.zero_act(dcat_, size_t(M) * 2 * D);
    norm_bwd(W, w.skip_norm, dcatn_, A.cat, A.cat_mean, A.cat_rstd, dcat_, M);
    be_.copy_act_2d(G.dX, D, dcat_, 2 * D, M, D);
    // The skip's half goes to the in-block whose output it was (added when that block is reached).
    be_.copy_act_2d(dskip_[c_.depth - 1 - k], D, be_.act_at(dcat_, D), 2 * D, M, D);
  }
}

void DiT::backward(const float* dout) {
  UVIT_CHECK(arena_ && train_, "backward() needs a preceding forward(..., train=true)");
  grads();
  const Weights W{be_, params_, act_params_, grads_, quant_.get(), &table_};
  const int B = B_, D = c_.hidden_size, S = c_.input_size, p = c_.patch_size;
  const int L = L_, M = B * L, Co = c_.head_channels(), half = c_.depth / 2;
  const AdaLNGrads& G = grads_acts_;

  // Final layer (the dropped sigma channels get no gradient).
  if (packed_) {  // the gradient of the valid tokens; the padding's is zero
    const size_t pd = size_t(p) * p * Co;
    be_.patch_im2col(dout, ccols_, B, Co, S, p, c_.width());
    be_.zero_act(dtok_, size_t(M) * pd);
    move_tokens(dtok_, ccols_, long(pd), false);
  } else if (c_.fit()) {
    be_.patch_im2col(dout, dtok_, B, Co, S, p, c_.width());
  } else if (img_) {
    const long n = long(c_.in_channels) * S * S;
    be_.fill(img_, 0.f, size_t(B) * 2 * n);
    be_.copy_2d(img_, 2 * n, dout, n, B, n);
    be_.unpatchify_bwd(img_, dtok_, B, 0, Co, S, p);
  } else {
    be_.unpatchify_bwd(dout, dtok_, B, 0, Co, S, p);
  }
  final_bwd(W, final_, stream_[c_.depth], cond_in(), final_acts_, dtok_, G, dcond_in(), B, L);
  grads_ready("final_layer.");

  // Blocks in reverse; a shallow block's output also receives its deep block's skip gradient.
  if (G.dgmod) be_.zero_act(G.dgmod, size_t(B) * 6 * D);
  for (int k = c_.depth - 1; k >= 0; --k) {
    if (c_.skip() && k < half) be_.axpy_act(G.dX, dskip_[k], 1.f, size_t(M) * D);
    block_backward(k, acts_[k]);
    grads_ready(cat("blocks.", k, "."));
    if (blocks_[k].fuse) {  // Skip-DiT: the fusion of block k's skip (block_backward's)
      grads_ready(cat("skip_norms.", k - half, "."));
      grads_ready(cat("skip_linears.", k - half, "."));
    }
  }
  if (G.dgmod)
    linear_bwd(W, global_ada_, cond_acts_.sc, D, G.dgmod, 6 * D, cond_acts_.dsc, D, B, 1.f);

  // Tokens: the position is frozen (requires_grad=False), so only the patch embedding learns.
  linear_bwd(W, patch_, cols_, patch_.in, G.dX, D, nullptr, 0, M);
  if (c_.adaln_swiglu)
    conditioning_bwd_c(W, cond_, cond_acts_, B);  // the modulations read c itself
  else
    conditioning_bwd(W, cond_, cond_acts_, B);
}

void DiT::set_valid_sizes(const std::vector<std::array<int, 2>>& sizes) {
  UVIT_CHECK(sizes.empty() || c_.fit(), "network ", c_.name,
             " takes no variable-size batches (only FiT packs them; docs/fit.md)");
  const int p = c_.patch_size, seq = std::min(c_.tokens(), c_.context_size);
  for (size_t b = 0; b < sizes.size(); ++b) {
    const int h = sizes[b][0], w = sizes[b][1];
    UVIT_CHECK(
        h >= p && w >= p && h % p == 0 && w % p == 0 && h <= c_.input_size && w <= c_.width(),
        c_.name, ": sample ", b, " size ", h, " x ", w, " is not a multiple of patch_size ", p,
        " within the ", c_.input_size, " x ", c_.width(), " input");
    UVIT_CHECK((h / p) * (w / p) <= seq, c_.name, ": sample ", b, " has ", (h / p) * (w / p),
               " tokens, more than the ", seq, " of a packed sequence (min(grid, context_size))");
  }
  pending_sizes_ = sizes;
}

// The largest packed batch of B (docs/memory.md): the packed plan does not depend on the sizes;
// pack_inputs' three index lists hold one entry per valid token each, at most B times the largest
// grid set_valid_sizes admits, and online_rope's tables one row per token of each distinct grid,
// at most the B largest admissible grids.
void DiT::plan_packed_batch(int B, bool train) {
  if (!c_.fit()) return Network::plan_packed_batch(B, train);  // refuses
  const int p = c_.patch_size, seq = std::min(c_.tokens(), c_.context_size);
  plan(B, train, seq, true);
  std::vector<long> grids;  // tokens of every admissible grid
  for (int gh = 1; gh <= c_.input_size / p; ++gh)
    for (int gw = 1; gw <= c_.width() / p && gh * gw <= seq; ++gw) grids.push_back(gh * gw);
  std::sort(grids.rbegin(), grids.rend());
  token_rows_.reserve(3 * size_t(B) * size_t(grids[0]));
  if (!c_.rope.online || !rope_tok_) return;
  const long rows =
      std::accumulate(grids.begin(), grids.begin() + std::min<long>(B, long(grids.size())), 0L);
  rope_online_.reserve(be_, 2 * size_t(rows) * c_.head_dim() * 4);
}

void DiT::move_tokens(float* dst, const float* src, long feat, bool to_canvas) {
  const int32_t *packed = token_rows_.at(packed_rows_), *canvas = token_rows_.at(canvas_rows_);
  if (to_canvas)
    be_.move_rows(dst, canvas, src, packed, valid_, feat, false);
  else
    be_.move_rows(dst, packed, src, canvas, valid_, feat, false);
}

void DiT::pack_inputs(const float* x) {
  const int B = B_, p = c_.patch_size, C = c_.in_channels;
  const long cpp = long(C) * p * p, Lc = c_.tokens(), gw = c_.grid_w();
  // Token t = i gw_b + j of sample b sits at row b L + t of the packed batch, b Lc + i gw + j of
  // the canvas.
  // online_rope: sample b's RoPE rows come from a table scaled for its own grid (row offset
  // online[b] in online_tables()'s concatenation), else from the canvas table.
  const std::vector<long> online =
      c_.rope.online && rope_tok_ ? online_tables() : std::vector<long>();
  std::vector<int32_t> packed, canvas, grid, rope_rows;
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < grids_[b][0]; ++i)
      for (int j = 0; j < grids_[b][1]; ++j) {
        packed.push_back(int32_t(long(b) * L_ + long(i) * grids_[b][1] + j));
        grid.push_back(int32_t(i * gw + j));
        canvas.push_back(int32_t(b * Lc + grid.back()));
        if (!online.empty()) rope_rows.push_back(int32_t(online[b] + long(i) * grids_[b][1] + j));
      }
  valid_ = long(packed.size());
  token_rows_.clear();
  packed_rows_ = token_rows_.add(packed, long(B) * L_, true, "fit: packed rows");
  canvas_rows_ = token_rows_.add(canvas, B * Lc, true, "fit: canvas rows");
  const long table_rows = online.empty() ? Lc : online_rows_;
  grid_rows_ = online.empty() ? token_rows_.add(grid, Lc, false, "fit: grid rows")
                              : token_rows_.add(rope_rows, table_rows, false, "fit: rope rows");
  token_rows_.upload();
  be_.patch_im2col(x, ccols_, B, C, c_.input_size, p, c_.width());
  be_.zero_act(cols_, size_t(B) * L_ * cpp);
  move_tokens(cols_, ccols_, cpp, false);
  if (!rope_tok_) return;
  // Each token's RoPE row is the canvas table's row of its grid position (online: its own grid's
  // table's), fp32 rows.
  const long Dh = c_.head_dim(), M = long(B) * L_;
  const float* table = online.empty() ? rope_.f32() : rope_online_.f32();
  be_.fill(rope_tok_, 0.f, size_t(2 * M * Dh));
  for (int part = 0; part < 2; ++part)
    be_.move_rows(rope_tok_ + part * M * Dh, token_rows_.at(packed_rows_),
                  table + part * table_rows * Dh, token_rows_.at(grid_rows_), valid_, Dh, false,
                  false);
}

std::vector<long> DiT::online_tables() {
  // One table per distinct grid of the batch, each scaled for that grid (FitRope::online), cos
  // then sin [rows, Dh]; uploaded again only when the set of grids changes.
  std::vector<std::array<int, 2>> distinct(grids_);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  std::vector<long> first(distinct.size());
  long rows = 0;
  for (size_t k = 0; k < distinct.size(); ++k) {
    first[k] = rows;
    rows += long(distinct[k][0]) * distinct[k][1];
  }
  const size_t Dh = c_.head_dim();
  if (distinct != online_grids_) {
    std::vector<float> tab(2 * size_t(rows) * Dh);
    for (size_t k = 0; k < distinct.size(); ++k)
      fit_rope_tables(c_.rope, distinct[k][0], distinct[k][1], int(Dh),
                      tab.data() + size_t(first[k]) * Dh, tab.data() + (rows + first[k]) * Dh);
    rope_online_.reserve(be_, tab.size() * 4);
    be_.upload(rope_online_.f32(), tab.data(), tab.size() * 4);
    online_grids_ = distinct;
    online_rows_ = rows;
  }
  std::vector<long> off(grids_.size());
  for (size_t b = 0; b < grids_.size(); ++b)
    off[b] = first[size_t(std::lower_bound(distinct.begin(), distinct.end(), grids_[b]) -
                          distinct.begin())];
  return off;
}

void DiT::set_block_attention() {
  const size_t Dh = c_.head_dim(), M = size_t(B_) * L_;
  for (BlockW& w : blocks_) {
    Attention& a = w.blk.attn;
    a.kv_lens = packed_ ? lens_.data() : nullptr;
    if (!c_.fit() || !c_.use_rope) continue;
    a.rope_per_token = packed_;
    a.rope_cos_buf = packed_ ? rope_tok_ : rope_.f32();
    a.rope_sin_buf = packed_ ? rope_tok_ + M * Dh : rope_.f32() + size_t(c_.tokens()) * Dh;
  }
}

void DiT::init_random(uint64_t seed) {
  write_params(init_adaln(table_, seed, [&](const ParamEntry& e, const Philox& rng, float* p) {
    const std::string& n = e.name;
    if (n == "pos_embed") {
      sincos_2d(p, c_.grid(), c_.hidden_size);
    } else if (n.starts_with("feat_rope.")) {
      rope_2d(p, c_.grid(), c_.head_dim(), n.ends_with("cos"));
    } else if (n.starts_with("skip_norms.")) {
      std::fill(p, p + e.numel, n.ends_with(".weight") ? 1.f : 0.f);
    } else if (n.starts_with("skip_linears.")) {
      // Created after initialize_weights: PyTorch's default Linear init, U(+-1/sqrt(fan_in)).
      const auto& w = table_.at(n.substr(0, n.rfind('.')) + ".weight");
      const double bound = 1.0 / std::sqrt(double(w.shape[1]));
      for (size_t i = 0; i < e.numel; ++i) p[i] = float((2.0 * rng.uniform(i) - 1.0) * bound);
    } else {
      return false;
    }
    return true;
  }));
}

}  // namespace

NetworkFamily dit_family(const std::string& name) {
  const auto cfg = [name](const json& nnet) {
    DiTConfig c = parse(nnet);
    UVIT_CHECK(c.name == name, "nnet.name \"", c.name, "\" is not \"", name, "\"");
    return c;
  };
  return config_family<DiT>(name, cfg, dit_spec, dit_table, dit_flops);
}

}  // namespace uvit
