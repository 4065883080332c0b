// DINOv3 ViT forward (docs/svg_encoder.md). Loading reads the official state_dict by name, then
// folds what is frozen into the weights once: the k part of the qkv bias is masked (mask_k_bias),
// LayerScale multiplies the rows of attn.proj and mlp.w3, and the q and k rows of each head are
// reordered so that the official rotate-half RoPE pairs (d, d + Dh/2) become the adjacent pairs
// the Backend's rope kernel rotates (q.k is unchanged by a permutation applied to both).
#include "models/dinov3.hpp"

#include <cmath>

#include "io/weights_views.hpp"
#include "models/clip_encoder.hpp"
#include "models/frozen_vit.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

int Dinov3Config::swiglu_hidden() const {
  const int hidden = int(double(embed_dim) * ffn_ratio);
  const int d = int(double(hidden) * 2 / 3);
  return (d + 7) / 8 * 8;
}

Dinov3Config Dinov3Config::from_json(const nlohmann::json& j, const std::string& what) {
  UVIT_CHECK(j.is_object(), what, ": the dinov3 config must be an object");
  const clip::ConfigFields f{j, what};
  f.only({"patch_size", "embed_dim", "depth", "num_heads", "n_storage_tokens", "ffn_ratio",
          "pos_embed_rope_base"},
         "dinov3");
  Dinov3Config c;
  f.get("patch_size", c.patch_size);
  f.get("embed_dim", c.embed_dim);
  f.get("depth", c.depth);
  f.get("num_heads", c.num_heads);
  f.get("n_storage_tokens", c.n_storage_tokens);
  f.get("ffn_ratio", c.ffn_ratio);
  f.get("pos_embed_rope_base", c.pos_embed_rope_base);
  c.validate(what);
  return c;
}

void Dinov3Config::validate(const std::string& what) const {
  UVIT_CHECK(patch_size > 0 && embed_dim > 0 && depth >= 0 && num_heads > 0 &&
                 n_storage_tokens >= 0 && ffn_ratio > 0 && pos_embed_rope_base > 0,
             what, ": dinov3 sizes must be positive");
  // RopePositionEmbedding's assertion: D_head / 4 periods per axis.
  UVIT_CHECK(embed_dim % (4 * num_heads) == 0, what, ": dinov3 embed_dim ", embed_dim,
             " is not a multiple of 4 * num_heads (", 4 * num_heads, ")");
}

ParamTable dinov3_param_table(const Dinov3Config& c) {
  c.validate("dinov3 config");
  const int64_t D = c.embed_dim, p = c.patch_size, F = c.swiglu_hidden();
  ParamTable t;
  auto add = [&](const std::string& n, std::vector<int64_t> s) { t.add(n, std::move(s), true); };
  add("cls_token", {1, 1, D});
  if (c.n_storage_tokens > 0) add("storage_tokens", {1, c.n_storage_tokens, D});
  add("mask_token", {1, D});
  add("patch_embed.proj.weight", {D, 3, p, p});
  add("patch_embed.proj.bias", {D});
  add("rope_embed.periods", {c.head_dim() / 4});
  for (int i = 0; i < c.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    add(b + "norm1.weight", {D});
    add(b + "norm1.bias", {D});
    add(b + "attn.qkv.weight", {3 * D, D});
    add(b + "attn.qkv.bias", {3 * D});
    add(b + "attn.qkv.bias_mask", {3 * D});
    add(b + "attn.proj.weight", {D, D});
    add(b + "attn.proj.bias", {D});
    add(b + "ls1.gamma", {D});
    add(b + "norm2.weight", {D});
    add(b + "norm2.bias", {D});
    add(b + "mlp.w1.weight", {F, D});
    add(b + "mlp.w1.bias", {F});
    add(b + "mlp.w2.weight", {F, D});
    add(b + "mlp.w2.bias", {F});
    add(b + "mlp.w3.weight", {D, F});
    add(b + "mlp.w3.bias", {D});
    add(b + "ls2.gamma", {D});
  }
  add("norm.weight", {D});
  add("norm.bias", {D});
  return t;
}

namespace {
constexpr float kEps = 1e-5f;  // norm_layer "layernormbf16": nn.LayerNorm(eps=1e-5)

// Rows [base, base + Dh) of a head: new 2k <- old k, new 2k+1 <- old k + Dh/2.
void interleave_head_rows(float* w, float* b, int base, int Dh, int cols) {
  std::vector<float> wt(size_t(Dh) * cols), bt(static_cast<size_t>(Dh));
  for (int k = 0; k < Dh; ++k) {
    const int src = base + (k % 2 ? Dh / 2 + k / 2 : k / 2);
    std::copy(w + size_t(src) * cols, w + size_t(src + 1) * cols, wt.begin() + size_t(k) * cols);
    bt[size_t(k)] = b[src];
  }
  std::copy(wt.begin(), wt.end(), w + size_t(base) * cols);
  std::copy(bt.begin(), bt.end(), b + base);
}
}  // namespace

