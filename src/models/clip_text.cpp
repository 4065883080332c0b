// The CLIP text transformer (HF CLIPTextModel): token + position embeddings, pre-norm blocks with
// causal self-attention and a quick-GELU MLP, final LayerNorm (SPEC 14).
// Every kernel goes through the Backend (any device), in fp32.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "uvit/clip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

// ---- config ------------------------------------------------------------------------------------

ClipTextConfig ClipTextConfig::from_json(const nlohmann::json& j0, const std::string& what) {
  UVIT_CHECK(j0.is_object(), what, ": expected a JSON object");
  const nlohmann::json& j = j0.contains("text_config") ? j0["text_config"] : j0;
  UVIT_CHECK(j.is_object(), what, ": text_config is not an object");
  ClipTextConfig c;
  auto get_int = [&](const char* k, int& v) {
    if (!j.contains(k)) return;
    UVIT_CHECK(j[k].is_number_integer(), what, ": ", k, " must be an integer");
    v = j[k].get<int>();
  };
  get_int("vocab_size", c.vocab_size);
  get_int("hidden_size", c.hidden_size);
  get_int("intermediate_size", c.intermediate_size);
  get_int("num_hidden_layers", c.num_hidden_layers);
  get_int("num_attention_heads", c.num_attention_heads);
  get_int("max_position_embeddings", c.max_position_embeddings);
  if (j.contains("hidden_act")) {
    UVIT_CHECK(j["hidden_act"].is_string(), what, ": hidden_act must be a string");
    c.hidden_act = j["hidden_act"].get<std::string>();
  }
  if (j.contains("layer_norm_eps")) {
    UVIT_CHECK(j["layer_norm_eps"].is_number(), what, ": layer_norm_eps must be a number");
    c.layer_norm_eps = j["layer_norm_eps"].get<double>();
  }
  c.validate(what);
  return c;
}

ClipTextConfig ClipTextConfig::load(const std::string& path) {
  return from_json(read_json_file(path), path);
}

void ClipTextConfig::validate(const std::string& what) const {
  UVIT_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_hidden_layers >= 0 &&
                 num_attention_heads > 0 && max_position_embeddings > 0,
             what, ": sizes must be positive");
  UVIT_CHECK(hidden_size % num_attention_heads == 0, what, ": hidden_size ", hidden_size,
             " is not divisible by num_attention_heads ", num_attention_heads);
  UVIT_CHECK(hidden_act == "quick_gelu" || hidden_act == "gelu", what, ": hidden_act '", hidden_act,
             "' is not supported (quick_gelu or gelu)");
  UVIT_CHECK(layer_norm_eps > 0, what, ": layer_norm_eps must be positive");
}

// ---- weights -----------------------------------------------------------------------------------

namespace {
struct Slot {
  size_t offset;
  std::vector<int64_t> shape;
  size_t row = 0;  // q/k/v land in rows [row, row + H) of the stacked qkv weight
};
}  // namespace

struct ClipTextModel::Weights {
  size_t tok, pos, final_w, final_b;
  struct Layer {
    size_t ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
  };
  std::vector<Layer> layers;
  std::map<std::string, Slot> slots;  // HF name (without "text_model.") -> where it goes
};

