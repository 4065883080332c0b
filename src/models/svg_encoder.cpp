// SVG's encoder (docs/svg_encoder.md): DINOv3 (dinov3.cpp) beside the residual torchvision
// VisionTransformer (conv_proj -> [class_token, patches] + pos_embedding -> pre-norm blocks with
// LayerNorm eps 1e-6, nn.MultiheadAttention and a GELU MLP -> encoder.ln), whose patch tokens go
// through heads = Linear -> GELU -> Linear; match_distribution and the concatenation on the host.
#include "models/svg_encoder.hpp"

#include <cmath>

#include "io/weights_views.hpp"
#include "models/clip_encoder.hpp"
#include "models/frozen_vit.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

void SvgResidualConfig::validate(const std::string& what) const {
  UVIT_CHECK(image_size > 0 && patch_size > 0 && num_layers >= 0 && num_heads > 0 &&
                 hidden_dim > 0 && mlp_dim > 0 && output_dim > 0,
             what, ": residual ViT sizes must be positive");
  UVIT_CHECK(image_size % patch_size == 0, what, ": residual image_size ", image_size,
             " is not a multiple of patch_size ", patch_size);
  UVIT_CHECK(hidden_dim % num_heads == 0, what, ": residual hidden_dim ", hidden_dim,
             " is not divisible by num_heads ", num_heads);
}

void SvgEncoderConfig::validate(const std::string& what) const {
  dinov3.validate(what);
  residual.validate(what);
  UVIT_CHECK(dinov3.patch_size == residual.patch_size, what, ": the DINOv3 patch size ",
             dinov3.patch_size, " differs from the residual ViT's ", residual.patch_size,
             " (the two token grids are concatenated)");
}

SvgEncoderConfig SvgEncoderConfig::from_json(const nlohmann::json& j, const std::string& what) {
  UVIT_CHECK(j.is_object(), what, ": the SVG encoder config must be a JSON object");
  for (const auto& [k, v] : j.items())
    UVIT_CHECK(k == "dinov3" || k == "residual" || k == "use_outnorm", what, ": unknown field '", k,
               "' (dinov3, residual, use_outnorm)");
  SvgEncoderConfig c;
  if (j.contains("dinov3")) c.dinov3 = Dinov3Config::from_json(j["dinov3"], what);
  if (j.contains("residual")) {
    UVIT_CHECK(j["residual"].is_object(), what, ": residual must be an object");
    const clip::ConfigFields f{j["residual"], what};
    f.only({"image_size", "patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim",
            "output_dim"},
           "residual");
    f.get("image_size", c.residual.image_size);
    f.get("patch_size", c.residual.patch_size);
    f.get("num_layers", c.residual.num_layers);
    f.get("num_heads", c.residual.num_heads);
    f.get("hidden_dim", c.residual.hidden_dim);
    f.get("mlp_dim", c.residual.mlp_dim);
    f.get("output_dim", c.residual.output_dim);
  }
  if (j.contains("use_outnorm")) {
    UVIT_CHECK(j["use_outnorm"].is_boolean(), what, ": use_outnorm must be true or false");
    c.use_outnorm = j["use_outnorm"].get<bool>();
  }
  c.validate(what);
  return c;
}

SvgEncoderConfig SvgEncoderConfig::load(const std::string& path) {
  if (path.empty()) return SvgEncoderConfig{};
  return from_json(read_json_file(path), path);
}

ParamTable svg_residual_param_table(const SvgResidualConfig& c) {
  c.validate("svg residual config");
  const int64_t D = c.hidden_dim, p = c.patch_size, G = c.grid();
  ParamTable t;
  auto add = [&](const std::string& n, std::vector<int64_t> s) {
    t.add("extra_vit." + n, std::move(s), true);
  };
  add("class_token", {1, 1, D});
  add("conv_proj.weight", {D, 3, p, p});
  add("conv_proj.bias", {D});
  add("encoder.pos_embedding", {1, G * G + 1, D});
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string b = cat("encoder.layers.encoder_layer_", i, ".");
    add(b + "ln_1.weight", {D});
    add(b + "ln_1.bias", {D});
    add(b + "self_attention.in_proj_weight", {3 * D, D});
    add(b + "self_attention.in_proj_bias", {3 * D});
    add(b + "self_attention.out_proj.weight", {D, D});
    add(b + "self_attention.out_proj.bias", {D});
    add(b + "ln_2.weight", {D});
    add(b + "ln_2.bias", {D});
    add(b + "mlp.0.weight", {c.mlp_dim, D});
    add(b + "mlp.0.bias", {c.mlp_dim});
    add(b + "mlp.3.weight", {D, c.mlp_dim});
    add(b + "mlp.3.bias", {D});
  }
  add("encoder.ln.weight", {D});
  add("encoder.ln.bias", {D});
  add("heads.0.weight", {D, D});
  add("heads.0.bias", {D});
  add("heads.2.weight", {c.output_dim, D});
  add("heads.2.bias", {c.output_dim});
  return t;
}

