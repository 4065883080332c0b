// Attention for the CUDA backend, two implementations:
// - unfused (fp32 and bf16, forward and backward): batched cuBLAS GEMMs over the (batch, head)
//   pairs of a chunk of batch elements, addressed in place in the [B, N, 3*H*Dh] / [B, N, H*Dh]
//   layouts through device pointer arrays (no permutes), plus row kernels for the softmax
//   (fp32 math) and the backward's P, Delta and dS. Scores live in a grow-only scratch buffer;
//   chunking bounds it (kScratchCap).
// - fused (bf16 forward, attention_fused.cu): one kernel on tensor cores, K/V streamed through
//   shared memory.
// - flash (bf16 forward, Dh <= 128, attention_flash.cu): FlashAttention-2-style mma.sync kernel.
// bf16 forwards use flash (default, or UVIT_ATTENTION=flash); UVIT_ATTENTION=wmma (alias fused)
// forces the fused kernel, UVIT_ATTENTION=unfused the unfused path. bf16 backwards with Dh <= 128
// use the flash backward (attention_flash_bwd.cu) unless UVIT_ATTENTION is unfused or wmma/fused.
// UVIT_ATTENTION=cudnn (opt-in, bf16 only) runs cuDNN's SDPA forward and backward
// (attention_cudnn.cpp); where cuDNN turns a call down, and in fp32, the flash path runs instead.
// Attention with an additive bias (MDT's relative position bias) always takes the unfused path:
// a kernel adds the bias to the fp32 scores, and the backward scatters dS into the table with
// fp32 atomics (so its last bits may differ run to run).
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>

#include "backend/attention_mode.hpp"
#include "backend/cuda/attention.hpp"
#include "backend/cuda/attention_cudnn.hpp"
#include "backend/cuda/attention_flash.hpp"
#include "backend/cuda/attention_fused.hpp"
#include "backend/cuda/cuda_common.hpp"
#include "uvit/error.hpp"

namespace uvit::cuda {

namespace {

constexpr size_t kScratchCap = size_t(512) << 20;  // scores of one chunk of batch elements
constexpr int kMaxPtrArrays = 11;

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("cuda attention: ", what, " failed: ", cublasGetStatusString(s), " (", int(s), ")");
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Pointer i = b*H + h of array j is base_j + b*sb_j + h*sh_j (bytes).
struct PtrSpec {
  const char* base;
  long long sb, sh;
};
struct PtrSpecs {
  PtrSpec s[kMaxPtrArrays];
  int count;
};

__global__ void fill_ptrs_kernel(PtrSpecs specs, const void** arrays, int BH, int H) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= BH) return;
  const long long b = i / H, h = i % H;
  for (int j = 0; j < specs.count; ++j)
    arrays[size_t(j) * BH + i] = specs.s[j].base + b * specs.s[j].sb + h * specs.s[j].sh;
}

// One warp per row of S (fp32, scale applied): P = softmax (act; may alias S in fp32 mode),
// lse = max + log(sum exp(s - max)).
template <class T>
__global__ void softmax_fwd_kernel(const float* S, T* P, float* lse, size_t rows, int N) {
  const int lane = threadIdx.x % 32;
  const size_t step = size_t(gridDim.x) * (blockDim.x / 32);
  for (size_t row = size_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; row < rows;
       row += step) {
    const float* s = S + row * N;
    float mx = -INFINITY;
    for (int j = lane; j < N; j += 32) mx = fmaxf(mx, s[j]);
    mx = warp_max(mx);
    float sum = 0.f;
    for (int j = lane; j < N; j += 32) sum += expf(s[j] - mx);
    sum = warp_sum(sum);
    const float inv = 1.f / sum;
    T* p = P + row * N;
    for (int j = lane; j < N; j += 32) p[j] = from_f<T>(expf(s[j] - mx) * inv);
    if (lse && lane == 0) lse[row] = mx + logf(sum);
  }
}

