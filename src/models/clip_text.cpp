// The CLIP text transformer (HF CLIPTextModel): token + position embeddings, pre-norm blocks with
// causal self-attention and a quick-GELU MLP, final LayerNorm (SPEC 14).
// Every kernel goes through the Backend (any device), in fp32.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "dist/weights_hash.hpp"
#include "io/weights_views.hpp"
#include "models/clip_encoder.hpp"
#include "uvit/clip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

// ---- config ------------------------------------------------------------------------------------

ClipTextConfig ClipTextConfig::from_json(const nlohmann::json& j0, const std::string& what) {
  return clip::read_tower_config<ClipTextConfig>(
      j0, "text_config", what, [](const clip::ConfigFields& f, ClipTextConfig& c) {
        f.get("vocab_size", c.vocab_size);
        f.get("max_position_embeddings", c.max_position_embeddings);
      });
}

ClipTextConfig ClipTextConfig::load(const std::string& path) {
  return path.empty() ? ClipTextConfig{} : from_json(read_json_file(path), path);
}

void ClipTextConfig::validate(const std::string& what) const {
  UVIT_CHECK(vocab_size > 0 && hidden_size > 0 && intermediate_size > 0 && num_hidden_layers >= 0 &&
                 num_attention_heads > 0 && max_position_embeddings > 0 && projection_dim > 0,
             what, ": sizes must be positive");
  clip::check_tower_fields(*this, what, "");
}

// ---- weights -----------------------------------------------------------------------------------

struct ClipTextModel::Weights {
  clip::Layout lay{"text_model.", "text-model"};
  size_t tok, pos, final_w, final_b, proj;
  std::vector<clip::LayerOffsets> layers;
  bool has_proj = false;
};

ClipTextModel::ClipTextModel(const ClipTextConfig& cfg, Backend& be) : cfg_(cfg), be_(be) {
  cfg_.validate("clip text config");
  clip::require_fp32(be, "clip text");
  const int64_t V = cfg.vocab_size, H = cfg.hidden_size, I = cfg.intermediate_size,
                P = cfg.max_position_embeddings;
  w_ = std::make_unique<Weights>();
  Weights& w = *w_;
  clip::Layout& lay = w.lay;
  w.tok = lay.take("text_model.embeddings.token_embedding.weight", {V, H});
  w.pos = lay.take("text_model.embeddings.position_embedding.weight", {P, H});
  w.layers = clip::add_layers(lay, "text_model.encoder.layers.", cfg.num_hidden_layers, H, I);
  w.final_w = lay.take("text_model.final_layer_norm.weight", {H});
  w.final_b = lay.take("text_model.final_layer_norm.bias", {H});
  lay.add_top_level("text_projection.weight");
  w.proj = lay.take("text_projection.weight", {cfg.projection_dim, H}, /*optional=*/true);
  total_ = lay.total();
  params_ = be_.alloc(total_);
  be_.fill(params_, 0.f, total_);
}

ClipTextModel::~ClipTextModel() {
  if (params_) be_.free_bytes(params_);
}

void ClipTextModel::load(const NamedArrays& sd, const std::string& what) {
  ArrayReader r(sd, what);
  load(r, what);
}

void ClipTextModel::load_file(const std::string& path) { load(*open_weights(path), path); }

void ClipTextModel::load(TensorReader& r, const std::string& what) {
  w_->has_proj = clip::load_into(be_, params_, w_->lay, r, what,
                                 cfg_.num_hidden_layers)["text_projection.weight"];
}

bool ClipTextModel::has_projection() const { return w_->has_proj; }

uint64_t ClipTextModel::weights_hash() const {
  return hash_backend_floats(be_, params_, total_, kWeightsHashSeed);  // zero-filled, then loaded
}

// ---- forward -----------------------------------------------------------------------------------

std::vector<float> ClipTextModel::forward(const std::vector<int>& ids, int B, int L) {
  UVIT_CHECK(B > 0 && L > 0 && ids.size() == size_t(B) * size_t(L), "clip text: ", ids.size(),
             " ids for batch ", B, " x length ", L);
  UVIT_CHECK(L <= cfg_.max_position_embeddings, "clip text: ", L,
             " tokens exceed max_position_embeddings ", cfg_.max_position_embeddings);
  for (int id : ids)
    UVIT_CHECK(id >= 0 && id < cfg_.vocab_size, "clip text: token id ", id, " is outside [0, ",
               cfg_.vocab_size, ")");
  const int H = cfg_.hidden_size, M = B * L;
  const clip::StackDims dims = clip::stack_dims(cfg_, /*causal=*/true);
  const Weights& w = *w_;
  const float* P = params_;
  Backend& be = be_;

  // One buffer: x [M,H], the stack's scratch, idx [M] int32.
  const size_t nx = size_t(M) * H, ns = clip::stack_scratch_floats(dims, size_t(M));
  DeviceBuffer buf(be, (nx + ns + size_t(M)) * sizeof(float));
  float* x = buf.as<float>();
  float* scratch = x + nx;
  auto* idx = reinterpret_cast<int32_t*>(scratch + ns);
  std::vector<int32_t> id32(ids.begin(), ids.end());
  be.upload(idx, id32.data(), id32.size() * sizeof(int32_t));
  be.embedding_fwd(P + w.tok, idx, x, M, H, H);
  for (int b = 0; b < B; ++b) be.axpy(x + size_t(b) * L * H, P + w.pos, 1.f, size_t(L) * H);
  clip::stack_forward(be, P, w.layers, dims, x, scratch, B, L);
  float* h = scratch;
  be.layernorm_fwd(x, P + w.final_w, P + w.final_b, h, nullptr, nullptr, M, H, dims.eps);
  std::vector<float> out(nx);
  be.download(out.data(), h, nx * sizeof(float));
  return out;
}

std::vector<float> ClipTextModel::project_pooled(const std::vector<float>& hidden,
                                                 const std::vector<int>& ids, int B, int L) {
  const int H = cfg_.hidden_size, Pd = cfg_.projection_dim;
  UVIT_CHECK(w_->has_proj,
             "clip text: the weights have no text_projection.weight (a CLIPModel "
             "checkpoint such as openai/clip-vit-large-patch14 has it)");
  UVIT_CHECK(B > 0 && ids.size() == size_t(B) * L && hidden.size() == ids.size() * size_t(H),
             "clip text: project_pooled got ", hidden.size(), " hidden values for ", ids.size(),
             " ids");
  // HF pools at input_ids.argmax(-1): the first end-of-text token (the largest id).
  std::vector<float> pooled(size_t(B) * H);
  for (int b = 0; b < B; ++b) {
    const int* row = ids.data() + size_t(b) * L;
    const int at = int(std::max_element(row, row + L) - row);
    std::copy_n(hidden.data() + (size_t(b) * L + at) * H, H, pooled.data() + size_t(b) * H);
  }
  DeviceBuffer buf(be_, size_t(B) * (H + Pd) * sizeof(float));
  float* x = buf.as<float>();
  float* y = x + size_t(B) * H;
  be_.upload(x, pooled.data(), pooled.size() * sizeof(float));
  be_.gemm(false, true, B, Pd, H, 1.f, x, H, params_ + w_->proj, H, 0.f, y, Pd);
  std::vector<float> out(size_t(B) * Pd);
  be_.download(out.data(), y, out.size() * sizeof(float));
  return out;
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
