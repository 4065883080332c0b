#include "models/layers.hpp"

#include <cmath>

#include "uvit/error.hpp"

namespace uvit::layers {

Linear linear(const ParamTable& t, const std::string& name) {
  const ParamEntry& w = t.at(name + ".weight");
  UVIT_CHECK(w.shape.size() >= 2, name, ".weight: expected a matrix");
  w.gemm = true;  // read only through linear_fwd/bwd: quantisable
  Linear l;
  l.w = w.offset;
  l.out = int(w.shape[0]);
  l.in = l.ldw = int(w.numel / size_t(l.out));
  if (const ParamEntry* b = t.find(name + ".bias")) l.b = b->offset;
  return l;
}

Linear column_slice(const Linear& l, int c0, int n, bool bias) {
  Linear s = l;
  s.w = l.w + size_t(c0);
  s.in = n;
  if (!bias) s.b = kAbsent;
  return s;
}

namespace {
// A quantised weight's columns of this Linear, dequantised into the shared scratch (then to the
// act type): one layer's fp32 weights exist at a time. nullptr when the weight is not quantised.
const float* dequantized(const Weights& W, const Linear& l) {
  const QuantTensor* t = W.q ? W.q->find(l.w) : nullptr;
  if (!t) return nullptr;
  const size_t c0 = l.w - t->offset, n = size_t(l.out) * size_t(l.in);
  UVIT_CHECK(c0 + size_t(l.in) <= size_t(t->in) && l.out == t->out, t->name,
             ": a quantised weight read outside its rows");
  const bool f32 = W.be.act_bytes() == sizeof(float);
  float* s = W.q->scratch(f32 ? n : 2 * n);
  t->dequantize(W.q->format, int(c0), l.in, s);
  if (f32) return s;
  W.be.to_act(s, s + n, n);
  return s + n;
}
}  // namespace

void linear_fwd(const Weights& W, const Linear& l, const float* x, int ldx, float* y, int ldy,
                int M, const float* residual) {
  const float* bias = l.b != kAbsent ? W.act(l.b) : nullptr;
  if (const float* w = dequantized(W, l))
    return W.be.linear(x, ldx, w, l.in, bias, residual, y, ldy, M, l.out, l.in);
  W.be.linear(x, ldx, W.act(l.w), l.ldw, bias, residual, y, ldy, M, l.out, l.in);
}

void linear_bwd(const Weights& W, const Linear& l, const float* x, int ldx, const float* dy,
                int ldy, float* dx, int lddx, int M, float beta) {
  Backend& be = W.be;
  UVIT_CHECK(!W.q || !W.q->find(l.w), W.q->path, ": quantised weights cannot be trained");
  if (float* db = l.b != kAbsent ? W.grad(l.b) : nullptr)
    be.bias_grad_strided(dy, ldy, db, M, l.out);
  if (float* dw = W.grad(l.w)) be.gemm_wgrad(l.out, l.in, M, dy, ldy, x, ldx, dw, l.ldw);
  if (dx) be.gemm(false, false, M, l.in, l.out, 1.f, dy, ldy, W.act(l.w), l.ldw, beta, dx, lddx);
}

Norm norm(const ParamTable& t, const std::string& name, int D, float eps) {
  Norm n;
  n.w = t.at(name + ".weight").offset;
  n.b = t.at(name + ".bias").offset;
  n.D = D;
  n.eps = eps;
  return n;
}

Norm norm_no_affine(int D, float eps, const float* one, const float* zero, float* sink) {
  Norm n;
  n.D = D;
  n.eps = eps;
  n.one = one;
  n.zero = zero;
  n.sink = sink;
  return n;
}

Norm rms_norm(const ParamTable& t, const std::string& name, int D, float eps) {
  Norm n;
  n.w = t.at(name + ".weight").offset;
  n.D = D;
  n.eps = eps;
  n.rms = true;
  return n;
}

void norm_fwd(const Weights& W, const Norm& n, const float* x, float* y, float* mean, float* rstd,
              int M) {
  if (n.identity) return W.be.copy_act(y, x, size_t(M) * n.D);
  if (n.rms) return W.be.rmsnorm_fwd(x, W.w32 + n.w, y, rstd, M, 1, n.D, n.D, n.eps);
  W.be.layernorm_fwd(x, n.w != kAbsent ? W.w32 + n.w : n.one, n.b != kAbsent ? W.w32 + n.b : n.zero,
                     y, mean, rstd, M, n.D, n.eps);
}

void norm_bwd(const Weights& W, const Norm& n, const float* dy, const float* x, const float* mean,
              const float* rstd, float* dx, int M) {
  if (n.identity)
    W.be.axpy_act(dx, dy, 1.f, size_t(M) * n.D);
  else if (n.rms)
    W.be.rmsnorm_bwd(dy, x, W.w32 + n.w, rstd, dx, W.g + n.w, M, 1, n.D, n.D, true);
  else if (n.w != kAbsent)  // (a weight without bias: the bias gradient goes to the sink)
    W.be.layernorm_bwd(dy, x, W.w32 + n.w, mean, rstd, dx, W.g + n.w,
                       n.b != kAbsent ? W.g + n.b : n.sink + n.D, M, n.D);
  else
    W.be.layernorm_bwd(dy, x, n.one, mean, rstd, dx, n.sink, n.sink + n.D, M, n.D);
}

namespace {
Backend::AttnBias rel_bias(const Weights& W, const Attention& a) {
  Backend::AttnBias b;
  b.table = W.w32 + a.rel_table;
  b.index = a.rel_index;
  b.ids = a.rel_ids;
  b.R = a.rel_R;
  b.Lf = a.rel_Lf;
  return b;
}
const float* rope_cos(const Weights& W, const Attention& a) {
  return a.rope_cos_buf ? a.rope_cos_buf : W.w32 + a.rope_cos;
}
const float* rope_sin(const Weights& W, const Attention& a) {
  return a.rope_sin_buf ? a.rope_sin_buf : W.w32 + a.rope_sin;
}
// The gathered qk-norms, q's then k's (FiT's LayerNorms or RMSNorms on either or both, SVG's affine
// LayerNorm pair): each normalises the D columns at c0 of every qkv row, per head. Part j is
// gathered contiguous into block j ([M, D] at j M D) of the scratch so that it runs as M H rows of
// head_dim with its own weights; its statistics are rows [j M H, (j + 1) M H).
struct LnPart {
  int c0;
  const Norm* n;
};
int ln_parts(const Attention& a, LnPart* parts) {
  const int D = a.heads * a.head_dim;
  int n = 0;
  if (a.q_norm.D > 0) parts[n++] = {0, &a.q_norm};
  if (a.k_norm.D > 0) parts[n++] = {D, &a.k_norm};
  return n;
}
}  // namespace

Attention attention(const ParamTable& t, const std::string& prefix, int heads) {
  Attention a;
  a.qkv = linear(t, prefix + "qkv");
  a.proj = linear(t, prefix + "proj");
  a.heads = heads;
  a.head_dim = a.qkv.in / heads;
  a.scale = float(1.0 / std::sqrt(double(a.head_dim)));
  return a;
}

void use_relative_bias(Attention& a, size_t table, int rows, const int32_t* index, int tokens) {
  a.rel_table = table;
  a.rel_R = rows;
  a.rel_index = index;
  a.rel_Lf = tokens;
}

Mlp mlp_gelu_tanh(const ParamTable& t, const std::string& prefix) {
  Mlp m;
  m.fc1 = linear(t, prefix + "fc1");
  m.fc2 = linear(t, prefix + "fc2");
  m.act = Activation::GeluTanh;
  return m;
}

void attention_fwd(const Weights& W, const Attention& a, const float* h, AttentionActs& A,
                   float* out, const float* residual, int B, int N) {
  const int D = a.heads * a.head_dim, M = B * N, H = a.heads, Dh = a.head_dim;
  Backend& be = W.be;
  UVIT_CHECK(!A.qkv_off || !a.qk_norm(), "attention: a qkv offset with a qk-norm is not supported");
  if (a.qk_gathered()) {
    // Per head: each part's columns gathered contiguous, normalised as rows of head_dim (its own
    // LayerNorm or RMSNorm), scattered back.
    LnPart parts[2];
    const int np = ln_parts(a, parts);
    linear_fwd(W, a.qkv, h, D, A.qkv, 3 * D, M);
    for (int j = 0; j < np; ++j) {
      const size_t blk = size_t(j) * M * D, st = size_t(j) * M * H;
      float* raw = be.act_at(A.qkv_raw, blk);
      float* tmp = be.act_at(A.qk_tmp, blk);
      be.copy_act_2d(raw, D, be.act_at(A.qkv, parts[j].c0), 3 * D, M, D);
      norm_fwd(W, *parts[j].n, raw, tmp, A.qk_mean + st, A.qk_rstd + st, M * H);
      be.copy_act_2d(be.act_at(A.qkv, parts[j].c0), 3 * D, tmp, D, M, D);
    }
  } else if (a.qk_norm()) {  // the RMSNorm pair
    // q, k normalised per head from the raw GEMM output into qkv; v copied beside them.
    linear_fwd(W, a.qkv, h, D, A.qkv_raw, 3 * D, M);
    be.rmsnorm_fwd(A.qkv_raw, W.w32 + a.q_norm.w, A.qkv, A.qk_rstd, M, H, Dh, 3 * D, a.q_norm.eps);
    be.rmsnorm_fwd(be.act_at(A.qkv_raw, D), W.w32 + a.k_norm.w, be.act_at(A.qkv, D),
                   A.qk_rstd + size_t(M) * H, M, H, Dh, 3 * D, a.k_norm.eps);
    be.copy_act_2d(be.act_at(A.qkv, 2 * D), 3 * D, be.act_at(A.qkv_raw, 2 * D), 3 * D, M, D);
  } else {
    linear_fwd(W, a.qkv, h, D, A.qkv, 3 * D, M);
    // TMSA's time token part, one row per sample over its N tokens.
    for (int b = 0; A.qkv_off && b < B; ++b)
      be.add_bias(be.act_at(A.qkv, size_t(b) * N * 3 * D), be.act_at(A.qkv_off, size_t(b) * 3 * D),
                  N, 3 * D);
  }
  // q and k are the first 2 H groups of Dh features of each qkv row, v the next H.
  if (a.rope())
    be.rope(A.qkv, rope_cos(W, a), rope_sin(W, a), a.rope_per_token ? 1 : B,
            a.rope_per_token ? M : N, (a.rope_v ? 3 : 2) * H, Dh, 3 * D, false);
  if (a.rel_bias())
    W.be.attention_bias_fwd(A.qkv, rel_bias(W, a), A.att, A.lse, B, N, a.heads, a.head_dim,
                            a.scale);
  else if (a.kv_lens)
    W.be.attention_varlen_fwd(A.qkv, a.kv_lens, A.att, A.lse, B, N, a.heads, a.head_dim, a.scale);
  else
    W.be.attention_fwd(A.qkv, A.att, A.lse, B, N, a.heads, a.head_dim, a.scale);
  linear_fwd(W, a.proj, A.att, D, out, D, M, residual);
}

void attention_bwd(const Weights& W, const Attention& a, const float* h, const AttentionActs& A,
                   const float* dout, float* dh, float* dA, float* dQKV, int B, int N) {
  const int D = a.heads * a.head_dim, M = B * N;
  linear_bwd(W, a.proj, A.att, D, dout, D, dA, D, M);
  if (a.rel_bias())
    W.be.attention_bias_bwd(dA, A.qkv, A.att, A.lse, rel_bias(W, a), dQKV, W.g + a.rel_table, B, N,
                            a.heads, a.head_dim, a.scale);
  else if (a.kv_lens)
    W.be.attention_varlen_bwd(dA, A.qkv, A.att, A.lse, a.kv_lens, dQKV, B, N, a.heads, a.head_dim,
                              a.scale);
  else
    W.be.attention_bwd(dA, A.qkv, A.att, A.lse, dQKV, B, N, a.heads, a.head_dim, a.scale);
  const int H = a.heads, Dh = a.head_dim;
  Backend& be = W.be;
  if (a.rope())
    be.rope(dQKV, rope_cos(W, a), rope_sin(W, a), a.rope_per_token ? 1 : B,
            a.rope_per_token ? M : N, (a.rope_v ? 3 : 2) * H, Dh, 3 * D, true);
  if (a.qk_gathered()) {
    // Each part's gradient gathered contiguous, through its norm (which accumulates: qk_dx
    // zeroed first), scattered back.
    LnPart parts[2];
    const int np = ln_parts(a, parts);
    for (int j = 0; j < np; ++j) {
      const size_t blk = size_t(j) * M * D, st = size_t(j) * M * H;
      float* tmp = be.act_at(A.qk_tmp, blk);
      float* dx = be.act_at(A.qk_dx, blk);
      be.copy_act_2d(tmp, D, be.act_at(dQKV, parts[j].c0), 3 * D, M, D);
      be.zero_act(dx, size_t(M) * D);
      norm_bwd(W, *parts[j].n, tmp, be.act_at(A.qkv_raw, blk), A.qk_mean + st, A.qk_rstd + st, dx,
               M * H);
      be.copy_act_2d(be.act_at(dQKV, parts[j].c0), 3 * D, dx, D, M, D);
    }
  } else if (a.qk_norm()) {
    // The RMSNorm pair, in place: the q and k parts of dQKV become gradients of the raw GEMM
    // output.
    be.rmsnorm_bwd(dQKV, A.qkv_raw, W.w32 + a.q_norm.w, A.qk_rstd, dQKV, W.g + a.q_norm.w, M, H, Dh,
                   3 * D, false);
    be.rmsnorm_bwd(be.act_at(dQKV, D), be.act_at(A.qkv_raw, D), W.w32 + a.k_norm.w,
                   A.qk_rstd + size_t(M) * H, be.act_at(dQKV, D), W.g + a.k_norm.w, M, H, Dh, 3 * D,
                   false);
  }
  // TMSA's offset: its gradient is the sum over each sample's tokens.
  for (int b = 0; A.dqkv_off && b < B; ++b)
    be.bias_grad(be.act_at(dQKV, size_t(b) * N * 3 * D), A.dqkv_off + size_t(b) * 3 * D, N, 3 * D);
  linear_bwd(W, a.qkv, h, D, dQKV, 3 * D, dh, D, M);
}

void act_fwd(Backend& be, Activation a, const float* x, float* y, size_t n) {
  switch (a) {
    case Activation::Gelu:
      return be.gelu_fwd(x, y, n);
    case Activation::GeluTanh:
      return be.gelu_tanh_fwd(x, y, n);
    case Activation::Silu:
      return be.silu_fwd(x, y, n);
  }
}

void act_bwd(Backend& be, Activation a, const float* dy, const float* x, float* dx, size_t n) {
  switch (a) {
    case Activation::Gelu:
      return be.gelu_bwd(dy, x, dx, n);
    case Activation::GeluTanh:
      return be.gelu_tanh_bwd(dy, x, dx, n);
    case Activation::Silu:
      return be.silu_bwd(dy, x, dx, n);
  }
}

void mlp_fwd(const Weights& W, const Mlp& m, const float* h, MlpActs& A, float* out,
             const float* residual, int M) {
  const int D = m.fc1.in, Hd = m.fc1.out, Hg = m.fc2.in;
  if (m.split()) {
    const size_t blk = size_t(M) * Hg;
    UVIT_CHECK(blk <= size_t(INT_MAX), "SwiGLU: ", M, " x ", Hg, " activations exceed 2^31");
    linear_fwd(W, m.fc1, h, D, A.f, Hg, M);
    linear_fwd(W, m.fc1x, h, D, W.be.act_at(A.f, blk), Hg, M);
    W.be.swiglu_fwd(A.f, A.g, 1, int(blk));
    return linear_fwd(W, m.fc2, A.g, Hg, out, m.fc2.out, M, residual);
  }
  linear_fwd(W, m.fc1, h, D, A.f, Hd, M);
  if (m.gated)
    W.be.swiglu_fwd(A.f, A.g, M, Hg);
  else
    act_fwd(W.be, m.act, A.f, A.g, size_t(M) * Hd);
  linear_fwd(W, m.fc2, A.g, Hg, out, m.fc2.out, M, residual);
}

void mlp_bwd(const Weights& W, const Mlp& m, const float* h, const MlpActs& A, const float* dout,
             float* dh, float* dG, int M) {
  const int D = m.fc1.in, Hd = m.fc1.out, Hg = m.fc2.in;
  if (m.split()) {  // d(silu(g) x) in dG's first block, expanded in place to [dg block | dx block]
    const size_t blk = size_t(M) * Hg;
    linear_bwd(W, m.fc2, A.g, Hg, dout, m.fc2.out, dG, Hg, M);
    W.be.swiglu_bwd(dG, int(blk), A.f, dG, 1, int(blk));
    linear_bwd(W, m.fc1, h, D, dG, Hg, dh, D, M);
    return linear_bwd(W, m.fc1x, h, D, W.be.act_at(dG, blk), Hg, dh, D, M, 1.f);
  }
  // Gated: d(silu(a) b) lands in the first half of each dG row, then expands in place to [da | db].
  linear_bwd(W, m.fc2, A.g, Hg, dout, m.fc2.out, dG, Hd, M);
  if (m.gated)
    W.be.swiglu_bwd(dG, Hd, A.f, dG, M, Hg);
  else
    act_bwd(W.be, m.act, dG, A.f, dG, size_t(M) * Hd);
  linear_bwd(W, m.fc1, h, D, dG, Hd, dh, D, M);
}

std::vector<int32_t> relative_index(int g) {
  const int L = g * g;
  std::vector<int32_t> idx(size_t(L) * L);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j < L; ++j)
      idx[size_t(i) * L + j] = (i / g - j / g + g - 1) * (2 * g - 1) + (i % g - j % g + g - 1);
  return idx;
}