// S (scaled scores) becomes P = exp(S - lse) in place; bf16 mode also writes P as act.
template <class T>
__global__ void recompute_p_kernel(float* S, T* Pact, const float* lse, size_t total, int N) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const float p = expf(S[i] - lse[i / N]);
    S[i] = p;
    if constexpr (!std::is_same_v<T, float>) Pact[i] = from_f<T>(p);
  }
}

// Delta[(bb*H + h)*N + i] = sum_d dO[b, i, h*Dh + d] * O[b, i, h*Dh + d]; one warp per row.
template <class T>
__global__ void delta_kernel(const T* dout, const T* out, float* delta, size_t rows, int N, int H,
                             int Dh) {
  const int lane = threadIdx.x % 32;
  const size_t step = size_t(gridDim.x) * (blockDim.x / 32);
  for (size_t row = size_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; row < rows;
       row += step) {
    const size_t i = row % N, h = (row / N) % H, bb = row / (size_t(N) * H);
    const size_t off = (bb * N + i) * size_t(H) * Dh + h * Dh;
    float acc = 0.f;
    for (int d = lane; d < Dh; d += 32) acc += to_f(dout[off + d]) * to_f(out[off + d]);
    acc = warp_sum(acc);
    if (lane == 0) delta[row] = acc;
  }
}

// dS = P * (dP - Delta_row), written as act (may alias dP in fp32 mode).
template <class T>
__global__ void ds_kernel(const float* P, const float* dP, const float* delta, T* dS, size_t total,
                          int N) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x)
    dS[i] = from_f<T>(P[i] * (dP[i] - delta[i / N]));
}

// The bias of the scores of a chunk's BH = nb*H (batch, head) pairs from batch b0 (S [BH, N, N]
// fp32): S[bh, i, j] += table[index[pi * Lf + pj] * H + h], pi = ids[b, i] (i without ids).
__device__ inline size_t bias_slot(const AttentionContext::Bias& bs, size_t e, int b0, int H,
                                   int N) {
  const size_t j = e % N, i = (e / N) % N, bh = e / (size_t(N) * N);
  const size_t b = size_t(b0) + bh / H, h = bh % H;
  const size_t pi = bs.ids ? size_t(bs.ids[b * N + i]) : i;
  const size_t pj = bs.ids ? size_t(bs.ids[b * N + j]) : j;
  return size_t(bs.index[pi * bs.Lf + pj]) * H + h;
}

__global__ void bias_add_kernel(float* S, AttentionContext::Bias bs, int b0, int H, int N,
                                size_t total) {
  for (size_t e = blockIdx.x * size_t(blockDim.x) + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x)
    S[e] += bs.table[bias_slot(bs, e, b0, H, N)];
}

// dtable[slot] += dS = P * (dP - Delta_row).
__global__ void bias_grad_kernel(const float* P, const float* dP, const float* delta, float* dtable,
                                 AttentionContext::Bias bs, int b0, int H, int N, size_t total) {
  for (size_t e = blockIdx.x * size_t(blockDim.x) + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x)
    atomicAdd(dtable + bias_slot(bs, e, b0, H, N), P[e] * (dP[e] - delta[e / N]));
}

unsigned grid_1d(size_t total, int block) {
  const size_t g = (total + block - 1) / block;
  return unsigned(std::min<size_t>(std::max<size_t>(g, 1), 1u << 20));
}

size_t round_up(size_t n) { return (n + 255) / 256 * 256; }

class AttentionImpl final : public AttentionContext {
 public:
  AttentionImpl(cudaStream_t stream, bool bf16)
      : stream_(stream), bf16_(bf16), act_(bf16 ? CUDA_R_16BF : CUDA_R_32F), e_(bf16 ? 2 : 4) {
    switch (attention_mode()) {  // checked: a value outside the names is refused there
      case AttentionMode::Unfused:
        fused_ = flash_ = false;
        break;
      case AttentionMode::Fused:
        flash_ = false;
        break;
      case AttentionMode::Cudnn:
        use_cudnn();
        break;
      case AttentionMode::Auto:
      case AttentionMode::Flash:
        break;
    }
    check_blas(cublasCreate(&blas_), "cublasCreate");
    const cublasStatus_t s = cublasSetStream(blas_, stream_);
    if (s != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(blas_);
      check_blas(s, "cublasSetStream");
    }
  }

