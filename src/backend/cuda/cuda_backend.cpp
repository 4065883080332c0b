// CudaBackend: construction, memory, the act conversions and the forwarding of every kernel to the
// launchers in kernels.hpp (or to the GEMM / attention contexts).
#include "backend/cuda/cuda_backend.hpp"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "backend/cuda/cuda_common.hpp"
#include "uvit/error.hpp"

namespace uvit {

using cuda::check;

int cuda_device_count() {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(const std::string& precision) {
  return std::make_unique<CudaBackend>(precision);
}

CudaBackend::CudaBackend(const std::string& precision) {
  UVIT_CHECK(known_precision(precision), "cuda backend: unknown precision '", precision,
             "' (expected ", precision_choices(), ")");
  bf16_ = precision == "bf16";
  tf32_ = precision == "tf32";
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    fail("cuda backend: no usable CUDA device (cudaGetDeviceCount: ", cudaGetErrorString(e), ")");
  }
  UVIT_CHECK(n > 0, "cuda backend: no CUDA device is present");
  // The current device: 0 unless a data-parallel rank chose its own (docs/distributed.md).
  int device = 0;
  UVIT_CUDA_CHECK(cudaGetDevice(&device));
  UVIT_CUDA_CHECK(cudaSetDevice(device));
  cudaDeviceProp prop{};
  UVIT_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  // Dense bf16 tensor peak of the SXM Hopper parts (the MFU reference of issue 5); unknown else.
  const std::string dev = prop.name;
  if (dev.find("H100") != std::string::npos || dev.find("H200") != std::string::npos)
    peak_flops_ = 989e12;
  gemm_ = cuda::make_gemm_context(0, bf16_, tf32_);
  attn_ = cuda::make_attention_context(0, bf16_);
}

CudaBackend::~CudaBackend() {
  attn_.reset();
  gemm_.reset();
  if (scratch_) free_bytes(scratch_);
  if (freqs_) free_bytes(freqs_);
  if (ws_) free_bytes(ws_);
}

void CudaBackend::synchronize() {
  UVIT_CUDA_CHECK(cudaDeviceSynchronize());
  optimes_.synchronized();  // UVIT_CUDA_OPTIME: one interval ends here
}

// ---- memory ----

void* CudaBackend::alloc_bytes(size_t n) {
  void* p = nullptr;
  const cudaError_t e = cudaMalloc(&p, n ? n : 1);  // a unique pointer also for n == 0
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) (void)cudaGetLastError();
    if (e == cudaErrorMemoryAllocation)
      fail("out of memory: CUDA could not allocate ", n, " bytes (", free_b, " of ", total_b,
           " bytes free)");
    fail("CUDA: cudaMalloc of ", n, " bytes failed: ", cudaGetErrorString(e));
  }
  optimes_.count("cudaMalloc");
  sizes_[p] = n;
  live_ += n;
  peak_ = std::max(peak_, live_);
  return p;
}

size_t CudaBackend::peak_bytes() const {
  return peak_ + gemm_->workspace_bytes() + attn_->workspace_bytes() +
         (cudnn_ ? cudnn_->workspace_bytes() : 0);
}

void CudaBackend::free_bytes(void* p) {
  if (!p) return;
  optimes_.count("cudaFree");
  if (auto it = sizes_.find(p); it != sizes_.end()) {
    live_ -= it->second;
    sizes_.erase(it);
  }
  const cudaError_t e = cudaFree(p);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    std::fprintf(stderr, "uvit: warning: cudaFree failed: %s\n", cudaGetErrorString(e));
  }
}

void CudaBackend::upload(void* dst, const void* host, size_t bytes) {
  UVIT_OPTIME(optimes_, "upload bytes=", bytes);
  if (bytes) UVIT_CUDA_CHECK(cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice));
}

