// CLIP's image tower (HF CLIPVisionModel + CLIPModel.visual_projection): patch-14 convolution
// (no bias) as im2col + GEMM, the class token, learned positions, pre_layrnorm, the shared pre-norm
// transformer stack (bidirectional), post_layernorm of the class token, visual_projection (no
// bias). Facts: docs/clip_score.md. Every kernel goes through the Backend, in fp32.
#include "uvit/clip_vision.hpp"

#include <algorithm>
#include <cmath>

#include "dist/weights_hash.hpp"
#include "io/weights_views.hpp"
#include "models/clip_encoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

// ---- config ------------------------------------------------------------------------------------

ClipVisionConfig ClipVisionConfig::from_json(const nlohmann::json& j0, const std::string& what) {
  return clip::read_tower_config<ClipVisionConfig>(
      j0, "vision_config", what, [](const clip::ConfigFields& f, ClipVisionConfig& c) {
        f.get("num_channels", c.num_channels);
        f.get("image_size", c.image_size);
        f.get("patch_size", c.patch_size);
      });
}

ClipVisionConfig ClipVisionConfig::load(const std::string& path) {
  return path.empty() ? ClipVisionConfig{} : from_json(read_json_file(path), path);
}

void ClipVisionConfig::validate(const std::string& what) const {
  UVIT_CHECK(hidden_size > 0 && intermediate_size > 0 && num_hidden_layers >= 0 &&
                 num_attention_heads > 0 && image_size > 0 && patch_size > 0 && projection_dim > 0,
             what, ": vision sizes must be positive");
  UVIT_CHECK(num_channels == 3, what, ": num_channels ", num_channels,
             " is not supported (CLIP takes RGB: 3)");
  clip::check_tower_fields(*this, what, "vision ");
  UVIT_CHECK(image_size % patch_size == 0, what, ": image_size ", image_size,
             " is not a multiple of patch_size ", patch_size);
}

// ---- weights -----------------------------------------------------------------------------------

namespace {
struct VisionLayout {
  clip::Layout lay{"vision_model.", "vision-model"};
  size_t cls, patch, pos, pre_w, pre_b, post_w, post_b, proj;
  std::vector<clip::LayerOffsets> layers;

  explicit VisionLayout(const ClipVisionConfig& c) {
    const int64_t H = c.hidden_size, C = c.num_channels, p = c.patch_size;
    cls = lay.take("vision_model.embeddings.class_embedding", {H});
    patch = lay.take("vision_model.embeddings.patch_embedding.weight", {H, C, p, p});
    pos = lay.take("vision_model.embeddings.position_embedding.weight", {c.positions(), H});
    pre_w = lay.take("vision_model.pre_layrnorm.weight", {H});  // HF's spelling
    pre_b = lay.take("vision_model.pre_layrnorm.bias", {H});
    layers = clip::add_layers(lay, "vision_model.encoder.layers.", c.num_hidden_layers, H,
                              c.intermediate_size);
    post_w = lay.take("vision_model.post_layernorm.weight", {H});
    post_b = lay.take("vision_model.post_layernorm.bias", {H});
    lay.add_top_level("visual_projection.weight");
    proj = lay.take("visual_projection.weight", {c.projection_dim, H});
  }
};
}  // namespace

struct ClipVisionModel::Weights : VisionLayout {
  using VisionLayout::VisionLayout;
};

std::vector<std::pair<std::string, std::vector<int64_t>>> clip_vision_param_shapes(
    const ClipVisionConfig& cfg) {
  cfg.validate("clip vision config");
  const VisionLayout w(cfg);
  std::vector<std::pair<std::string, std::vector<int64_t>>> out;
  for (const auto& [name, slot] : w.lay.slots()) out.emplace_back(name, slot.shape);
  return out;
}

ClipVisionModel::ClipVisionModel(const ClipVisionConfig& cfg, Backend& be) : cfg_(cfg), be_(be) {
  cfg_.validate("clip vision config");
  clip::require_fp32(be, "clip vision");
  w_ = std::make_unique<Weights>(cfg_);
  total_ = w_->lay.total();
  params_ = DeviceBuffer(be_, total_ * sizeof(float));
  be_.fill(params_.f32(), 0.f, total_);
}

