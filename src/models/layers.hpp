// The transformer pieces every backbone is built from, forward and backward over the Backend:
// Linear, LayerNorm (with or without affine), attention (qkv -> attention -> proj), the MLP with
// its activation, adaLN modulation, the timestep MLP, and the two-pass activation arena. A layer is
// a small struct of parameter offsets built once in plan(); forward and backward mirror each other
// call for call. Backward calls ACCUMULATE parameter gradients (the Backend's contract).
#pragma once
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "uvit/backend.hpp"
#include "uvit/params.hpp"
#include "uvit/quant.hpp"

namespace uvit::layers {

constexpr size_t kAbsent = SIZE_MAX;

// A network's weights as the layers read them: fp32 parameters, their act copy, fp32 gradients.
struct Weights {
  Backend& be;
  const float* w32;   // fp32 parameters (LayerNorm, embeddings, positions, convs)
  const float* wact;  // act copy (GEMM weights and linear biases)
  float* g;           // gradients (backward only)
  // Quantised GEMM weights (a network loaded from an int8/int4 file on the CPU), or nullptr.
  const QuantWeights* q = nullptr;
  // The network's table: which tensors are trained (nullptr: all).
  const ParamTable* t = nullptr;
  const float* act(size_t off) const { return be.act_at(wact, off); }
  // Where the gradient of the tensor holding float `off` accumulates, or nullptr when backward
  // skips it (a frozen tensor: train.finetune partial, Network::freeze_if).
  float* grad(size_t off) const { return !t || t->trains(off) ? g + off : nullptr; }
};

// y = x W^T + b; W [out, in] (rows ldw apart: a column slice of a wider weight when ldw > in).
struct Linear {
  size_t w = kAbsent, b = kAbsent;
  int in = 0, out = 0, ldw = 0;
};
// `name`.weight (required) and `name`.bias (when present) of the table. A conv weight [out, C, k,
// k] is read as [out, C k k] (a patch embedding as im2col + GEMM).
Linear linear(const ParamTable& t, const std::string& name);
// Columns [c0, c0 + n) of a linear's weight (the bias goes with the slice that has `bias`).
Linear column_slice(const Linear& l, int c0, int n, bool bias);

// y[M, out] (ldy) = x[M, in] (ldx) W^T + b + residual (residual may be y itself, or nullptr).
void linear_fwd(const Weights& W, const Linear& l, const float* x, int ldx, float* y, int ldy,
                int M, const float* residual = nullptr);
// dW += dy^T x, db += sum dy (each skipped when frozen); dx = dy W (beta 0) or dx += dy W (beta
// 1); dx may be nullptr. dy's rows may be those of a wider tensor (ldy > out).
void linear_bwd(const Weights& W, const Linear& l, const float* x, int ldx, const float* dy,
                int ldy, float* dx, int lddx, int M, float beta = 0.f);

// LayerNorm over D features. Without affine (w == kAbsent) it reads `one`/`zero` and sends the
// weight gradients to `sink` (D floats each, owned by the network); with a weight and no bias
// (b == kAbsent: FiT's qk_norm_weight) only the bias comes from `zero` and goes to `sink` + D. With
// `rms`, an RMSNorm with a weight w and no bias (LightningDiT; its forward writes only rstd, never
// mean). With `identity`, y = x (FiT's norm_type none: nn.Identity).
struct Norm {
  size_t w = kAbsent, b = kAbsent;
  int D = 0;
  float eps = 1e-5f;
  bool rms = false, identity = false;
  const float* one = nullptr;
  const float* zero = nullptr;
  float* sink = nullptr;  // 2 D floats
};
Norm norm(const ParamTable& t, const std::string& name, int D, float eps);
Norm norm_no_affine(int D, float eps, const float* one, const float* zero, float* sink);
Norm rms_norm(const ParamTable& t, const std::string& name, int D, float eps);
void norm_fwd(const Weights& W, const Norm& n, const float* x, float* y, float* mean, float* rstd,
              int M);
// dx += dLN/dx (residual-friendly), parameter gradients +=.
void norm_bwd(const Weights& W, const Norm& n, const float* dy, const float* x, const float* mean,
              const float* rstd, float* dx, int M);

// Multi-head self-attention sublayer: proj(attention(qkv(h))). Options, in this order: a per-head
// norm of q and k (q_norm, k_norm: LightningDiT's RMSNorm with a weight on both, FiT's LayerNorm
// or RMSNorm of either or both, or SVG's affine LayerNorm on both), then the 2-D RoPE of q and k
// (and v with rope_v) by the fp32 tables [N, head_dim] at rope_cos / rope_sin (parameters) or
// rope_cos_buf / rope_sin_buf (a network's own buffer).
struct Attention {
  Linear qkv, proj;
  int heads = 0, head_dim = 0;
  float scale = 0;
  Norm q_norm, k_norm;  // each used when its D > 0
  size_t rope_cos = kAbsent, rope_sin = kAbsent;
  // MDT's relative position bias (Backend::attention_bias_fwd): the table parameter [rel_R,
  // heads] at rel_table, the int32 index [rel_Lf, rel_Lf] and the positions of the pass's tokens
  // rel_ids [B, N] (nullptr: the full grid), backend memory.
  size_t rel_table = kAbsent;
  const int32_t* rel_index = nullptr;
  const int32_t* rel_ids = nullptr;
  int rel_R = 0, rel_Lf = 0;
  // RoPE tables in backend memory instead of parameters (FiTv2's scaled tables).
  const float *rope_cos_buf = nullptr, *rope_sin_buf = nullptr;
  // FiTv2's packed batches: sample b's valid token count (host int32 [B]; nullptr: all N), run
  // through Backend::attention_varlen_fwd/bwd (padding after the valid tokens).
  const int32_t* kv_lens = nullptr;
  // The RoPE tables hold one row per token of the batch ([B * N, head_dim]: per-sample grids)
  // instead of one per position ([N, head_dim]).
  bool rope_per_token = false;
  bool rope_v = false;  // FiT's add_rel_pe_to_v: v rotates as q and k do
  bool qk_norm() const { return q_norm.D > 0 || k_norm.D > 0; }
  // RMSNorms of both q and k run in place on the qkv rows; any other qk-norm gathers its columns.
  bool qk_rms_pair() const { return q_norm.rms && k_norm.rms; }
  bool qk_gathered() const { return qk_norm() && !qk_rms_pair(); }
  bool rope() const { return rope_cos != kAbsent || rope_cos_buf; }
  bool rel_bias() const { return rel_table != kAbsent; }
};
// DiT's attention sublayer `prefix`qkv -> `prefix`proj: `heads` heads of in / heads features,
// scale head_dim^-1/2.
Attention attention(const ParamTable& t, const std::string& prefix, int heads);
// The relative position bias (MDT, DiffiT): the table parameter at `table` ([rows, heads]), the
// shared int32 index [tokens, tokens] in backend memory.
void use_relative_bias(Attention& a, size_t table, int rows, const int32_t* index, int tokens);
struct AttentionActs {
  float *qkv = nullptr, *att = nullptr, *lse = nullptr;
  // With the RMS qk-norm pair: the qkv GEMM output before the norm (act [M, 3D]) and the norm's
  // rstd (fp32 [M, 2 heads]: q's then k's). With a gathered qk-norm: the normed parts (q, then k,
  // or one of them) before the norm, each a contiguous [M, D] block so that the norm runs over
  // rows of head_dim (act [M, 2D] at most), their mean and rstd (fp32 [M * 2H]), and two [M, 2D]
  // act scratch buffers (qk_dx for backward only) that blocks may share.
  float *qkv_raw = nullptr, *qk_rstd = nullptr, *qk_mean = nullptr, *qk_tmp = nullptr,
        *qk_dx = nullptr;
  // DiffiT's TMSA (docs/diffit.md): a per-sample offset (act [B, 3D], the time token's q, k, v
  // part) added to every token's qkv (not with a qk-norm); the backward adds its gradient, the
  // sum over the sample's tokens, into dqkv_off (fp32 [B, 3D], +=).
  const float* qkv_off = nullptr;
  float* dqkv_off = nullptr;
};
// out = proj(...) + residual (residual may be nullptr).
void attention_fwd(const Weights& W, const Attention& a, const float* h, AttentionActs& A,
                   float* out, const float* residual, int B, int N);
// dh = d/dh; dA [M, D] and dQKV [M, 3D] are scratch.
void attention_bwd(const Weights& W, const Attention& a, const float* h, const AttentionActs& A,
                   const float* dout, float* dh, float* dA, float* dQKV, int B, int N);

// MLP sublayer: fc2(act(fc1(h))); `gated`: SwiGLU, fc2(silu(a) * b) with [a | b] = fc1(h)
// (LightningDiT's w12 / w3, so fc1 has twice fc2's input features).
enum class Activation { Gelu, GeluTanh, Silu };
void act_fwd(Backend& be, Activation a, const float* x, float* y, size_t n);
void act_bwd(Backend& be, Activation a, const float* dy, const float* x, float* dx, size_t n);
// timm's SwiGLU (FiTv2) keeps the halves as two linears: fc1 = fc1_g (the silu'd half) and fc1x =
// fc1_x. Each writes a contiguous [M, fc2.in] block of the activation (gate block, then x block),
// so the pair is one SwiGLU "row" of 2 M fc2.in elements and every GEMM and bias is dense.
struct Mlp {
  Linear fc1, fc2, fc1x;
  Activation act = Activation::Gelu;
  bool gated = false;
  bool split() const { return fc1x.out > 0; }
};
// DiT's MLP `prefix`fc1 -> tanh GELU -> `prefix`fc2.
Mlp mlp_gelu_tanh(const ParamTable& t, const std::string& prefix);
struct MlpActs {
  float *f = nullptr, *g = nullptr;  // fc1 output [M, fc1.out], activation output [M, fc2.in]
};
void mlp_fwd(const Weights& W, const Mlp& m, const float* h, MlpActs& A, float* out,
             const float* residual, int M);
// dh = d/dh; dG [M, fc1.out] is scratch.
void mlp_bwd(const Weights& W, const Mlp& m, const float* h, const MlpActs& A, const float* dout,
             float* dh, float* dG, int M);

// The relative position index of a g x g grid (BEiT's / Swin's relative_position_index, MDT and
// DiffiT): token i = (hi, wi) to token j = (hj, wj) reads row (hi - hj + g - 1) (2g - 1) + (wi - wj
// + g - 1) of the bias table; [g^2, g^2] int32.
std::vector<int32_t> relative_index(int g);
// relative_index(g) uploaded to a buffer of its own (the kernels' copy of the index).
DeviceBuffer relative_index_buffer(Backend& be, int g);
// Refuses a loaded index buffer `name` (fp32 in the parameters, backend memory) that does not hold
// relative_index(g): one line naming the tensor, the entry, `doc` and `what` ("an MDTv2").
void check_relative_index(Backend& be, const float* params, const ParamTable& t,
                          const std::string& name, int g, const char* doc, const char* what);

// The fixed 2-D sin-cos position table [grid * grid, D] on the host (MAE's get_2d_sincos_pos_embed,
// as DiT uses it); D a multiple of 4.
void sincos_2d(float* pos, int grid, int D);
// LightningDiT's 2-D RoPE table [grid * grid, Dh] on the host (EVA-02 VisionRotaryEmbeddingFast
// with dim = Dh/2): token i*grid + j, features [0, Dh/2) rotate by the row i, [Dh/2, Dh) by the
// column j, pair k of a half (features 2k, 2k+1) at angle pos * 10000^(-2k / (Dh/2)); `cosine`
// picks cos or sin. Dh a multiple of 4.
void rope_2d(float* table, int grid, int Dh, bool cosine);

// One allocation carved into activation buffers: plan() runs the carve twice, first sizing with a
// null base, then on the allocation (256-byte aligned pieces).
class Arena {
 public:
  explicit Arena(Backend& be) : be_(be) {}
  ~Arena() { release(); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  template <class F>
  void plan(F&& carve) {
    release();
    used_ = 0;
    carve(*this);
    base_ = static_cast<char*>(be_.alloc_bytes(used_));
    used_ = 0;
    carve(*this);
  }
  float* act(size_t n) { return bytes(n * be_.act_bytes()); }  // act elements
  float* f32(size_t n) { return bytes(n * sizeof(float)); }    // fp32 elements
  size_t size() const { return used_; }

 private:
  float* bytes(size_t n) {
    float* p = reinterpret_cast<float*>(base_ ? base_ + used_ : nullptr);
    used_ += (n + 255) / 256 * 256;
    return p;
  }
  void release() {
    if (base_) be_.free_bytes(base_);
    base_ = nullptr;
  }
  Backend& be_;
  char* base_ = nullptr;
  size_t used_ = 0;
};

}  // namespace uvit::layers