void CudaBackend::download(void* host, const void* src, size_t bytes) {
  UVIT_OPTIME(optimes_, "download bytes=", bytes);
  if (bytes) UVIT_CUDA_CHECK(cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
}

void CudaBackend::copy(float* dst, const float* src, size_t n) {
  UVIT_OPTIME(optimes_, "copy n=", n);
  if (n && dst != src)
    UVIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
}

void CudaBackend::fill(float* dst, float v, size_t n) {
  UVIT_OPTIME(optimes_, "fill n=", n);
  cuda::fill_f32(dst, v, n);
}
void CudaBackend::axpy(float* y, const float* x, float a, size_t n) {
  UVIT_OPTIME(optimes_, "axpy n=", n);
  cuda::axpy_f32(y, x, a, n);
}
void CudaBackend::scale(float* x, float a, size_t n) {
  UVIT_OPTIME(optimes_, "scale n=", n);
  cuda::scale_f32(x, a, n);
}
double CudaBackend::sum_squares(const float* x, size_t n) {
  UVIT_OPTIME(optimes_, "sum_squares n=", n);
  return cuda::sum_squares_f32(x, n, *this);
}

float* CudaBackend::get(size_t floats) {
  if (floats > scratch_floats_) {
    // cudaFree waits for the device, so kernels still reading the old buffer finish first.
    if (scratch_) free_bytes(scratch_);
    scratch_ = nullptr;
    scratch_floats_ = 0;
    const size_t want = std::max(floats, size_t{1} << 16);
    scratch_ = static_cast<float*>(alloc_bytes(want * sizeof(float)));
    scratch_floats_ = want;
  }
  return scratch_;
}

// ---- act precision ----

void CudaBackend::to_act(const float* src, float* dst_act, size_t n) {
  UVIT_OPTIME(optimes_, "to_act n=", n);
  cuda::to_act(bf16_, src, dst_act, n);
}
void CudaBackend::from_act(const float* src_act, float* dst, size_t n) {
  UVIT_OPTIME(optimes_, "from_act n=", n);
  cuda::from_act(bf16_, src_act, dst, n);
}
void CudaBackend::copy_act(float* dst, const float* src, size_t n) {
  UVIT_OPTIME(optimes_, "copy_act n=", n);
  if (n && dst != src)
    UVIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * act_bytes(), cudaMemcpyDeviceToDevice, 0));
}
void CudaBackend::zero_act(float* dst, size_t n) {
  UVIT_OPTIME(optimes_, "zero_act n=", n);
  if (n) UVIT_CUDA_CHECK(cudaMemsetAsync(dst, 0, n * act_bytes(), 0));
}
void CudaBackend::axpy_act(float* y, const float* x, float a, size_t n) {
  UVIT_OPTIME(optimes_, "axpy_act n=", n);
  cuda::axpy_act(bf16_, y, x, a, n);
}

// ---- dense ----

void CudaBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                       int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  UVIT_OPTIME(optimes_, "gemm ", trans_a ? "T" : "N", trans_b ? "T" : "N", " M=", M, " N=", N,
              " K=", K, beta != 0.f ? " +C" : "");
  gemm_->gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void CudaBackend::gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                             float* C, int ldc) {
  UVIT_OPTIME(optimes_, "gemm_wgrad M=", M, " N=", N, " K=", K);
  gemm_->gemm_wgrad(M, N, K, A, lda, B, ldb, C, ldc);
}
void CudaBackend::linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
                         const float* residual, float* y, int ldy, int M, int N, int K) {
  UVIT_OPTIME(optimes_, "linear M=", M, " N=", N, " K=", K, bias ? " +bias" : "",
              !residual       ? ""
              : residual == y ? " +=y"
                              : " +residual");
  gemm_->linear(x, ldx, w, ldw, bias, residual, y, ldy, M, N, K);
}
void CudaBackend::add_bias(float* y, const float* b, int M, int N) {
  UVIT_OPTIME(optimes_, "add_bias M=", M, " N=", N);
  cuda::add_bias(bf16_, y, b, M, N);
}
void CudaBackend::bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) {
  UVIT_CHECK(ld_dy >= N, "bias_grad_strided: row stride ", ld_dy, " < ", N, " features");
  UVIT_OPTIME(optimes_, "bias_grad M=", M, " N=", N, ld_dy != N ? cat(" ld=", ld_dy) : "");
  cuda::bias_grad(bf16_, dy, ld_dy, db, M, N, *this);
}

// ---- normalisation and activations ----