struct Dinov3::Impl {
  vit::FrozenParams params;
  std::vector<vit::Block> blocks;
  layers::Linear patch;
  layers::Norm norm;
  size_t cls = 0, storage = layers::kAbsent;
  std::vector<float> periods;
  int rope_S = 0;  // the image size the tables were built for
  DeviceBuffer rope_cos, rope_sin;

  Impl(const Dinov3Config& c, Backend& be) : params(be, dinov3_param_table(c), "dinov3") {
    const ParamTable& t = params.table();
    const int D = c.embed_dim, H = c.num_heads;
    patch = layers::linear(t, "patch_embed.proj");
    norm = layers::norm(t, "norm", D, kEps);
    cls = t.at("cls_token").offset;
    if (c.n_storage_tokens > 0) storage = t.at("storage_tokens").offset;
    for (int i = 0; i < c.depth; ++i) {
      const std::string b = cat("blocks.", i, ".");
      vit::Block k;
      k.norm1 = layers::norm(t, b + "norm1", D, kEps);
      k.norm2 = layers::norm(t, b + "norm2", D, kEps);
      k.attn =
          vit::attention(layers::linear(t, b + "attn.qkv"), layers::linear(t, b + "attn.proj"), H);
      k.mlp.fc1 = layers::linear(t, b + "mlp.w1");  // silu'd half
      k.mlp.fc1x = layers::linear(t, b + "mlp.w2");
      k.mlp.fc2 = layers::linear(t, b + "mlp.w3");
      k.mlp.gated = true;
      blocks.push_back(k);
    }
  }
};

Dinov3::Dinov3(const Dinov3Config& cfg, Backend& be)
    : cfg_(cfg), be_(be), impl_(std::make_unique<Impl>(cfg, be)) {}

Dinov3::~Dinov3() = default;

void Dinov3::load(TensorReader& r, const std::string& what) {
  vit::FrozenParams& P = impl_->params;
  P.load_host(r, what);
  const int D = cfg_.embed_dim, Dh = cfg_.head_dim(), F = cfg_.swiglu_hidden();
  for (int i = 0; i < cfg_.depth; ++i) {
    const std::string b = cat("blocks.", i, ".");
    float* qw = P.host(b + "attn.qkv.weight");
    float* qb = P.host(b + "attn.qkv.bias");
    const float* mask = P.host(b + "attn.qkv.bias_mask");
    for (int r = 0; r < 3 * D; ++r) {
      UVIT_CHECK(std::isfinite(mask[r]), what, ": ", b,
                 "attn.qkv.bias_mask holds a non-finite value (an uninitialised mask)");
      qb[r] *= mask[r];
    }
    for (int s = 0; s < 2; ++s)  // q and k, not v
      for (int h = 0; h < cfg_.num_heads; ++h) interleave_head_rows(qw, qb, s * D + h * Dh, Dh, D);
    vit::scale_rows(P.host(b + "attn.proj.weight"), P.host(b + "attn.proj.bias"),
                    P.host(b + "ls1.gamma"), D, D);
    vit::scale_rows(P.host(b + "mlp.w3.weight"), P.host(b + "mlp.w3.bias"), P.host(b + "ls2.gamma"),
                    D, F);
  }
  const float* per = P.host("rope_embed.periods");
  impl_->periods.assign(per, per + Dh / 4);
  for (float v : impl_->periods)
    UVIT_CHECK(std::isfinite(v) && v > 0, what, ": rope_embed.periods must be positive");
  impl_->rope_S = 0;
  P.upload();
}

void Dinov3::load(const NamedArrays& sd, const std::string& what) {
  ArrayReader r(sd, what);
  load(r, what);
}

void Dinov3::load_file(const std::string& path) { load(*open_weights(path), path); }