void match_distribution(float* f, int Ch, int Cv, int g, int L) {
  const int C = Ch + Cv;
  const double n = double(g) * L;
  UVIT_CHECK(n > 1, "match_distribution: needs more than one value per channel");
  // The scalar mean of the per-channel means and of the per-channel unbiased stds.
  auto stats = [&](int c0, int nc, double& mean, double& std) {
    mean = std = 0;
    for (int c = c0; c < c0 + nc; ++c) {
      double s = 0;
      for (int b = 0; b < g; ++b)
        for (int l = 0; l < L; ++l) s += f[(size_t(b) * C + c) * L + l];
      const double m = s / n;
      double ss = 0;
      for (int b = 0; b < g; ++b)
        for (int l = 0; l < L; ++l) {
          const double d = f[(size_t(b) * C + c) * L + l] - m;
          ss += d * d;
        }
      mean += m / nc;
      std += std::sqrt(ss / (n - 1)) / nc;
    }
  };
  double mh, sh, mv, sv;
  stats(0, Ch, mh, sh);
  stats(Ch, Cv, mv, sv);
  const double a = sh / (sv + 1e-6);
  for (int b = 0; b < g; ++b)
    for (int c = Ch; c < C; ++c)
      for (int l = 0; l < L; ++l) {
        float& x = f[(size_t(b) * C + c) * L + l];
        x = float((x - mv) * a + mh);
      }
}

namespace {
constexpr float kEps = 1e-6f;  // torchvision ViT: partial(nn.LayerNorm, eps=1e-6)
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f}, kStd[3] = {0.229f, 0.224f, 0.225f};

// A [B, T, C] device result downloaded as [B, C, T] into `out` (rows of `ld` channels per
// image, channel offset c0).
void transpose_into(const std::vector<float>& src, int B, int T, int C, float* out, int ld,
                    int c0) {
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int c = 0; c < C; ++c)
        out[(size_t(b) * ld + c0 + c) * T + t] = src[(size_t(b) * T + t) * C + c];
}
}  // namespace

struct SvgEncoder::Impl {
  Dinov3 dino;
  vit::FrozenParams params;
  std::vector<vit::Block> blocks;
  layers::Linear patch, head0, head2;
  layers::Norm ln;
  size_t cls = 0, pos = 0;

  Impl(const SvgEncoderConfig& c, Backend& be)
      : dino(c.dinov3, be), params(be, svg_residual_param_table(c.residual), "svg encoder") {
    const ParamTable& t = params.table();
    const SvgResidualConfig& r = c.residual;
    const int D = r.hidden_dim;
    const std::string p = "extra_vit.";
    patch = layers::linear(t, p + "conv_proj");
    head0 = layers::linear(t, p + "heads.0");
    head2 = layers::linear(t, p + "heads.2");
    ln = layers::norm(t, p + "encoder.ln", D, kEps);
    cls = t.at(p + "class_token").offset;
    pos = t.at(p + "encoder.pos_embedding").offset;
    for (int i = 0; i < r.num_layers; ++i) {
      const std::string b = cat(p, "encoder.layers.encoder_layer_", i, ".");
      vit::Block k;
      k.norm1 = layers::norm(t, b + "ln_1", D, kEps);
      k.norm2 = layers::norm(t, b + "ln_2", D, kEps);
      // nn.MultiheadAttention keeps q, k, v stacked in in_proj_weight / in_proj_bias.
      layers::Linear qkv;
      qkv.w = t.at(b + "self_attention.in_proj_weight").offset;
      qkv.b = t.at(b + "self_attention.in_proj_bias").offset;
      qkv.in = qkv.ldw = D;
      qkv.out = 3 * D;
      k.attn = vit::attention(qkv, layers::linear(t, b + "self_attention.out_proj"), r.num_heads);
      k.mlp.fc1 = layers::linear(t, b + "mlp.0");
      k.mlp.fc2 = layers::linear(t, b + "mlp.3");
      k.mlp.act = layers::Activation::Gelu;
      blocks.push_back(k);
    }
  }
};

SvgEncoder::SvgEncoder(const SvgEncoderConfig& cfg, Backend& be) : cfg_(cfg), be_(be) {
  cfg_.validate("svg encoder config");
  impl_ = std::make_unique<Impl>(cfg_, be);
}

SvgEncoder::~SvgEncoder() = default;

void SvgEncoder::load(const NamedArrays& svg, const std::string& svg_what,
                      const NamedArrays* dinov3, const std::string& dinov3_what) {
  ArrayReader s(svg, svg_what);
  if (!dinov3) return load(s, nullptr, dinov3_what);
  ArrayReader d(*dinov3, dinov3_what);
  load(s, &d, dinov3_what);
}