ClipTextModel::ClipTextModel(const ClipTextConfig& cfg, Backend& be) : cfg_(cfg), be_(be) {
  cfg_.validate("clip text config");
  UVIT_CHECK(be.act_bytes() == sizeof(float),
             "clip text: the model needs fp32 activations (precision fp32 or tf32), got a ",
             be.precision(), " ", be.name(), " backend");
  const int64_t V = cfg.vocab_size, H = cfg.hidden_size, I = cfg.intermediate_size,
                P = cfg.max_position_embeddings;
  w_ = std::make_unique<Weights>();
  Weights& w = *w_;
  size_t off = 0;
  auto take = [&](const std::string& name, std::vector<int64_t> shape) {
    size_t n = 1;
    for (int64_t d : shape) n *= size_t(d);
    size_t o = off;
    off += n;
    if (!name.empty()) w.slots[name] = {o, std::move(shape)};
    return o;
  };
  w.tok = take("embeddings.token_embedding.weight", {V, H});
  w.pos = take("embeddings.position_embedding.weight", {P, H});
  for (int l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = cat("encoder.layers.", l, ".");
    Weights::Layer L;
    L.ln1_w = take(p + "layer_norm1.weight", {H});
    L.ln1_b = take(p + "layer_norm1.bias", {H});
    // q, k, v stacked into one [3H, H] weight so one GEMM computes them.
    L.qkv_w = take("", {3 * H, H});
    L.qkv_b = take("", {3 * H});
    const char* qkv[3] = {"q_proj", "k_proj", "v_proj"};
    for (int k = 0; k < 3; ++k) {
      w.slots[p + "self_attn." + qkv[k] + ".weight"] = {L.qkv_w + size_t(k * H * H), {H, H}};
      w.slots[p + "self_attn." + qkv[k] + ".bias"] = {L.qkv_b + size_t(k * H), {H}};
    }
    L.out_w = take(p + "self_attn.out_proj.weight", {H, H});
    L.out_b = take(p + "self_attn.out_proj.bias", {H});
    L.ln2_w = take(p + "layer_norm2.weight", {H});
    L.ln2_b = take(p + "layer_norm2.bias", {H});
    L.fc1_w = take(p + "mlp.fc1.weight", {I, H});
    L.fc1_b = take(p + "mlp.fc1.bias", {I});
    L.fc2_w = take(p + "mlp.fc2.weight", {H, I});
    L.fc2_b = take(p + "mlp.fc2.bias", {H});
    w.layers.push_back(L);
  }
  w.final_w = take("final_layer_norm.weight", {H});
  w.final_b = take("final_layer_norm.bias", {H});
  total_ = off;
  params_ = be_.alloc(total_);
  be_.fill(params_, 0.f, total_);
}

ClipTextModel::~ClipTextModel() {
  if (params_) be_.free_bytes(params_);
}

void ClipTextModel::load(const NamedArrays& sd, const std::string& what) {
  std::map<std::string, bool> done;
  for (const auto& [key, arr] : sd) {
    // "text_model." may follow a prefix (e.g. a CLIPModel or a wrapper's "transformer.").
    size_t p = key.rfind("text_model.");
    if (p == std::string::npos || (p > 0 && key[p - 1] != '.')) continue;
    std::string name = key.substr(p + 11);
    if (name == "embeddings.position_ids") continue;
    auto it = w_->slots.find(name);
    UVIT_CHECK(it != w_->slots.end(), what, ": unexpected text-model tensor ", key,
               " (does the config match? ", cfg_.num_hidden_layers, " layers)");
    UVIT_CHECK(!done[name], what, ": tensor ", name, " appears twice");
    UVIT_CHECK(arr.shape == it->second.shape, what, ": ", key, " has shape ", shape_str(arr.shape),
               ", expected ", shape_str(it->second.shape));
    UVIT_CHECK(arr.dtype == DType::F32 || arr.dtype == DType::F16 || arr.dtype == DType::BF16 ||
                   arr.dtype == DType::F64,
               what, ": ", key, " has dtype ", dtype_name(arr.dtype), ", expected a float type");
    std::vector<float> v = arr.to_f32();
    be_.upload(params_ + it->second.offset, v.data(), v.size() * sizeof(float));
    done[name] = true;
  }
  for (const auto& [name, slot] : w_->slots)
    UVIT_CHECK(done[name], what, ": missing text-model tensor text_model.", name);
}

void ClipTextModel::load_file(const std::string& path) { load(load_weights(path), path); }

// ---- forward -----------------------------------------------------------------------------------