void CudaBackend::layernorm_fwd(const float* x, const float* w, const float* b, float* y,
                                float* mean, float* rstd, int M, int D, float eps) {
  UVIT_OPTIME(optimes_, "layernorm_fwd M=", M, " D=", D);
  cuda::layernorm_fwd(bf16_, x, w, b, y, mean, rstd, M, D, eps);
}
void CudaBackend::layernorm_bwd(const float* dy, const float* x, const float* w, const float* mean,
                                const float* rstd, float* dx, float* dw, float* db, int M, int D) {
  UVIT_OPTIME(optimes_, "layernorm_bwd M=", M, " D=", D);
  cuda::layernorm_bwd(bf16_, dy, x, w, mean, rstd, dx, dw, db, M, D, *this);
}
void CudaBackend::gelu_fwd(const float* x, float* y, size_t n) {
  UVIT_OPTIME(optimes_, "gelu_fwd n=", n);
  cuda::gelu_fwd(bf16_, x, y, n);
}
void CudaBackend::gelu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_OPTIME(optimes_, "gelu_bwd n=", n);
  cuda::gelu_bwd(bf16_, dy, x, dx, n);
}
void CudaBackend::silu_fwd(const float* x, float* y, size_t n) {
  UVIT_OPTIME(optimes_, "silu_fwd n=", n);
  cuda::silu_fwd(bf16_, x, y, n);
}
void CudaBackend::silu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_OPTIME(optimes_, "silu_bwd n=", n);
  cuda::silu_bwd(bf16_, dy, x, dx, n);
}
void CudaBackend::tanh_fwd(const float* x, float* y, size_t n) {
  UVIT_OPTIME(optimes_, "tanh_fwd n=", n);
  cuda::tanh_fwd(bf16_, x, y, n);
}
void CudaBackend::tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_OPTIME(optimes_, "tanh_bwd n=", n);
  cuda::tanh_bwd(bf16_, dy, x, dx, n);
}
void CudaBackend::gelu_tanh_fwd(const float* x, float* y, size_t n) {
  UVIT_OPTIME(optimes_, "gelu_tanh_fwd n=", n);
  cuda::gelu_tanh_fwd(bf16_, x, y, n);
}
void CudaBackend::gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_OPTIME(optimes_, "gelu_tanh_bwd n=", n);
  cuda::gelu_tanh_bwd(bf16_, dy, x, dx, n);
}
void CudaBackend::modulate_fwd(const float* x, const float* shift, const float* scale, int ldm,
                               float* y, int B, int N, int D) {
  UVIT_OPTIME(optimes_, "modulate_fwd B=", B, " N=", N, " D=", D);
  cuda::modulate_fwd(bf16_, x, shift, scale, ldm, y, B, N, D);
}
void CudaBackend::modulate_bwd(const float* dy, const float* x, const float* scale, int ldm,
                               float* dx, float* dshift, float* dscale, int B, int N, int D) {
  UVIT_OPTIME(optimes_, "modulate_bwd B=", B, " N=", N, " D=", D);
  cuda::modulate_bwd(bf16_, dy, x, scale, ldm, dx, dshift, dscale, B, N, D);
}
void CudaBackend::gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out,
                           int B, int N, int D) {
  UVIT_OPTIME(optimes_, "gate_fwd B=", B, " N=", N, " D=", D);
  cuda::gate_fwd(bf16_, x, y, gate, ldm, out, B, N, D);
}
void CudaBackend::gate_bwd(const float* dout, const float* y, const float* gate, int ldm, float* dy,
                           float* dgate, int B, int N, int D) {
  UVIT_OPTIME(optimes_, "gate_bwd B=", B, " N=", N, " D=", D);
  cuda::gate_bwd(bf16_, dout, y, gate, ldm, dy, dgate, B, N, D);
}
void CudaBackend::rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G,
                              int D, int ld, float eps) {
  UVIT_OPTIME(optimes_, "rmsnorm_fwd M=", M, " G=", G, " D=", D);
  cuda::rmsnorm_fwd(bf16_, x, w, y, rstd, M, G, D, ld, eps);
}
void CudaBackend::rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                              float* dx, float* dw, int M, int G, int D, int ld, bool accumulate) {
  UVIT_OPTIME(optimes_, "rmsnorm_bwd M=", M, " G=", G, " D=", D);
  cuda::rmsnorm_bwd(bf16_, dy, x, w, rstd, dx, dw, M, G, D, ld, accumulate, *this);
}
void CudaBackend::swiglu_fwd(const float* x12, float* y, int M, int H) {
  UVIT_OPTIME(optimes_, "swiglu_fwd M=", M, " H=", H);
  cuda::swiglu_fwd(bf16_, x12, y, M, H);
}
void CudaBackend::swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M,
                             int H) {
  UVIT_OPTIME(optimes_, "swiglu_bwd M=", M, " H=", H);
  cuda::swiglu_bwd(bf16_, dy, ldy, x12, dx12, M, H);
}
void CudaBackend::rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
                       int ld, bool inverse, int sec) {
  UVIT_OPTIME(optimes_, "rope B=", B, " N=", N, " G=", G, " Dh=", Dh);
  cuda::rope(bf16_, x, cos, sin, B, N, G, Dh, ld, inverse, sec);
}
void CudaBackend::copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                              long cols) {
  UVIT_OPTIME(optimes_, "copy_act_2d rows=", rows, " cols=", cols);
  const size_t e = act_bytes();
  if (rows && cols)
    UVIT_CUDA_CHECK(cudaMemcpy2DAsync(dst, ld_dst * e, src, ld_src * e, cols * e, rows,
                                      cudaMemcpyDeviceToDevice, 0));
}

