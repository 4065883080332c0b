// Host-side launchers of the CUDA backend's own kernels (everything but GEMM and attention). All
// run on the legacy default stream. "act" pointers are float or __nv_bfloat16 by the bf16 flag; the
// semantics are those of the same-named uvit::Backend methods (include/uvit/backend.hpp).
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/optim_scalars.hpp"
#include "uvit/backend.hpp"  // Conv2dShape

namespace uvit::cuda {

// Device scratch memory for multi-pass reductions, owned by the backend. get() may reallocate, so a
// pointer is valid until the next get(); stream order makes reuse across launches safe.
class Scratch {
 public:
  virtual ~Scratch() = default;
  virtual float* get(size_t floats) = 0;
};

// ---- elementwise.cu ----
void fill_f32(float* dst, float v, size_t n);
void axpy_f32(float* y, const float* x, float a, size_t n);
void scale_f32(float* x, float a, size_t n);
double sum_squares_f32(const float* x, size_t n, Scratch& scratch);  // synchronises
void to_act(bool bf16, const float* src, void* dst, size_t n);
void from_act(bool bf16, const void* src, float* dst, size_t n);
void axpy_act(bool bf16, void* y, const void* x, float a, size_t n);
void gelu_fwd(bool bf16, const void* x, void* y, size_t n);
void gelu_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n);
void silu_fwd(bool bf16, const void* x, void* y, size_t n);
void silu_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n);
void tanh_fwd(bool bf16, const void* x, void* y, size_t n);
void tanh_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n);
void add_bias(bool bf16, void* y, const void* b, int M, int N);

// ---- adaln.cu ----
void gelu_tanh_fwd(bool bf16, const void* x, void* y, size_t n);
void gelu_tanh_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n);
void modulate_fwd(bool bf16, const void* x, const void* shift, const void* scale, int ldm, void* y,
                  int B, int N, int D);
void modulate_bwd(bool bf16, const void* dy, const void* x, const void* scale, int ldm, void* dx,
                  void* dshift, void* dscale, int B, int N, int D);
void gate_fwd(bool bf16, const void* x, const void* y, const void* gate, int ldm, void* out, int B,
              int N, int D);
void gate_bwd(bool bf16, const void* dout, const void* y, const void* gate, int ldm, void* dy,
              void* dgate, int B, int N, int D);

// ---- lightning.cu (LightningDiT: RMSNorm, SwiGLU, RoPE) ----
void rmsnorm_fwd(bool bf16, const void* x, const float* w, void* y, float* rstd, int M, int G,
                 int D, int ld, float eps);
void rmsnorm_bwd(bool bf16, const void* dy, const void* x, const float* w, const float* rstd,
                 void* dx, float* dw, int M, int G, int D, int ld, bool accumulate,
                 Scratch& scratch);
void swiglu_fwd(bool bf16, const void* x12, void* y, int M, int H);
void swiglu_bwd(bool bf16, const void* dy, int ldy, const void* x12, void* dx12, int M, int H);
void rope(bool bf16, void* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
          int ld, bool inverse, int sec);

// ---- layernorm.cu (with the column reductions) ----
// db[n] += sum over M rows (ld apart) of dy[m, n]: per-chunk partials, then a fixed-order sum.
void bias_grad(bool bf16, const void* dy, long ld, float* db, int M, int N, Scratch& scratch);
void layernorm_fwd(bool bf16, const void* x, const float* w, const float* b, void* y, float* mean,
                   float* rstd, int M, int D, float eps);
void layernorm_bwd(bool bf16, const void* dy, const void* x, const float* w, const float* mean,
                   const float* rstd, void* dx, float* dw, float* db, int M, int D,
                   Scratch& scratch);

// ---- tokens.cu ----
// x [B, C, H, W] <-> cols [B * (H/p) * (W/p), C p p].
void patch_im2col(bool bf16, const float* x, void* cols, int B, int C, int H, int W, int p);
void patch_col2im(bool bf16, const void* cols, float* x, int B, int C, int H, int W, int p);
void tokens_fwd(bool bf16, const void* extras, const void* patches, const float* pos, void* seq,
                int B, int E, int L, int D);