  size_t workspace_bytes() const override {
    return scratch_.bytes() + ptrs_.bytes() + delta_.bytes() +
           (cudnn_ ? cudnn_->workspace_bytes() : 0);
  }

  ~AttentionImpl() override {
    if (blas_) cublasDestroy(blas_);
  }

  void forward(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
               float scale) override {
    check_shape("attention_fwd", B, N, H, Dh);
    if (B == 0 || N == 0 || H == 0 || Dh == 0) return;
    if (cudnn_ && cudnn_->forward(qkv, out, lse, B, N, H, Dh, scale)) return;
    if (bf16_ && flash_ && flash_attention_supported(Dh)) {
      flash_attention_fwd_bf16(qkv, out, lse, B, N, H, Dh, scale, stream_);
      return;
    }
    if (bf16_ && fused_ && fused_attention_supported(Dh)) {
      fused_attention_fwd_bf16(qkv, out, lse, B, N, H, Dh, scale, stream_);
      return;
    }
    unfused_forward(qkv, out, lse, B, N, H, Dh, scale, nullptr);
  }

  void forward_bias(const void* qkv, const Bias& bias, void* out, float* lse, int B, int N, int H,
                    int Dh, float scale) override {
    check_shape("attention_bias_fwd", B, N, H, Dh);
    if (B == 0 || N == 0 || H == 0 || Dh == 0) return;
    unfused_forward(qkv, out, lse, B, N, H, Dh, scale, &bias);
  }

  void backward_bias(const void* dout, const void* qkv, const void* out, const float* lse,
                     const Bias& bias, void* dqkv, float* dtable, int B, int N, int H, int Dh,
                     float scale) override {
    check_shape("attention_bias_bwd", B, N, H, Dh);
    if (B == 0 || N == 0 || H == 0 || Dh == 0) return;
    UVIT_CHECK(lse != nullptr, "cuda attention_bias_bwd: lse is null (run the forward with lse)");
    unfused_backward(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale, &bias, dtable);
  }

  // The batched-GEMM path; with a bias, the bias kernels around the softmax.
  void unfused_forward(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                       float scale, const Bias* bias) {
    const int D = H * Dh;
    const size_t NN = size_t(N) * N;
    const size_t per_bh = NN * 4 + (bf16_ ? round_up(NN * e_) : 0);
    const int bc = chunk(B, H, per_bh);
    reserve(bc, H, N, false);
    const auto* qkv_c = static_cast<const char*>(qkv);
    for (int b0 = 0; b0 < B; b0 += bc) {
      const int nb = std::min(bc, B - b0), BH = nb * H;
      const char* q = qkv_c + size_t(b0) * N * 3 * D * e_;
      char* o = static_cast<char*>(out) + size_t(b0) * N * D * e_;
      char* S = static_cast<char*>(scratch_.get());
      char* P = bf16_ ? S + round_up(size_t(BH) * NN * 4) : S;
      const long long s3 = (long long)(N * 3 * D * e_), s1 = (long long)(N * D * e_);
      const long long hq = (long long)(Dh * e_);
      const void** arr = fill({{q, s3, hq},
                               {q + size_t(D) * e_, s3, hq},
                               {q + size_t(2) * D * e_, s3, hq},
                               {o, s1, hq},
                               {S, (long long)(H * NN * 4), (long long)(NN * 4)},
                               {P, (long long)(H * NN * e_), (long long)(NN * e_)}},
                              BH, H);
      const void **aQ = arr, **aK = arr + BH, **aV = arr + 2 * BH, **aO = arr + 3 * BH,
                 **aS = arr + 4 * BH, **aP = arr + 5 * BH;
      // S = scale Q K^T (fp32), P = softmax(S) (act), O = P V.
      bgemm(false, true, N, N, Dh, scale, aQ, act_, 3 * D, aK, act_, 3 * D, aS, CUDA_R_32F, N, BH);
      const size_t rows = size_t(BH) * N;
      if (bias) {
        bias_add_kernel<<<grid_1d(rows * N, 256), 256, 0, stream_>>>(reinterpret_cast<float*>(S),
                                                                     *bias, b0, H, N, rows * N);
        check_launch("bias_add_kernel");
      }
      float* l = lse ? lse + size_t(b0) * H * N : nullptr;
      if (bf16_)
        softmax_fwd_kernel<<<grid_1d(rows, 8), 256, 0, stream_>>>(
            reinterpret_cast<const float*>(S), reinterpret_cast<__nv_bfloat16*>(P), l, rows, N);
      else
        softmax_fwd_kernel<<<grid_1d(rows, 8), 256, 0, stream_>>>(
            reinterpret_cast<const float*>(S), reinterpret_cast<float*>(P), l, rows, N);
      check_launch("softmax_fwd_kernel");
      bgemm(false, false, N, Dh, N, 1.f, aP, act_, N, aV, act_, 3 * D, aO, act_, D, BH);
    }
  }