void SvgEncoder::load(TensorReader& svg, TensorReader* dinov3, const std::string& dinov3_what) {
  const std::string& svg_what = svg.path();
  RenamedReader res(svg, with_prefix("extra_vit.", false));
  UVIT_CHECK(!res.tensors().empty(), svg_what,
             ": no extra_vit.* tensors (not an SVG autoencoder checkpoint with the residual ViT)");
  impl_->params.load_host(res, svg_what);
  impl_->params.upload();
  if (dinov3) return impl_->dino.load(*dinov3, dinov3_what);
  RenamedReader dino(svg, with_prefix("encoder.", true));
  UVIT_CHECK(!dino.tensors().empty(), svg_what,
             ": no encoder.* (DINOv3) tensors; give the DINOv3 weights separately");
  impl_->dino.load(dino, svg_what + " (encoder.*)");
}

void SvgEncoder::load_files(const std::string& svg, const std::string& dinov3) {
  const std::unique_ptr<TensorReader> s = open_weights(svg);
  if (dinov3.empty()) return load(*s, nullptr, dinov3);
  load(*s, open_weights(dinov3).get(), dinov3);
}

Array SvgEncoder::encode(const Array& x, int group) const {
  const SvgResidualConfig& r = cfg_.residual;
  const int S = r.image_size, p = r.patch_size, G = r.grid(), L = G * G, N = L + 1,
            D = r.hidden_dim, Cd = cfg_.dinov3.embed_dim, Cv = r.output_dim, C = Cd + Cv;
  UVIT_CHECK(x.dtype == DType::F32 && x.shape.size() == 4 && x.shape[1] == 3 && x.shape[2] == S &&
                 x.shape[3] == S && x.shape[0] > 0,
             "svg encoder: expected float32 images [B, 3, ", S, ", ", S, "], got ",
             shape_str(x.shape));
  const int B = int(x.shape[0]);
  UVIT_CHECK(group > 0 && B % group == 0, "svg encoder: batch ", B,
             " is not a multiple of the statistics group ", group);
  // DinoDecoder.get_input: [-1, 1] -> [0, 1] -> ImageNet mean/std; both branches see it.
  std::vector<float> px(size_t(x.numel()));
  const float* xs = x.as<float>();
  const size_t plane = size_t(S) * S;
  for (size_t i = 0; i < px.size(); ++i) {
    const size_t c = (i / plane) % 3;
    px[i] = ((xs[i] + 1.f) / 2.f - kMean[c]) / kStd[c];
  }
  Backend& be = be_;
  Impl& m = *impl_;
  const size_t n_img = px.size(), n_cols = size_t(B) * L * 3 * p * p, n_seq = size_t(B) * N * D,
               n_scr = m.blocks.empty() ? 0 : vit::blocks_scratch_floats(m.blocks[0], B, N);
  // img | dino out | cols | patches | extras | seq | scratch (also the ln output and the head)
  const size_t n_dino = size_t(B) * L * Cd;
  DeviceBuffer buf(be, (n_img + n_dino + n_cols + size_t(B) * L * D + size_t(B) * D + n_seq +
                        std::max(n_scr, n_seq + size_t(B) * L * (2 * D + Cv))) *
                           sizeof(float));
  float* img = buf.f32();
  float* dino = img + n_img;
  float* cols = dino + n_dino;
  float* patches = cols + n_cols;
  float* extras = patches + size_t(B) * L * D;
  float* seq = extras + size_t(B) * D;
  float* scratch = seq + n_seq;
  be.upload(img, px.data(), n_img * sizeof(float));
  m.dino.patch_tokens(img, B, S, dino);

  const layers::Weights W = m.params.weights();
  const float* P = m.params.dev();
  vit::patch_embed(W, m.patch, img, cols, patches, B, 3, S, p);
  be.copy_3d(extras, D, 0, P + m.cls, 0, 0, 1, B, D, false);   // the class token of every image
  be.tokens_fwd(extras, patches, P + m.pos, seq, B, 1, L, D);  // + pos_embedding
  vit::blocks_fwd(W, m.blocks, seq, scratch, B, N);
  float* normed = scratch;
  float* tok = normed + n_seq;
  float* hid = tok + size_t(B) * L * D;
  float* out = hid + size_t(B) * L * D;
  layers::norm_fwd(W, m.ln, seq, normed, nullptr, nullptr, B * N);
  be.copy_2d(tok, long(L) * D, normed + D, long(N) * D, B, long(L) * D);  // drop the class token
  layers::linear_fwd(W, m.head0, tok, D, hid, D, B * L);
  be.gelu_fwd(hid, hid, size_t(B) * L * D);
  layers::linear_fwd(W, m.head2, hid, D, out, Cv, B * L);

  std::vector<float> hd(n_dino), hv(size_t(B) * L * Cv);
  be.download(hd.data(), dino, hd.size() * sizeof(float));
  be.download(hv.data(), out, hv.size() * sizeof(float));
  Array z(DType::F32, {B, C, G, G});
  float* zd = z.as<float>();
  transpose_into(hd, B, L, Cd, zd, C, 0);
  transpose_into(hv, B, L, Cv, zd, C, Cd);
  if (cfg_.use_outnorm)
    for (int b = 0; b < B; b += group) match_distribution(zd + size_t(b) * C * L, Cd, Cv, group, L);
  return z;
}

}  // namespace uvit