void Dinov3::patch_tokens(const float* img, int B, int S, float* out) {
  const int p = cfg_.patch_size, D = cfg_.embed_dim, Dh = cfg_.head_dim(), G = S / p, L = G * G,
            E = 1 + cfg_.n_storage_tokens, N = E + L;
  UVIT_CHECK(B > 0 && S > 0 && S % p == 0, "dinov3: image size ", S,
             " is not a positive multiple of the patch size ", p);
  UVIT_CHECK(!impl_->periods.empty(), "dinov3: no weights loaded");
  Impl& m = *impl_;
  Backend& be = be_;
  if (m.rope_S != S) {
    // RopePositionEmbedding(normalize_coords="separate"), eval mode (no shift, jitter, rescale):
    // token (i, j) sits at c = 2 (i + 0.5) / G - 1 (rows), 2 (j + 0.5) / G - 1 (columns);
    // angle k (k < Dh/4 rows, the next Dh/4 columns) = 2 pi c / periods[k mod Dh/4]. Prefix
    // tokens are not rotated (cos 1, sin 0). Adjacent entries share an angle (interleaved).
    std::vector<float> c(size_t(N) * Dh, 1.f), s(size_t(N) * Dh, 0.f);
    const int q = Dh / 4;
    for (int i = 0; i < G; ++i)
      for (int j = 0; j < G; ++j) {
        const size_t row = size_t(E + i * G + j) * Dh;
        for (int k = 0; k < 2 * q; ++k) {
          const int pos = k < q ? i : j;
          const float coord = 2.f * ((float(pos) + 0.5f) / float(G)) - 1.f;
          const float a = float(2 * M_PI) * coord / m.periods[size_t(k % q)];
          c[row + 2 * k] = c[row + 2 * k + 1] = std::cos(a);
          s[row + 2 * k] = s[row + 2 * k + 1] = std::sin(a);
        }
      }
    m.rope_cos = DeviceBuffer(be, c.size() * sizeof(float));
    m.rope_sin = DeviceBuffer(be, s.size() * sizeof(float));
    be.upload(m.rope_cos.f32(), c.data(), c.size() * sizeof(float));
    be.upload(m.rope_sin.f32(), s.data(), s.size() * sizeof(float));
    for (vit::Block& k : m.blocks) {
      k.attn.rope_cos_buf = m.rope_cos.f32();
      k.attn.rope_sin_buf = m.rope_sin.f32();
    }
    m.rope_S = S;
  }
  const layers::Weights W = m.params.weights();
  const float* P = m.params.dev();
  const size_t n_cols = size_t(B) * L * 3 * p * p, n_seq = size_t(B) * N * D,
               n_scr = m.blocks.empty() ? 0 : vit::blocks_scratch_floats(m.blocks[0], B, N);
  // cols | patches | x | scratch (the final norm's output reuses scratch)
  DeviceBuffer buf(be,
                   (n_cols + size_t(B) * L * D + n_seq + std::max(n_scr, n_seq)) * sizeof(float));
  float* cols = buf.f32();
  float* patches = cols + n_cols;
  float* x = patches + size_t(B) * L * D;
  float* scratch = x + n_seq;
  vit::patch_embed(W, m.patch, img, cols, patches, B, 3, S, p);
  // [cls, storage..., patches] (cls_token + 0 * mask_token is cls_token): the extras of every
  // image by one broadcast copy_3d each.
  be.copy_3d(x, 0, long(N) * D, P + m.cls, 0, 0, B, 1, D, false);
  if (E > 1) be.copy_3d(x + D, 0, long(N) * D, P + m.storage, 0, 0, B, 1, long(E - 1) * D, false);
  be.copy_2d(x + size_t(E) * D, long(N) * D, patches, long(L) * D, B, long(L) * D);
  vit::blocks_fwd(W, m.blocks, x, scratch, B, N);
  layers::norm_fwd(W, m.norm, x, scratch, nullptr, nullptr, B * N);
  be.copy_2d(out, long(L) * D, scratch + size_t(E) * D, long(N) * D, B, long(L) * D);
}

std::vector<float> Dinov3::patch_tokens(const std::vector<float>& pixels, int B, int S) {
  const int G = S / cfg_.patch_size;
  UVIT_CHECK(pixels.size() == size_t(B) * 3 * S * S, "dinov3: expected ", size_t(B) * 3 * S * S,
             " pixel values, got ", pixels.size());
  const size_t n_out = size_t(B) * G * G * cfg_.embed_dim;
  DeviceBuffer img(be_, pixels.size() * sizeof(float)), out(be_, n_out * sizeof(float));
  be_.upload(img.f32(), pixels.data(), pixels.size() * sizeof(float));
  patch_tokens(img.f32(), B, S, out.f32());
  std::vector<float> r(n_out);
  be_.download(r.data(), out.f32(), n_out * sizeof(float));
  return r;
}

}  // namespace uvit