// ---- attention ----

void CudaBackend::attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H,
                                int Dh, float scale) {
  UVIT_OPTIME(optimes_, "attention_fwd B=", B, " N=", N, " H=", H, " Dh=", Dh);
  attn_->forward(qkv, out, lse, B, N, H, Dh, scale);
}
void CudaBackend::attention_bwd(const float* dout, const float* qkv, const float* out,
                                const float* lse, float* dqkv, int B, int N, int H, int Dh,
                                float scale) {
  UVIT_OPTIME(optimes_, "attention_bwd B=", B, " N=", N, " H=", H, " Dh=", Dh);
  attn_->backward(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale);
}

void CudaBackend::attention_bias_fwd(const float* qkv, const AttnBias& bias, float* out, float* lse,
                                     int B, int N, int H, int Dh, float scale) {
  UVIT_OPTIME(optimes_, "attention_bias_fwd B=", B, " N=", N, " H=", H, " Dh=", Dh);
  attn_->forward_bias(qkv, {bias.table, bias.index, bias.ids, bias.R, bias.Lf}, out, lse, B, N, H,
                      Dh, scale);
}
void CudaBackend::attention_bias_bwd(const float* dout, const float* qkv, const float* out,
                                     const float* lse, const AttnBias& bias, float* dqkv,
                                     float* dtable, int B, int N, int H, int Dh, float scale) {
  UVIT_OPTIME(optimes_, "attention_bias_bwd B=", B, " N=", N, " H=", H, " Dh=", Dh);
  attn_->backward_bias(dout, qkv, out, lse, {bias.table, bias.index, bias.ids, bias.R, bias.Lf},
                       dqkv, dtable, B, N, H, Dh, scale);
}

// ---- tokens ----

void CudaBackend::patch_im2col(const float* x, float* cols, int B, int C, int S, int p, int W) {
  UVIT_OPTIME(optimes_, "patch_im2col B=", B, " C=", C, " S=", S, " p=", p, " W=", W);
  cuda::patch_im2col(bf16_, x, cols, B, C, S, W > 0 ? W : S, p);
}
void CudaBackend::patch_col2im(const float* cols, float* x, int B, int C, int S, int p, int W) {
  UVIT_OPTIME(optimes_, "patch_col2im B=", B, " C=", C, " S=", S, " p=", p, " W=", W);
  cuda::patch_col2im(bf16_, cols, x, B, C, S, W > 0 ? W : S, p);
}
void CudaBackend::tokens_fwd(const float* extras, const float* patches, const float* pos,
                             float* seq, int B, int E, int L, int D) {
  UVIT_OPTIME(optimes_, "tokens_fwd B=", B, " E=", E, " L=", L, " D=", D);
  cuda::tokens_fwd(bf16_, extras, patches, pos, seq, B, E, L, D);
}
void CudaBackend::tokens_bwd(const float* dseq, float* dextras, float* dpatches, float* dpos, int B,
                             int E, int L, int D) {
  UVIT_OPTIME(optimes_, "tokens_bwd B=", B, " E=", E, " L=", L, " D=", D);
  cuda::tokens_bwd(bf16_, dseq, dextras, dpatches, dpos, B, E, L, D);
}

// The frequencies come from the host with the CPU backend's exact fp32 expression (the device's
// expf may differ from glibc's in the last bit), uploaded once per embedding width.
const float* CudaBackend::timestep_freqs(int half) {
  if (half == freqs_half_) return freqs_;
  if (freqs_) free_bytes(freqs_);
  freqs_ = nullptr;
  freqs_half_ = -1;
  std::vector<float> f(std::max(half, 1));
  const float c = static_cast<float>(-std::log(10000.0));
  for (int i = 0; i < half; ++i)
    f[i] = std::exp(c * static_cast<float>(i) / static_cast<float>(half));
  freqs_ = static_cast<float*>(alloc_bytes(f.size() * sizeof(float)));
  upload(freqs_, f.data(), f.size() * sizeof(float));
  freqs_half_ = half;
  return freqs_;
}

