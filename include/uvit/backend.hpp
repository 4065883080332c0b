// The compute backend: every kernel the networks, samplers and trainer need, behind one interface,
// so the model code is written once and runs on the CPU or CUDA unchanged.
//
// Conventions
// - All pointers are backend memory (host memory for the CPU backend), row-major, contiguous
//   unless a leading dimension (ld*) is given.
// - Precision. Arguments marked "act" are activations: act_bytes()-byte elements, fp32 on the
//   CPU and in the CUDA backend's fp32 mode, bf16 in its bf16 mode (they are typed float* all the
//   same; offset them with act_at()); the CPU's bf16 mode likewise (docs/cpu_bf16.md). Everything
//   else is fp32: parameters and their gradients, optimizer state, LayerNorm statistics, the
//   logsumexp, network inputs and outputs. GEMM weights and linear biases are read from the act
//   copy of the parameters (UViT keeps one; on the CPU it is the parameters themselves with fp32
//   acts), LayerNorm/embedding/position/conv parameters from fp32. Unmarked kernels (copy, fill,
//   axpy, scale, sum_squares, adamw, adan, ema, conv3x3) are fp32.
// - Activation layout is [B, N, D] (tokens of a batch element contiguous). Linear weights are
//   [out, in] as in PyTorch; y = x W^T + b.
// - Backward kernels ACCUMULATE (+=) into parameter gradients (dw, db, dtable, dpos).
//   Input gradients are overwritten unless the kernel says "+=".
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace uvit {

// A 2-D convolution's geometry: input [B, Cin, H, W], weight [Cout, Cin, kh, kw], output
// [B, Cout, out_h(), out_w()]; strides sh, sw; zero padding top/left/bottom/right (asymmetric
// padding is what the autoencoder's stride-2 downsampling needs).
struct Conv2dShape {
  int B = 1, Cin = 0, H = 0, W = 0, Cout = 0, kh = 1, kw = 1, sh = 1, sw = 1;
  int pt = 0, pl = 0, pb = 0, pr = 0;
  // Floats from one image to the next in x and y; 0: dense (Cin*H*W, Cout*Ho*Wo). Larger strides
  // read or write a channel slice of a wider tensor (an Inception branch's concatenated output).
  long x_stride = 0, y_stride = 0;
  int out_h() const { return (H + pt + pb - kh) / sh + 1; }
  int out_w() const { return (W + pl + pr - kw) / sw + 1; }
  long in_stride() const { return x_stride ? x_stride : long(Cin) * H * W; }
  long out_stride() const { return y_stride ? y_stride : long(Cout) * out_h() * out_w(); }
  void check() const;  // throws uvit::Error naming the geometry when it is not a valid one
};

// Adan's hyperparameters (Backend::adan).
struct AdanHyper {
  float lr = 1e-3f, beta1 = 0.98f, beta2 = 0.92f, beta3 = 0.99f, eps = 1e-8f, weight_decay = 0.f;
  bool no_prox = false;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  // Whether the host can read and write this backend's memory in place (the CPU's is host memory;
  // a device's, real or simulated, is reached through upload/download only). Host code that would
  // use a buffer in place asks this, never the backend's name.
  virtual bool host_addressable() const = 0;
  // "fp32" or "bf16" (the act type), or "tf32" (CUDA: fp32 acts, GEMMs on TF32 tensor cores)
  virtual std::string precision() const { return "fp32"; }
  virtual void synchronize() {}  // waits for queued device work (timing, host reads)
  // Device memory high-water mark of this backend's allocations in bytes (0 where not tracked,
  // e.g. on the CPU, whose peak is the process's resident set).
  virtual size_t peak_bytes() const { return 0; }
  virtual void reset_peak_bytes() {}
  // Dense bf16 tensor peak of the device in FLOP/s for MFU figures (989e12 on H100/H200 SXM);
  // 0 when unknown (the CPU).
  virtual double peak_flops() const { return 0; }

  // ---- memory ----
  virtual void* alloc_bytes(size_t n) = 0;  // throws uvit::Error "out of memory: ..." on failure
  virtual void free_bytes(void* p) = 0;
  float* alloc(size_t n) { return static_cast<float*>(alloc_bytes(n * sizeof(float))); }
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;
  virtual void download(void* host, const void* src, size_t bytes) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  // rows x cols floats from src (rows ld_src apart) to dst (rows ld_dst apart), e.g. one channel
  // slice of each image of a batch. Backends with a 2-D copy (cudaMemcpy2DAsync) override it.
  virtual void copy_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                       long cols) {
    for (long r = 0; r < rows; ++r) copy(dst + r * ld_dst, src + r * ld_src, size_t(cols));
  }
  virtual void fill(float* dst, float v, size_t n) = 0;
  virtual void axpy(float* y, const float* x, float a, size_t n) = 0;  // y += a*x
  virtual void scale(float* x, float a, size_t n) = 0;                 // x *= a
  virtual double sum_squares(const float* x, size_t n) = 0;

  // ---- activation precision ----
  virtual size_t act_bytes() const { return sizeof(float); }
  // The act element n places after p.
  float* act_at(const float* p, size_t n) const {
    return reinterpret_cast<float*>(
        const_cast<char*>(reinterpret_cast<const char*>(p) + n * act_bytes()));
  }
  virtual void to_act(const float* src, float* dst_act, size_t n) { copy(dst_act, src, n); }
  // to_act for the act copy of a network's parameters (Network::act_params, its only writer): a
  // backend that keeps copies derived from the GEMM weights in it (the CPU's AMX-blocked weights,
  // docs/cpu_bf16.md) drops those, so no derived copy outlives a write; freeing dst_act with
  // free_bytes drops them too.
  virtual void params_to_act(const float* src, float* dst_act, size_t n) {
    to_act(src, dst_act, n);
  }
  virtual void from_act(const float* src_act, float* dst, size_t n) { copy(dst, src_act, n); }
  virtual void copy_act(float* dst, const float* src, size_t n) { copy(dst, src, n); }
  virtual void zero_act(float* dst, size_t n) { fill(dst, 0.f, n); }
  virtual void axpy_act(float* y, const float* x, float a, size_t n) { axpy(y, x, a, n); }
  // Row moves by index lists, one call for the lot (MDT's masked tokens, FiT's packed sequences):
  // for i < n, dst row (dst_idx ? dst_idx[i] : i) = (+= with `accumulate`) src row (src_idx ?
  // src_idx[i] : i); rows are row_len act elements (fp32 ones when `act` is false); src nullptr
  // writes zero rows. The lists are int32 backend memory (uploaded once per mask, not per row)
  // with entries in range (checked by the caller: models/row_lists.hpp); rows are moved in
  // parallel, so the dst rows must be distinct and must not overlap the src rows read.
  virtual void move_rows(float* dst, const int32_t* dst_idx, const float* src,
                         const int32_t* src_idx, long n, long row_len, bool accumulate,
                         bool act = true) = 0;
  // Blocks of strided rows, one call for the lot (per-sample copies: LaVin's joint sequence,
  // U-ViT's text context, the encoders' class tokens, ST-VAE's frames): for b < blocks, r < rows,
  // c < cols, dst[b * bs_dst + r * ld_dst + c] = src[b * bs_src + r * ld_src + c], in act elements
  // (fp32 ones when `act` is false); bits are copied. Strides are >= 0; src strides of 0 repeat a
  // row or a block (a broadcast). The dst rows must nest one way, rows inside blocks (ld_dst >=
  // cols, bs_dst >= (rows - 1) * ld_dst + cols) or blocks inside rows (the same with the roles
  // swapped), so no element is written twice (checked); dst must not overlap src.
  virtual void copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src,
                       long bs_src, long blocks, long rows, long cols, bool act = true) = 0;

  // ---- dense ----
  // Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
  // op(A) = A ([M,K], lda) or A^T (A stored [K,M], lda); likewise B.
  virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc) = 0;
  // All act (A, B, C).
  virtual void add_bias(float* y, const float* b, int M, int N) = 0;  // y[m,n] += b[n]; act
  // db[n] += sum_m dy[m,n]; dy act, db fp32.
  void bias_grad(const float* dy, float* db, int M, int N) { bias_grad_strided(dy, N, db, M, N); }
  // The same over rows ld_dy >= N apart (the first N features of rows of a wider tensor: U-ViT's
  // time token), in one call; the sum of each column runs in a fixed order (reproducible bits).
  virtual void bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) = 0;
  // The weight gradient: C[M,N] += A^T B with A [K,M] (lda), B [K,N] (ldb) act and C fp32.
  virtual void gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                          float* C, int ldc) {
    gemm(true, false, M, N, K, 1.f, A, lda, B, ldb, 1.f, C, ldc);
  }
  // A linear layer: y[M,N] = x[M,K] w[N,K]^T + bias[N] + residual[M,N], all act. bias and residual
  // may be nullptr; residual may equal y (accumulate), otherwise it must not overlap y and, like y,
  // has leading dimension ldy. Backends fuse what they can (cuBLASLt epilogues).
  virtual void linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
                      const float* residual, float* y, int ldy, int M, int N, int K);

  // ---- normalisation and activations ----
  // y = (x - mean) * rstd * w + b per row of length D; mean/rstd [M] are saved for backward
  // (either may be nullptr for inference). x, y act; w, b, mean, rstd fp32.
  virtual void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* rstd, int M, int D, float eps) = 0;
  // dx += grad wrt x (residual-friendly), dw += , db +=. dy, x, dx act; the rest fp32.
  virtual void layernorm_bwd(const float* dy, const float* x, const float* w, const float* mean,
                             const float* rstd, float* dx, float* dw, float* db, int M, int D) = 0;
  // Activations: all act.
  virtual void gelu_fwd(const float* x, float* y, size_t n) = 0;  // exact erf GELU
  virtual void gelu_bwd(const float* dy, const float* x, float* dx,
                        size_t n) = 0;  // dx may alias dy
  virtual void silu_fwd(const float* x, float* y, size_t n) = 0;
  virtual void silu_bwd(const float* dy, const float* x, float* dx, size_t n) = 0;

  // tanh-approximate GELU (nn.GELU(approximate="tanh")): 0.5 x (1 + tanh(sqrt(2/pi) (x +
  // 0.044715 x^3))). act; dx may alias dy.
  virtual void gelu_tanh_fwd(const float* x, float* y, size_t n) = 0;
  virtual void gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) = 0;
  // tanh (LaVin-DiT's tanh-gated adaLN, docs/lavin_dit.md); dx = dy (1 - tanh(x)^2). act; dx may
  // alias dy.
  virtual void tanh_fwd(const float* x, float* y, size_t n) = 0;
  virtual void tanh_bwd(const float* dy, const float* x, float* dx, size_t n) = 0;

  // ---- adaLN (DiT-style modulation by a per-sample vector; all act, sums in fp32) ----
  // Per-sample rows shift/scale/gate are [B] rows ldm elements apart (chunks of one adaLN output).
  // y[b, n, :] = x[b, n, :] * (1 + scale[b, :]) + shift[b, :] for the N tokens of sample b; shift
  // may be nullptr (LightningDiT's wo_shift: no shift term).
  virtual void modulate_fwd(const float* x, const float* shift, const float* scale, int ldm,
                            float* y, int B, int N, int D) = 0;
  // dx = dy * (1 + scale) (overwritten; may alias dy); dshift[b, :] = sum_n dy (skipped when
  // nullptr), dscale[b, :] = sum_n dy * x (both overwritten).
  virtual void modulate_bwd(const float* dy, const float* x, const float* scale, int ldm, float* dx,
                            float* dshift, float* dscale, int B, int N, int D) = 0;
  // out = x + gate[b, :] * y (out may alias x).
  virtual void gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out,
                        int B, int N, int D) = 0;
  // dy = dout * gate[b, :] (overwritten), dgate[b, :] = sum_n dout * y (overwritten).
  virtual void gate_bwd(const float* dout, const float* y, const float* gate, int ldm, float* dy,
                        float* dgate, int B, int N, int D) = 0;
  // ---- LightningDiT (docs/lightningdit.md): RMSNorm, SwiGLU, 2-D RoPE; all act, sums in fp32 ----
  // RMSNorm of M rows `ld` elements apart, each holding G groups of D features (group g of row m
  // at m*ld + g*D; G = 1, ld = D for a plain norm; the per-head q/k norm reads q or k in the qkv
  // tensor with G = heads, ld = 3*H*Dh): y = x * rstd * w, rstd = 1/sqrt(mean(x^2) + eps) per
  // group, w [D] fp32; rstd [M*G] fp32 is saved (may be nullptr). y may alias x.
  virtual void rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G,
                           int D, int ld, float eps) = 0;
  // dx = rstd * (w dy - xhat * mean(w dy xhat)), xhat = x rstd; added to dx when `accumulate`
  // (residual-friendly, as layernorm_bwd), else overwritten (then dx may alias dy). dw += sum
  // dy * xhat. Same layout as the forward.
  virtual void rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                           float* dx, float* dw, int M, int G, int D, int ld, bool accumulate) = 0;
  // SwiGLU: y[M, H] = silu(x12[:, :H]) * x12[:, H:] for x12 [M, 2H].
  virtual void swiglu_fwd(const float* x12, float* y, int M, int H) = 0;
  // dx12 [M, 2H] from dy (rows ldy apart, ldy >= H). dy may sit in dx12's first half (ldy = 2H,
  // dy == dx12): each element is read before its slot is written.
  virtual void swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M,
                          int H) = 0;
  // 2-D RoPE in place on x: B*N rows `ld` apart, each with G groups of Dh features; token n of a
  // sample rotates its interleaved pairs (a, b) = (x[2k], x[2k+1]) by the fp32 tables cos, sin
  // [N, Dh]: (a cos[2k] - b sin[2k], b cos[2k+1] + a sin[2k+1]). `inverse` applies the transposed
  // map (the backward pass of the gradient). With sec > 2 the pairs are NeoX's rotate_half pairs
  // (i, i + sec/2) inside each section of sec features (LaVin-DiT's 3-D RoPE, docs/lavin_dit.md);
  // a = x[ia], b = x[ib] then read cos/sin at ia and ib as above (sec = 2 is the interleaved form).
  virtual void rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
                    int ld, bool inverse, int sec = 2) = 0;

  // rows x cols act elements from src (rows ld_src apart) to dst (rows ld_dst apart): a feature
  // concatenation. Backends with a 2-D copy override it.
  virtual void copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                           long cols) {
    for (long r = 0; r < rows; ++r)
      copy_act(act_at(dst, r * ld_dst), act_at(src, r * ld_src), cols);
  }

  // ---- attention ----
  // qkv [B, N, 3*H*Dh] with feature f = k*H*Dh + h*Dh + d (k = 0 q, 1 k, 2 v);
  // out [B, N, H*Dh] (head h at h*Dh); lse [B, H, N] = logsumexp of the scaled scores per query
  // (saved for backward; nullptr for inference). No mask, no dropout. qkv, out act; lse fp32.
  virtual void attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H, int Dh,
                             float scale) = 0;
  // dqkv [B, N, 3*H*Dh] is overwritten. dout, qkv, out, dqkv act.
  virtual void attention_bwd(const float* dout, const float* qkv, const float* out,
                             const float* lse, float* dqkv, int B, int N, int H, int Dh,
                             float scale) = 0;

  // Variable-length attention (FiTv2's packed batches, docs/fit.md): sample b holds lens[b] valid
  // tokens first (1 <= lens[b] <= N; lens is HOST memory, int32 [B]) and padding after them. A
  // valid query attends to the lens[b] valid keys only, which is the official mask
  // (mask_q == mask_k) on valid rows; padded rows of out are zero, their lse 0, and their dqkv
  // rows zero. With every lens[b] == N it is attention_fwd / attention_bwd exactly.
  virtual void attention_varlen_fwd(const float* qkv, const int32_t* lens, float* out, float* lse,
                                    int B, int N, int H, int Dh, float scale) = 0;
  virtual void attention_varlen_bwd(const float* dout, const float* qkv, const float* out,
                                    const float* lse, const int32_t* lens, float* dqkv, int B,
                                    int N, int H, int Dh, float scale) = 0;

  // Attention with an additive bias (MDT's BEiT relative position bias, docs/mdt.md): the scores
  // are scale q.k + bias[h, i, j] with bias[h, i, j] = table[index[pi * Lf + pj] * H + h], pi, pj
  // the positions of tokens i, j among the Lf of the full grid: ids[b * N + i] (the kept tokens
  // of a masked pass) or i itself when ids is nullptr (then N == Lf). table fp32 [R, H]; index
  // int32 [Lf, Lf], entries in [0, R) (checked by the caller); ids int32 [B, N]. Otherwise as
  // attention_fwd / attention_bwd; the backward also adds the bias gradient, scattered over the
  // index, into dtable [R, H] (+=).
  struct AttnBias {
    const float* table = nullptr;
    const int32_t* index = nullptr;
    const int32_t* ids = nullptr;
    int R = 0, Lf = 0;
  };
  virtual void attention_bias_fwd(const float* qkv, const AttnBias& bias, float* out, float* lse,
                                  int B, int N, int H, int Dh, float scale) = 0;
  virtual void attention_bias_bwd(const float* dout, const float* qkv, const float* out,
                                  const float* lse, const AttnBias& bias, float* dqkv,
                                  float* dtable, int B, int N, int H, int Dh, float scale) = 0;

  // ---- tokens ----
  // x [B, C, S, W] (W = 0: S) -> cols [B*L, C*p*p], row = b*L + i*(W/p) + j, col = (c*p + u)*p
  // + v (the flattened Conv2d weight [D, C, p, p]; FiT's (c, p1, p2) tokens); the patch conv is
  // then a GEMM. x fp32, cols act.
  virtual void patch_im2col(const float* x, float* cols, int B, int C, int S, int p, int W = 0) = 0;
  virtual void patch_col2im(const float* cols, float* x, int B, int C, int S, int p,
                            int W = 0) = 0;  // overwrite
  // seq[b, e] = extras[b, e] + pos[e] for e < E; seq[b, E + l] = patches[b, l] + pos[E + l].
  // extras, patches, seq (and their gradients) act; pos, dpos fp32.
  virtual void tokens_fwd(const float* extras, const float* patches, const float* pos, float* seq,
                          int B, int E, int L, int D) = 0;
  // dextras, dpatches overwritten (dextras may be nullptr); dpos +=.
  virtual void tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos, int B,
                          int E, int L, int D) = 0;
  // out[b*ldo + i] = cos(t_b * f_i), out[b*ldo + half + i] = sin(t_b * f_i),
  // f_i = exp(-ln(10000) i / half) computed in fp32; a zero column last when D is odd. t fp32,
  // out act.
  virtual void timestep_embedding(const float* t, float* out, int B, int D, int ldo) = 0;
  // FiTv2's time shifting (docs/fit.md): out[i] = min(s t[i] / (1 + (s - 1) t[i]), 1) in fp32,
  // for n fp32 values (out may alias t); kept on the device so a forward needs no host round trip.
  virtual void fit_time_shift(const float* t, float* out, int n, float s) = 0;
  // out[b*ldo + :] = table[idx[b], :]; idx is int32 backend memory, checked < rows by the caller.
  // table, dtable fp32; out, dout act.
  virtual void embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                             int ldo) = 0;
  virtual void embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B, int D,
                             int ldo) = 0;  // dtable +=
  // tok [B, E+L, p*p*C] (the first E tokens skipped) -> img [B, C, S, S]; feature (u*p + v)*C + c
  // of token (i, j) goes to pixel [c, i*p + u, j*p + v]. tok, dtok act; img, dimg fp32.
  virtual void unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S, int p) = 0;
  // dtok [B, E+L, p*p*C] overwritten, its first E token rows set to zero.
  virtual void unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S,
                              int p) = 0;
  // 3x3 convolution, padding 1, stride 1: x [B, Cin, H, W], w [Cout, Cin, 3, 3], b [Cout].
  virtual void conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B, int Cin,
                           int Cout, int H, int W) = 0;
  // A 3x3 convolution (padding 1, stride s) on channels-last maps as im2col + GEMM (U-ViT's
  // patch_embed conv_stack): x [B, H, W, C] -> cols [B Ho Wo, 9 C], col = c*9 + ky*3 + kx (the
  // flattened Conv2d weight [Cout, C, 3, 3]), Ho = (H - 1) / s + 1, zeros outside. act.
  virtual void conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W,
                              int stride) = 0;
  // The adjoint: x[b, h, w, c] = sum of the cols entries that read it (overwritten). act.
  virtual void conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W,
                              int stride) = 0;
  // dx overwritten (may be nullptr), dw +=, db +=.
  virtual void conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw,
                           float* db, int B, int Cin, int Cout, int H, int W) = 0;

  // ---- convolutional and text encoders (inference only) ----
  // The autoencoder (SPEC 13), the FID Inception (SPEC 17) and the CLIP text model (SPEC 14) run
  // through these. They are fp32 models: their owners require fp32 acts (precision fp32 or tf32),
  // so "act" below is fp32 too. Images are NCHW.
  // y = conv(x, w) + b (b may be nullptr) with geometry s.
  virtual void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
                      float* y) = 0;
  // GroupNorm of x [B, C, HW] with G groups (C % G == 0) and per-channel affine w, b; swish
  // (y * sigmoid(y)) after it when `swish`. y may alias x.
  virtual void group_norm(const float* x, const float* w, const float* b, float* y, int B, int C,
                          int HW, int G, float eps, bool swish) = 0;
  // Nearest-neighbour x2 upsampling: x [N, H, W] -> y [N, 2H, 2W].
  virtual void upsample_nearest2x(const float* x, float* y, int N, int H, int W) = 0;
  // Single-head attention over the HW positions of each image, channels as features: per image,
  // out[c, i] = sum_j softmax_j(scale * sum_d q[d, i] k[d, j]) v[c, j]; q, k, v, out [B, C, HW].
  virtual void spatial_attention(const float* q, const float* k, const float* v, float* out, int B,
                                 int C, int HW, float scale) = 0;
  // Pooling of x [B, C, H, W] -> y [B, C, Ho, Wo], Ho = (H + 2 pad - k) / stride + 1 (likewise
  // Wo): the maximum, or the average over the in-image taps only (count_include_pad=False).
  // x_stride, y_stride: floats from one image to the next (0: dense C*H*W, C*Ho*Wo), for channel
  // slices of wider tensors.
  virtual void pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride,
                      int pad, bool max, long x_stride = 0, long y_stride = 0) = 0;
  // y[n] = mean of the HW values of plane n of x [N, HW] (accumulated in double on the CPU).
  virtual void global_avg_pool(const float* x, float* y, int N, int HW) = 0;
  // x[b, c, i] += bias[c] (bias may be nullptr), then ReLU when `relu`, for x [B, C, HW] whose
  // images are `stride` floats apart (0: dense C*HW; larger: a channel slice of a wider tensor).
  virtual void channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                                long stride = 0) = 0;
  // torch F.interpolate(mode="bilinear", align_corners=False, no antialias) of x [planes, H, W]
  // to y [planes, oh, ow] in fp32 (nn::resize_bilinear's formula), or with `tf1` TF 1.x's legacy
  // ResizeBilinear (nn::resize_bilinear_tf1's), then y = y * scale + shift (2x - 1: pytorch-fid's
  // normalisation; x / 128 - 1: the TF graph's).
  virtual void resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh, int ow,
                               float scale = 1.f, float shift = 0.f, bool tf1 = false) = 0;
  // Causal self-attention (query i attends to keys j <= i), inference only; qkv and out are laid
  // out as in attention_fwd. act.
  virtual void causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                                    float scale) = 0;

  // ---- optimisation ----
  // PyTorch AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps).  step counts from 1.
  virtual void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, long step) = 0;
  // Adan (sail-sg/Adan adan.py, the single-tensor update; docs/mdt_diffusion.md). g is the
  // (clipped) gradient, gp the previous step's (read from step 2 on; step 1 takes g - gp = 0) and
  // receives g. With u = g - gp: m = b1 m + (1-b1) g; d = b2 d + (1-b2) u;
  // n = b3 n + (1-b3) (g + b2 u)^2; den = sqrt(n) / sqrt(1-b3^step) + eps;
  // p -= lr/(1-b1^step) m/den + lr b2/(1-b2^step) d/den, then p /= 1 + lr wd (no_prox: p *= 1 - lr
  // wd before the update).
  virtual void adan(float* p, const float* g, float* m, float* d, float* n, float* gp, size_t count,
                    const AdanHyper& h, long step) = 0;
  // e = decay * e + (1 - decay) * p
  virtual void ema(float* e, const float* p, size_t n, float decay) = 0;
  // adamw over [p, p + n) and then ema(e, p, n, ema_decay), bit for bit; a backend may run both in
  // one pass over memory (the CPU's does; this default is the two calls).
  virtual void adamw_ema(float* p, const float* g, float* m, float* v, float* e, size_t n, float lr,
                         float beta1, float beta2, float eps, float weight_decay, long step,
                         float ema_decay) {
    adamw(p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
    ema(e, p, n, ema_decay);
  }
};

