// The compute backend: every kernel the networks, samplers and trainer need, behind one interface,
// so the model code is written once and runs on the CPU or (later) CUDA unchanged.
//
// Conventions
// - All pointers are backend memory (host memory for the CPU backend). Float tensors are fp32,
//   row-major, contiguous unless a leading dimension (ld*) is given.
// - Activation layout is [B, N, D] (tokens of a batch element contiguous). Linear weights are
//   [out, in] as in PyTorch; y = x W^T + b.
// - Backward kernels ACCUMULATE (+=) into parameter gradients (dw, db, dtable, dpos).
//   Input gradients are overwritten unless the kernel says "+=".
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace uvit {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // ---- memory ----
  virtual void* alloc_bytes(size_t n) = 0;  // throws uvit::Error "out of memory: ..." on failure
  virtual void free_bytes(void* p) = 0;
  float* alloc(size_t n) { return static_cast<float*>(alloc_bytes(n * sizeof(float))); }
  virtual void upload(void* dst, const void* host, size_t bytes) = 0;
  virtual void download(void* host, const void* src, size_t bytes) = 0;
  virtual void copy(float* dst, const float* src, size_t n) = 0;
  virtual void fill(float* dst, float v, size_t n) = 0;
  virtual void axpy(float* y, const float* x, float a, size_t n) = 0;  // y += a*x
  virtual void scale(float* x, float a, size_t n) = 0;                 // x *= a
  virtual double sum_squares(const float* x, size_t n) = 0;

  // ---- dense ----
  // Row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C.
  // op(A) = A ([M,K], lda) or A^T (A stored [K,M], lda); likewise B.
  virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc) = 0;
  virtual void add_bias(float* y, const float* b, int M, int N) = 0;     // y[m,n] += b[n]
  virtual void bias_grad(const float* dy, float* db, int M, int N) = 0;  // db[n] += sum_m dy[m,n]

  // ---- normalisation and activations ----
  // y = (x - mean) * rstd * w + b per row of length D; mean/rstd [M] are saved for backward
  // (either may be nullptr for inference).
  virtual void layernorm_fwd(const float* x, const float* w, const float* b, float* y, float* mean,
                             float* rstd, int M, int D, float eps) = 0;
  // dx += grad wrt x (residual-friendly), dw += , db +=.
  virtual void layernorm_bwd(const float* dy, const float* x, const float* w, const float* mean,
                             const float* rstd, float* dx, float* dw, float* db, int M, int D) = 0;
  virtual void gelu_fwd(const float* x, float* y, size_t n) = 0;  // exact erf GELU
  virtual void gelu_bwd(const float* dy, const float* x, float* dx,
                        size_t n) = 0;  // dx may alias dy
  virtual void silu_fwd(const float* x, float* y, size_t n) = 0;
  virtual void silu_bwd(const float* dy, const float* x, float* dx, size_t n) = 0;

  // ---- attention ----
  // qkv [B, N, 3*H*Dh] with feature f = k*H*Dh + h*Dh + d (k = 0 q, 1 k, 2 v);
  // out [B, N, H*Dh] (head h at h*Dh); lse [B, H, N] = logsumexp of the scaled scores per query
  // (saved for backward; nullptr for inference). No mask, no dropout.
  virtual void attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H, int Dh,
                             float scale) = 0;
  // dqkv [B, N, 3*H*Dh] is overwritten.
  virtual void attention_bwd(const float* dout, const float* qkv, const float* out,
                             const float* lse, float* dqkv, int B, int N, int H, int Dh,
                             float scale) = 0;

  // ---- tokens ----
  // x [B, C, S, S] -> cols [B*L, C*p*p], row = b*L + i*(S/p) + j, col = (c*p + u)*p + v
  // (the flattened Conv2d weight [D, C, p, p]); the patch conv is then a GEMM.
  virtual void patch_im2col(const float* x, float* cols, int B, int C, int S, int p) = 0;
  virtual void patch_col2im(const float* cols, float* x, int B, int C, int S,
                            int p) = 0;  // overwrite
  // seq[b, e] = extras[b, e] + pos[e] for e < E; seq[b, E + l] = patches[b, l] + pos[E + l].
  virtual void tokens_fwd(const float* extras, const float* patches, const float* pos, float* seq,
                          int B, int E, int L, int D) = 0;
  // dextras, dpatches overwritten (dextras may be nullptr); dpos +=.
  virtual void tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos, int B,
                          int E, int L, int D) = 0;
  // out[b*ldo + i] = cos(t_b * f_i), out[b*ldo + half + i] = sin(t_b * f_i),
  // f_i = exp(-ln(10000) i / half) computed in fp32; a zero column last when D is odd.
  virtual void timestep_embedding(const float* t, float* out, int B, int D, int ldo) = 0;
  // out[b*ldo + :] = table[idx[b], :]; idx is int32 backend memory, checked < rows by the caller.
  virtual void embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                             int ldo) = 0;
  virtual void embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B, int D,
                             int ldo) = 0;  // dtable +=
  // tok [B, E+L, p*p*C] (the first E tokens skipped) -> img [B, C, S, S]; feature (u*p + v)*C + c
  // of token (i, j) goes to pixel [c, i*p + u, j*p + v].
  virtual void unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S, int p) = 0;
  // dtok [B, E+L, p*p*C] overwritten, its first E token rows set to zero.
  virtual void unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S,
                              int p) = 0;
  // 3x3 convolution, padding 1, stride 1: x [B, Cin, H, W], w [Cout, Cin, 3, 3], b [Cout].
  virtual void conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B, int Cin,
                           int Cout, int H, int W) = 0;
  // dx overwritten (may be nullptr), dw +=, db +=.
  virtual void conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw,
                           float* db, int B, int Cin, int Cout, int H, int W) = 0;

  // ---- optimisation ----
  // PyTorch AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  // p -= lr * (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps).  step counts from 1.
  virtual void adamw(float* p, const float* g, float* m, float* v, size_t n, float lr, float beta1,
                     float beta2, float eps, float weight_decay, long step) = 0;
  // e = decay * e + (1 - decay) * p
  virtual void ema(float* e, const float* p, size_t n, float decay) = 0;
};

std::unique_ptr<Backend> make_cpu_backend();
// "cpu" or "cuda"; throws uvit::Error when the backend is not compiled in or no device is present.
std::unique_ptr<Backend> make_backend(const std::string& name);

}  // namespace uvit