void CudaBackend::fit_time_shift(const float* t, float* out, int n, float s) {
  UVIT_OPTIME(optimes_, "fit_time_shift n=", n);
  cuda::fit_time_shift(t, out, n, s);
}
void CudaBackend::timestep_embedding(const float* t, float* out, int B, int D, int ldo) {
  UVIT_OPTIME(optimes_, "timestep_embedding B=", B, " D=", D);
  if (B <= 0 || D <= 0) return;
  cuda::timestep_embedding(bf16_, t, timestep_freqs(D / 2), out, B, D, ldo);
}
void CudaBackend::embedding_fwd(const float* table, const int32_t* idx, float* out, int B, int D,
                                int ldo) {
  UVIT_OPTIME(optimes_, "embedding_fwd B=", B, " D=", D);
  cuda::embedding_fwd(bf16_, table, idx, out, B, D, ldo);
}
void CudaBackend::embedding_bwd(const float* dout, const int32_t* idx, float* dtable, int B, int D,
                                int ldo) {
  UVIT_OPTIME(optimes_, "embedding_bwd B=", B, " D=", D);
  cuda::embedding_bwd(bf16_, dout, idx, dtable, B, D, ldo);
}
void CudaBackend::unpatchify_fwd(const float* tok, float* img, int B, int E, int C, int S, int p) {
  UVIT_OPTIME(optimes_, "unpatchify_fwd B=", B, " C=", C, " S=", S, " p=", p);
  cuda::unpatchify_fwd(bf16_, tok, img, B, E, C, S, p);
}
void CudaBackend::unpatchify_bwd(const float* dimg, float* dtok, int B, int E, int C, int S,
                                 int p) {
  UVIT_OPTIME(optimes_, "unpatchify_bwd B=", B, " C=", C, " S=", S, " p=", p);
  cuda::unpatchify_bwd(bf16_, dimg, dtok, B, E, C, S, p);
}
void CudaBackend::conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W,
                                 int stride) {
  UVIT_OPTIME(optimes_, "conv3x3_im2col B=", B, " C=", C, " ", H, "x", W, " stride=", stride);
  cuda::conv3x3_im2col(bf16_, x, cols, B, C, H, W, stride);
}
void CudaBackend::conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W,
                                 int stride) {
  UVIT_OPTIME(optimes_, "conv3x3_col2im B=", B, " C=", C, " ", H, "x", W, " stride=", stride);
  cuda::conv3x3_col2im(bf16_, cols, x, B, C, H, W, stride);
}
void CudaBackend::conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B,
                              int Cin, int Cout, int H, int W) {
  UVIT_OPTIME(optimes_, "conv3x3_fwd B=", B, " ", Cin, "->", Cout, " ", H, "x", W);
  cuda::conv3x3_fwd(x, w, b, y, B, Cin, Cout, H, W);
}
void CudaBackend::conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw,
                              float* db, int B, int Cin, int Cout, int H, int W) {
  UVIT_OPTIME(optimes_, "conv3x3_bwd B=", B, " ", Cin, "->", Cout, " ", H, "x", W);
  cuda::conv3x3_bwd(dy, x, w, dx, dw, db, B, Cin, Cout, H, W, *this);
}

// ---- optimisation ----

void CudaBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                        float beta1, float beta2, float eps, float weight_decay, long step) {
  UVIT_OPTIME(optimes_, "adamw n=", n);
  const AdamScalars s = adam_scalars(lr, beta1, beta2, eps, weight_decay, step);
  cuda::adamw(p, g, m, v, n, s);
}

void CudaBackend::adan(float* p, const float* g, float* m, float* d, float* n, float* gp,
                       size_t count, const AdanHyper& h, long step) {
  UVIT_OPTIME(optimes_, "adan n=", count);
  cuda::adan(p, g, m, d, n, gp, count, adan_scalars(h, step));
}

void CudaBackend::ema(float* e, const float* p, size_t n, float decay) {
  UVIT_OPTIME(optimes_, "ema n=", n);
  cuda::ema(e, p, n, decay, ema_keep(decay));
}

}  // namespace uvit