std::vector<float> ClipTextModel::forward(const std::vector<int>& ids, int B, int L) {
  UVIT_CHECK(B > 0 && L > 0 && ids.size() == size_t(B) * size_t(L), "clip text: ", ids.size(),
             " ids for batch ", B, " x length ", L);
  UVIT_CHECK(L <= cfg_.max_position_embeddings, "clip text: ", L,
             " tokens exceed max_position_embeddings ", cfg_.max_position_embeddings);
  for (int id : ids)
    UVIT_CHECK(id >= 0 && id < cfg_.vocab_size, "clip text: token id ", id, " is outside [0, ",
               cfg_.vocab_size, ")");
  const int H = cfg_.hidden_size, I = cfg_.intermediate_size, M = B * L;
  const int Hn = cfg_.num_attention_heads, Dh = H / Hn;
  const float eps = float(cfg_.layer_norm_eps);
  const Weights& w = *w_;
  const float* P = params_;
  Backend& be = be_;

  // One arena: x [M,H], h [M,H], qkv [M,3H], att [M,H], f [M,I], idx [M] int32.
  const size_t nx = size_t(M) * H, nqkv = 3 * nx, nf = size_t(M) * I;
  float* arena = be.alloc(3 * nx + nqkv + nf + size_t(M));
  float *x = arena, *h = x + nx, *att = h + nx, *qkv = att + nx, *f = qkv + nqkv;
  auto* idx = reinterpret_cast<int32_t*>(f + nf);
  try {
    std::vector<int32_t> id32(ids.begin(), ids.end());
    be.upload(idx, id32.data(), id32.size() * sizeof(int32_t));
    be.embedding_fwd(P + w.tok, idx, x, M, H, H);
    for (int b = 0; b < B; ++b) be.axpy(x + size_t(b) * L * H, P + w.pos, 1.f, size_t(L) * H);
    for (const auto& Ly : w.layers) {
      be.layernorm_fwd(x, P + Ly.ln1_w, P + Ly.ln1_b, h, nullptr, nullptr, M, H, eps);
      be.gemm(false, true, M, 3 * H, H, 1.f, h, H, P + Ly.qkv_w, H, 0.f, qkv, 3 * H);
      be.add_bias(qkv, P + Ly.qkv_b, M, 3 * H);
      be.causal_attention_fwd(qkv, att, B, L, Hn, Dh, 1.f / std::sqrt(float(Dh)));
      be.gemm(false, true, M, H, H, 1.f, att, H, P + Ly.out_w, H, 1.f, x, H);  // x += proj
      be.add_bias(x, P + Ly.out_b, M, H);
      be.layernorm_fwd(x, P + Ly.ln2_w, P + Ly.ln2_b, h, nullptr, nullptr, M, H, eps);
      be.gemm(false, true, M, I, H, 1.f, h, H, P + Ly.fc1_w, H, 0.f, f, I);
      be.add_bias(f, P + Ly.fc1_b, M, I);
      if (cfg_.hidden_act == "gelu") {
        be.gelu_fwd(f, f, nf);
      } else {  // quick_gelu: x * sigmoid(1.702 x) = silu(1.702 x) / 1.702
        be.scale(f, 1.702f, nf);
        be.silu_fwd(f, f, nf);
        be.scale(f, 1.f / 1.702f, nf);
      }
      be.gemm(false, true, M, H, I, 1.f, f, I, P + Ly.fc2_w, I, 1.f, x, H);  // x += mlp
      be.add_bias(x, P + Ly.fc2_b, M, H);
    }
    be.layernorm_fwd(x, P + w.final_w, P + w.final_b, h, nullptr, nullptr, M, H, eps);
    std::vector<float> out(nx);
    be.download(out.data(), h, nx * sizeof(float));
    be.free_bytes(arena);
    return out;
  } catch (...) {
    be.free_bytes(arena);
    throw;
  }
}

std::vector<float> clip_encode_prompts(const ClipTokenizer& tok, ClipTextModel& model,
                                       const std::vector<std::string>& prompts) {
  const int L = ClipTokenizer::kContextLength;
  UVIT_CHECK(model.config().max_position_embeddings >= L, "clip text: max_position_embeddings ",
             model.config().max_position_embeddings, " is below the prompt length ", L);
  if (prompts.empty()) return {};
  std::vector<int> ids;
  for (const auto& p : prompts) {
    auto t = tok.tokenize(p, L);
    ids.insert(ids.end(), t.begin(), t.end());
  }
  return model.forward(ids, int(prompts.size()), L);
}

}  // namespace uvit