ClipVisionModel::~ClipVisionModel() = default;

void ClipVisionModel::load(const NamedArrays& sd, const std::string& what) {
  ArrayReader r(sd, what);
  load(r, what);
}

void ClipVisionModel::load_file(const std::string& path) { load(*open_weights(path), path); }

uint64_t ClipVisionModel::weights_hash() const {
  return hash_backend_floats(be_, params_.f32(), total_, kWeightsHashSeed);
}

void ClipVisionModel::load(TensorReader& r, const std::string& what) {
  clip::load_into(be_, params_.f32(), w_->lay, r, what, cfg_.num_hidden_layers);
}

void ClipVisionModel::check_keys(
    const ClipVisionConfig& cfg,
    const std::vector<std::pair<std::string, std::vector<int64_t>>>& keys,
    const std::string& what) {
  cfg.validate(what);
  const VisionLayout w(cfg);
  std::map<std::string, bool> done;
  for (const auto& [key, shape] : keys) {
    std::string name;
    if (!w.lay.match(key, shape, what, cfg.num_hidden_layers, &name)) continue;
    UVIT_CHECK(!done[name], what, ": tensor ", name, " appears twice");
    done[name] = true;
  }
  w.lay.check_complete(done, what);
}

// ---- forward -----------------------------------------------------------------------------------

std::vector<float> ClipVisionModel::forward(const float* pixels, int B,
                                            std::vector<float>* pooled) {
  UVIT_CHECK(B > 0, "clip vision: empty batch");
  const int H = cfg_.hidden_size, C = cfg_.num_channels, S = cfg_.image_size, p = cfg_.patch_size,
            L = cfg_.grid() * cfg_.grid(), N = L + 1, Pd = cfg_.projection_dim;
  const int K = C * p * p;
  const clip::StackDims dims = clip::stack_dims(cfg_, /*causal=*/false);
  const Weights& w = *w_;
  const float* P = params_.f32();
  Backend& be = be_;
  const size_t n_img = size_t(B) * C * S * S, n_cols = size_t(B) * std::max(L * K, 2 * H + Pd),
               n_seq = size_t(B) * N * H, n_scr = clip::stack_scratch_floats(dims, size_t(B) * N);
  // img | cols | patches | extras | seq | x | scratch; pooled rows and the output reuse cols.
  const size_t total = n_img + n_cols + size_t(B) * L * H + size_t(B) * H + 2 * n_seq + n_scr;
  DeviceBuffer buf(be, total * sizeof(float));
  float* img = buf.f32();
  float* cols = img + n_img;
  float* patches = cols + n_cols;
  float* extras = patches + size_t(B) * L * H;
  float* seq = extras + size_t(B) * H;
  float* x = seq + n_seq;
  float* scratch = x + n_seq;
  be.upload(img, pixels, n_img * sizeof(float));
  be.patch_im2col(img, cols, B, C, S, p);
  be.gemm(false, true, B * L, H, K, 1.f, cols, K, P + w.patch, K, 0.f, patches, H);
  be.copy_3d(extras, H, 0, P + w.cls, 0, 0, 1, B, H, false);  // the class token of every image
  be.tokens_fwd(extras, patches, P + w.pos, seq, B, 1, L, H);
  be.layernorm_fwd(seq, P + w.pre_w, P + w.pre_b, x, nullptr, nullptr, B * N, H, dims.eps);
  clip::stack_forward(be, P, w.layers, dims, x, scratch, B, N);
  // The class token of each image -> post_layernorm -> visual_projection.
  float* cls = cols;
  float* pool = cls + size_t(B) * H;
  float* emb = pool + size_t(B) * H;
  be.copy_2d(cls, H, x, long(N) * H, B, H);
  be.layernorm_fwd(cls, P + w.post_w, P + w.post_b, pool, nullptr, nullptr, B, H, dims.eps);
  be.gemm(false, true, B, Pd, H, 1.f, pool, H, P + w.proj, H, 0.f, emb, Pd);
  if (pooled) {
    pooled->resize(size_t(B) * H);
    be.download(pooled->data(), pool, pooled->size() * sizeof(float));
  }
  std::vector<float> out(size_t(B) * Pd);
  be.download(out.data(), emb, out.size() * sizeof(float));
  return out;
}

}  // namespace uvit