void tokens_bwd(bool bf16, const void* dseq, void* dextras, void* dpatches, float* dpos, int B,
                int E, int L, int D);
// freqs [D/2] fp32, computed on the host exactly as the CPU backend does.
void timestep_embedding(bool bf16, const float* t, const float* freqs, void* out, int B, int D,
                        int ldo);
// min(s t / (1 + (s - 1) t), 1) per element, rounded as the CPU's fp32 (no contraction).
void fit_time_shift(const float* t, float* out, int n, float s);
void embedding_fwd(bool bf16, const float* table, const int32_t* idx, void* out, int B, int D,
                   int ldo);
void embedding_bwd(bool bf16, const void* dout, const int32_t* idx, float* dtable, int B, int D,
                   int ldo);
void unpatchify_fwd(bool bf16, const void* tok, float* img, int B, int E, int C, int S, int p);
void unpatchify_bwd(bool bf16, const float* dimg, void* dtok, int B, int E, int C, int S, int p);

// ---- move_rows.cu: rows through int32 index lists (Backend::move_rows); bf16 picks the element
// type (bf16 or fp32) ----
void move_rows(bool bf16, void* dst, const int32_t* dst_idx, const void* src,
               const int32_t* src_idx, size_t n, size_t row_len, bool accumulate);

// ---- copy_3d.cu: blocks of strided rows (Backend::copy_3d; strides in elements); bf16 picks the
// element size ----
void copy_3d(bool bf16, void* dst, long ld_dst, long bs_dst, const void* src, long ld_src,
             long bs_src, size_t blocks, size_t rows, size_t cols);

// ---- conv_im2col.cu (act) ----
void conv3x3_im2col(bool bf16, const void* x, void* cols, int B, int C, int H, int W, int stride);
void conv3x3_col2im(bool bf16, const void* cols, void* x, int B, int C, int H, int W, int stride);

// ---- conv3x3.cu (fp32) ----
void conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Cout,
                 int H, int W);
void conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                 int B, int Cin, int Cout, int H, int W, Scratch& scratch);

// ---- optim.cu (fp32) ----
using uvit::AdamScalars;  // (backend/optim_scalars.hpp)
void adamw(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s);
using uvit::AdanScalars;
void adan(float* p, const float* g, float* m, float* d, float* n, float* gp, size_t count,
          const AdanScalars& s);
void ema(float* e, const float* p, size_t n, float decay, float keep);

// ---- convnet.cu (fp32; the inference-only encoders: autoencoder, FID Inception, CLIP) ----
// The columns of `images` images x [Cin, H, W] (s.in_stride() floats apart; s.B ignored) for conv
// geometry s: cols [images, Cin*kh*kw, Ho*Wo], row (c*kh + u)*kw + v, column i*Wo + j, value
// x[c, i*sh - pt + u, j*sw - pl + v] or 0 outside the image. The convolution of image n is then
// W [Cout, Cin*kh*kw] x cols[n].
void im2col(const float* x, float* cols, const Conv2dShape& s, int images);
void group_norm(const float* x, const float* w, const float* b, float* y, int B, int C, int HW,
                int G, float eps, bool swish);
void upsample_nearest2x(const float* x, float* y, int N, int H, int W);
// In place, per row of x [rows, cols]: x = softmax(x) (max-subtracted).
void softmax_rows(float* x, int rows, int cols);
// xs, ys (pool2d) and stride (channel_bias_act): floats between images, 0 for dense images.
void pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride, int pad,
            bool max, long xs = 0, long ys = 0);
void global_avg_pool(const float* x, float* y, int N, int HW);
void channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                      long stride = 0);
void resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh, int ow,
                     float scale, float shift, bool tf1);
void causal_attention(const float* qkv, float* out, int B, int N, int H, int Dh, float scale);

}  // namespace uvit::cuda