DeviceBuffer relative_index_buffer(Backend& be, int g) {
  const std::vector<int32_t> idx = relative_index(g);
  DeviceBuffer b(be, idx.size() * 4);
  be.upload(b.as(), idx.data(), idx.size() * 4);
  return b;
}

void check_relative_index(Backend& be, const float* params, const ParamTable& t,
                          const std::string& name, int g, const char* doc, const char* what) {
  const std::vector<int32_t> want = relative_index(g);
  std::vector<float> got(want.size());
  be.download(got.data(), params + t.at(name).offset, got.size() * 4);
  const size_t L = size_t(g) * g;
  for (size_t i = 0; i < want.size(); ++i)
    UVIT_CHECK(std::lround(got[i]) == want[i], name, "[", i / L, ", ", i % L, "] = ", got[i],
               " differs from the relative position formula's ", want[i], " (", doc,
               "); the file is not ", what, " of this grid");
}

// In double: the first D/2 features encode the column, the last D/2 the row; each half is
// [sin(pos w_k)] ++ [cos(pos w_k)] with w_k = 10000^(-k / (D/4)).
void sincos_2d(float* pos, int grid, int D) {
  const int q = D / 4;
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) {
      float* row = pos + (size_t(i) * grid + j) * D;
      for (int k = 0; k < q; ++k) {
        const double w = 1.0 / std::pow(10000.0, double(k) / q);
        row[k] = float(std::sin(j * w));
        row[q + k] = float(std::cos(j * w));
        row[2 * q + k] = float(std::sin(i * w));
        row[3 * q + k] = float(std::cos(i * w));
      }
    }
}

// In fp32 like the official buffers (torch float32 pow, product and cos/sin).
void rope_2d(float* table, int grid, int Dh, bool cosine) {
  const int dim = Dh / 2;
  for (int i = 0; i < grid; ++i)
    for (int j = 0; j < grid; ++j) {
      float* row = table + (size_t(i) * grid + j) * Dh;
      for (int k = 0; k < dim / 2; ++k) {
        const float f = 1.f / std::pow(10000.f, float(2 * k) / float(dim));
        const float a = float(i) * f, b = float(j) * f;
        row[2 * k] = row[2 * k + 1] = cosine ? std::cos(a) : std::sin(a);
        row[dim + 2 * k] = row[dim + 2 * k + 1] = cosine ? std::cos(b) : std::sin(b);
      }
    }
}

}  // namespace uvit::layers