  void backward(const void* dout, const void* qkv, const void* out, const float* lse, void* dqkv,
                int B, int N, int H, int Dh, float scale) override {
    check_shape("attention_bwd", B, N, H, Dh);
    if (B == 0 || N == 0 || H == 0 || Dh == 0) return;
    UVIT_CHECK(lse != nullptr, "cuda attention_bwd: lse is null (run the forward with lse)");
    if (cudnn_ && cudnn_->backward(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale)) return;
    if (bf16_ && flash_ && flash_attention_supported(Dh)) {
      auto* delta = static_cast<float*>(delta_.reserve(flash_attention_bwd_scratch_bytes(B, N, H)));
      flash_attention_bwd_bf16(dout, qkv, out, lse, dqkv, delta, B, N, H, Dh, scale, stream_);
      return;
    }
    unfused_backward(dout, qkv, out, lse, dqkv, B, N, H, Dh, scale, nullptr, nullptr);
  }

  void unfused_backward(const void* dout, const void* qkv, const void* out, const float* lse,
                        void* dqkv, int B, int N, int H, int Dh, float scale, const Bias* bias,
                        float* dtable) {
    const int D = H * Dh;
    const size_t NN = size_t(N) * N;
    const size_t per_bh = 2 * NN * 4 + (bf16_ ? round_up(NN * e_) : 0) + size_t(N) * 4;
    const int bc = chunk(B, H, per_bh);
    reserve(bc, H, N, true);
    for (int b0 = 0; b0 < B; b0 += bc) {
      const int nb = std::min(bc, B - b0), BH = nb * H;
      const size_t off3 = size_t(b0) * N * 3 * D * e_, off1 = size_t(b0) * N * D * e_;
      const char* q = static_cast<const char*>(qkv) + off3;
      char* dq = static_cast<char*>(dqkv) + off3;
      const char* dO = static_cast<const char*>(dout) + off1;
      const char* o = static_cast<const char*>(out) + off1;
      char* S = static_cast<char*>(scratch_.get());
      char* dP = S + round_up(size_t(BH) * NN * 4);
      char* Pact = dP + round_up(size_t(BH) * NN * 4);  // bf16 only
      float* delta = reinterpret_cast<float*>(bf16_ ? Pact + round_up(size_t(BH) * NN * e_) : Pact);
      const long long s3 = (long long)(N * 3 * D * e_), s1 = (long long)(N * D * e_);
      const long long hq = (long long)(Dh * e_), sf = (long long)(H * NN * 4),
                      hf = (long long)(NN * 4);
      char* P = bf16_ ? Pact : S;    // P as act for the dV product
      char* dS = bf16_ ? Pact : dP;  // dS as act (replaces P / dP once they are used)
      const void** arr = fill({{q, s3, hq},
                               {q + size_t(D) * e_, s3, hq},
                               {q + size_t(2) * D * e_, s3, hq},
                               {dO, s1, hq},
                               {dq, s3, hq},
                               {dq + size_t(D) * e_, s3, hq},
                               {dq + size_t(2) * D * e_, s3, hq},
                               {S, sf, hf},
                               {dP, sf, hf},
                               {P, (long long)(H * NN * e_), (long long)(NN * e_)},
                               {dS, (long long)(H * NN * e_), (long long)(NN * e_)}},
                              BH, H);
      const void **aQ = arr, **aK = arr + BH, **aV = arr + 2 * BH, **adO = arr + 3 * BH,
                 **adQ = arr + 4 * BH, **adK = arr + 5 * BH, **adV = arr + 6 * BH,
                 **aS = arr + 7 * BH, **adP = arr + 8 * BH, **aP = arr + 9 * BH,
                 **adS = arr + 10 * BH;
      const size_t rows = size_t(BH) * N, total = rows * N;
      const float* l = lse + size_t(b0) * H * N;
      // P = exp(scale Q K^T - lse)
      bgemm(false, true, N, N, Dh, scale, aQ, act_, 3 * D, aK, act_, 3 * D, aS, CUDA_R_32F, N, BH);
      if (bias) {
        bias_add_kernel<<<grid_1d(total, 256), 256, 0, stream_>>>(reinterpret_cast<float*>(S),
                                                                  *bias, b0, H, N, total);
        check_launch("bias_add_kernel");
      }
      if (bf16_)
        recompute_p_kernel<<<grid_1d(total, 256), 256, 0, stream_>>>(
            reinterpret_cast<float*>(S), reinterpret_cast<__nv_bfloat16*>(Pact), l, total, N);
      else
        recompute_p_kernel<<<grid_1d(total, 256), 256, 0, stream_>>>(
            reinterpret_cast<float*>(S), reinterpret_cast<float*>(S), l, total, N);
      check_launch("recompute_p_kernel");
      // dV = P^T dO ; dP = dO V^T
      bgemm(true, false, N, Dh, N, 1.f, aP, act_, N, adO, act_, D, adV, act_, 3 * D, BH);
      bgemm(false, true, N, N, Dh, 1.f, adO, act_, D, aV, act_, 3 * D, adP, CUDA_R_32F, N, BH);
      // Delta = rowsum(dO * O) ; dS = P * (dP - Delta)
      attention_delta(bf16_, dO, o, delta, rows, N, H, Dh, stream_);
      if (bias && dtable) {  // before ds_kernel, which may overwrite dP
        bias_grad_kernel<<<grid_1d(total, 256), 256, 0, stream_>>>(
            reinterpret_cast<const float*>(S), reinterpret_cast<const float*>(dP), delta, dtable,
            *bias, b0, H, N, total);
        check_launch("bias_grad_kernel");
      }
      if (bf16_) {
        ds_kernel<<<grid_1d(total, 256), 256, 0, stream_>>>(
            reinterpret_cast<const float*>(S), reinterpret_cast<const float*>(dP), delta,
            reinterpret_cast<__nv_bfloat16*>(dS), total, N);
      } else {
        ds_kernel<<<grid_1d(total, 256), 256, 0, stream_>>>(
            reinterpret_cast<const float*>(S), reinterpret_cast<const float*>(dP), delta,
            reinterpret_cast<float*>(dS), total, N);
      }
      check_launch("ds_kernel");
      // dQ = scale dS K ; dK = scale dS^T Q
      bgemm(false, false, N, Dh, N, scale, adS, act_, N, aK, act_, 3 * D, adQ, act_, 3 * D, BH);
      bgemm(true, false, N, Dh, N, scale, adS, act_, N, aQ, act_, 3 * D, adK, act_, 3 * D, BH);
    }
  }

