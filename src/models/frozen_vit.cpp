#include "models/frozen_vit.hpp"

#include <algorithm>
#include <cmath>

#include "models/param_stage.hpp"
#include "uvit/error.hpp"

namespace uvit::vit {

namespace {
size_t mlp_f_floats(const layers::Mlp& m) {
  return m.split() ? 2 * size_t(m.fc2.in) : size_t(m.fc1.out);
}
}  // namespace

layers::Attention attention(const layers::Linear& qkv, const layers::Linear& proj, int heads) {
  layers::Attention a;
  a.qkv = qkv;
  a.proj = proj;
  a.heads = heads;
  a.head_dim = qkv.in / heads;
  a.scale = 1.f / std::sqrt(float(a.head_dim));
  return a;
}

size_t blocks_scratch_floats(const Block& b, int B, int N) {
  const size_t M = size_t(B) * N, D = size_t(b.attn.heads) * b.attn.head_dim;
  // h | qkv | att | mlp f | mlp g
  return M * (D + 3 * D + D + mlp_f_floats(b.mlp) + size_t(b.mlp.fc2.in));
}

void blocks_fwd(const layers::Weights& W, const std::vector<Block>& blocks, float* x,
                float* scratch, int B, int N) {
  if (blocks.empty()) return;
  const Block& b0 = blocks.front();
  const size_t M = size_t(B) * N, D = size_t(b0.attn.heads) * b0.attn.head_dim;
  float* h = scratch;
  layers::AttentionActs A;
  A.qkv = h + M * D;
  A.att = A.qkv + 3 * M * D;
  layers::MlpActs F;
  F.f = A.att + M * D;
  F.g = F.f + M * mlp_f_floats(b0.mlp);
  for (const Block& b : blocks) {
    layers::norm_fwd(W, b.norm1, x, h, nullptr, nullptr, int(M));
    layers::attention_fwd(W, b.attn, h, A, x, x, B, N);
    layers::norm_fwd(W, b.norm2, x, h, nullptr, nullptr, int(M));
    layers::mlp_fwd(W, b.mlp, h, F, x, x, int(M));
  }
}

void patch_embed(const layers::Weights& W, const layers::Linear& proj, const float* img,
                 float* cols, float* out, int B, int C, int S, int p) {
  const int L = (S / p) * (S / p), K = C * p * p;
  UVIT_CHECK(proj.in == K, "patch embedding: weight has ", proj.in, " inputs, expected ", K);
  W.be.patch_im2col(img, cols, B, C, S, p);
  layers::linear_fwd(W, proj, cols, K, out, proj.out, B * L);
}

FrozenParams::FrozenParams(Backend& be, ParamTable table, const std::string& what)
    : be_(be), table_(std::move(table)), in_place_(ParamStage::host_memory(be)) {
  UVIT_CHECK(be.act_bytes() == sizeof(float), what,
             ": the encoder needs fp32 activations (precision fp32 or tf32), got a ",
             be.precision(), " ", be.name(), " backend");
  dev_ = DeviceBuffer(be_, std::max<size_t>(table_.total(), 1) * sizeof(float));
}

void FrozenParams::load_host(TensorReader& r, const std::string& what) {
  table_.check(r.tensors(), what);
  if (!in_place_) host_.assign(table_.total(), 0.f);
  ParamStage stage(be_, host_base(), /*in_place=*/true);
  read_params(r, table_, stage);
}

// The host copy is freed once uploaded: a loaded encoder holds its weights once.
void FrozenParams::upload() {
  if (in_place_) return;
  be_.upload(dev_.f32(), host_.data(), host_.size() * sizeof(float));
  std::vector<float>().swap(host_);
}

void scale_rows(float* w, float* b, const float* s, int rows, int cols) {
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) w[size_t(r) * cols + c] *= s[r];
    if (b) b[r] *= s[r];
  }
}

}  // namespace uvit::vit