// Backend memory owned by a handle: freed when the handle goes, so an exception in the middle of
// a request leaks nothing.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Backend& be, size_t bytes)
      : be_(&be), p_(bytes ? be.alloc_bytes(bytes) : nullptr), bytes_(p_ ? bytes : 0) {}
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : be_(o.be_), p_(o.p_), bytes_(o.bytes_) {
    o.p_ = nullptr;
    o.bytes_ = 0;
  }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      be_ = o.be_;
      p_ = o.p_;
      bytes_ = o.bytes_;
      o.p_ = nullptr;
      o.bytes_ = 0;
    }
    return *this;
  }
  void reset() {
    if (p_) be_->free_bytes(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  // Grow-only: at least `bytes` of backend memory, reallocated (contents not kept) only when the
  // buffer is smaller; the old block is freed first, so the peak is one buffer.
  void reserve(Backend& be, size_t bytes) {
    if (bytes <= bytes_) return;
    reset();
    *this = DeviceBuffer(be, bytes);
  }
  size_t bytes() const { return bytes_; }
  template <class T = float>
  T* as() const {
    return static_cast<T*>(p_);
  }
  float* f32() const { return as<float>(); }

 private:
  Backend* be_ = nullptr;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// "cpu" or "cuda". precision "fp32", "bf16" or "tf32" ("" = the device default: fp32 on the CPU,
// bf16 on CUDA). Throws uvit::Error when the backend is not compiled in, no device is present, or
// the precision is not offered (tf32 on the CPU). "cpu" with "bf16" on a CPU without bf16 units
// says so in one line on stderr and gives the fp32 backend (docs/cpu_bf16.md).
std::unique_ptr<Backend> make_backend(const std::string& name, const std::string& precision = "");
// The devices make_backend takes by name, in the order messages list them: {"cpu", "cuda"} (cuda
// whether or not this build has it; "simdev", the test device of docs/gpu.md, is taken, not
// listed). The one list the CLI's --device and the C API check their arguments against.
const std::vector<std::string>& device_names();
bool known_device(const std::string& name);  // one of device_names()
// device_names() as a message says them, each between `quote`s: "'cpu' or 'cuda'".
std::string device_choices(char quote);
// The precisions make_backend knows by name, in the order messages list them: {"fp32", "bf16",
// "tf32"} ("" is the default, not a name). The one list make_backend, the CUDA backend and the C
// API check their arguments against.
const std::vector<std::string>& precision_names();
bool known_precision(const std::string& precision);  // one of precision_names()
// precision_names() as a message says them, each between `quote`s: "fp32, bf16 or tf32" with
// none, "\"fp32\", \"bf16\" or \"tf32\"" with "\"".
std::string precision_choices(const std::string& quote = "");
// The precision of the fp32 encoder models (autoencoder, FID Inception, CLIP text model) on a
// device: `requested` ("fp32" or "tf32") if given, else tf32 on CUDA (what PyTorch's convolutions
// use by default) and fp32 on the CPU. Throws uvit::Error for anything else (bf16 included).
std::string encoder_precision(const std::string& device, const std::string& requested = "");
// A backend for an encoder model: make_backend(device, encoder_precision(device, requested)).
std::unique_ptr<Backend> make_encoder_backend(const std::string& device,
                                              const std::string& requested = "");
// Whether this build has the CUDA backend and a usable GPU is present (for tests that skip).
bool cuda_available();
// Whether this CPU runs oneDNN's bf16 kernels (AVX512-BF16 or AMX), as oneDNN sees it
// (DNNL_MAX_CPU_ISA lowers it): what the CPU's bf16 mode needs.
bool cpu_has_bf16();

}  // namespace uvit