 private:
  static void check_shape(const char* what, int B, int N, int H, int Dh) {
    if (B < 0 || N < 0 || H < 0 || Dh < 0)
      fail("cuda ", what, ": negative shape B=", B, " N=", N, " H=", H, " Dh=", Dh);
  }

  // UVIT_ATTENTION=cudnn: cuDNN's SDPA in bf16; otherwise (fp32, or a build without cuDNN) the
  // default path, said once per process (the CLI makes fp32 backends for the encoders too).
  void use_cudnn() {
    if (!bf16_) {
      static std::atomic<bool> said{false};
      if (!said.exchange(true))
        std::fprintf(stderr,
                     "uvit cuda: UVIT_ATTENTION=cudnn needs bf16 precision; fp32 attention runs "
                     "ours\n");
      return;
    }
    cudnn_ = make_cudnn_attention(stream_);  // nullptr (said on stderr): ours
  }

  // Batch elements per chunk so that the chunk's scratch stays under kScratchCap.
  static int chunk(int B, int H, size_t per_bh) {
    const size_t per_b = per_bh * size_t(H);
    return int(std::max<size_t>(1, std::min<size_t>(B, kScratchCap / per_b)));
  }

  // Grow-only scratch for a chunk of bc batch elements (+ the pointer arrays).
  void reserve(int bc, int H, int N, bool bwd) {
    const size_t BH = size_t(bc) * H, NN = size_t(N) * N;
    size_t need = round_up(BH * NN * 4);            // S
    if (bwd) need += round_up(BH * NN * 4);         // dP
    if (bf16_) need += round_up(BH * NN * e_);      // P / dS as act
    if (bwd) need += round_up(BH * size_t(N) * 4);  // Delta
    scratch_.reserve(need);
    ptrs_.reserve(BH * kMaxPtrArrays * sizeof(void*));
  }

  const void** fill(std::initializer_list<PtrSpec> specs, int BH, int H) {
    PtrSpecs ps{};
    ps.count = int(specs.size());
    std::copy(specs.begin(), specs.end(), ps.s);
    auto** arr = static_cast<const void**>(ptrs_.get());
    fill_ptrs_kernel<<<grid_1d(size_t(BH), 128), 128, 0, stream_>>>(ps, arr, BH, H);
    check_launch("fill_ptrs_kernel");
    return arr;
  }

  // Row-major batched C_i[M,N] = alpha op(A_i) op(B_i) + 0 (column-major: C^T = op(B)^T op(A)^T).
  void bgemm(bool ta, bool tb, int M, int N, int K, float alpha, const void** A, cudaDataType at,
             int lda, const void** B, cudaDataType bt, int ldb, const void** C, cudaDataType ct,
             int ldc, int count) {
    const float beta = 0.f;
    check_blas(cublasGemmBatchedEx(blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   ta ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, bt, ldb, A,
                                   at, lda, &beta, const_cast<void* const*>(C), ct, ldc, count,
                                   CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmBatchedEx");
  }

  cudaStream_t stream_;
  bool bf16_;
  cudaDataType act_;
  size_t e_;
  bool fused_ = true;
  bool flash_ = true;                      // takes precedence over fused_
  std::unique_ptr<CudnnAttention> cudnn_;  // UVIT_ATTENTION=cudnn; precedes flash_
  cublasHandle_t blas_ = nullptr;
  GrowBuffer scratch_{"attention scratch"};
  GrowBuffer ptrs_{"attention pointer arrays"};
  GrowBuffer delta_{"flash backward scratch"};  // flash backward's Delta [B, H, N] fp32
};

}  // namespace

void AttentionContext::forward_bias(const void*, const Bias&, void*, float*, int, int, int, int,
                                    float) {
  fail("cuda attention: this attention context has no biased attention");
}
void AttentionContext::backward_bias(const void*, const void*, const void*, const float*,
                                     const Bias&, void*, float*, int, int, int, int, float) {
  fail("cuda attention: this attention context has no biased attention");
}

std::unique_ptr<AttentionContext> make_attention_context(cudaStream_t stream, bool bf16) {
  return std::make_unique<AttentionImpl>(stream, bf16);
}

void attention_delta(bool bf16, const void* dout, const void* out, float* delta, size_t rows, int N,
                     int H, int Dh, cudaStream_t stream) {
  if (rows == 0) return;
  if (bf16)
    delta_kernel<<<grid_1d(rows, 8), 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(dout),
                                                       static_cast<const __nv_bfloat16*>(out),
                                                       delta, rows, N, H, Dh);
  else
    delta_kernel<<<grid_1d(rows, 8), 256, 0, stream>>>(
        static_cast<const float*>(dout), static_cast<const float*>(out), delta, rows, N, H, Dh);
  check_launch("delta_kernel");
}

}  // namespace uvit::cuda
