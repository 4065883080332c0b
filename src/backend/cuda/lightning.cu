// LightningDiT's kernels on the GPU (docs/lightningdit.md): RMSNorm over groups of features, SwiGLU
// and the 2-D RoPE, with the semantics of the CPU backend (src/backend/cpu/lightning.cpp).
// RMSNorm runs one warp per group; its weight gradient is a two-pass column reduction (per chunk of
// rows, then the chunks in order), so results are reproducible run to run.
#include <algorithm>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {
constexpr unsigned kThreads = 256;
constexpr int kWarps = 8;            // groups (warps) per RMSNorm block
constexpr long kRowsPerChunk = 256;  // rows per partial sum of the weight gradient (at least)
constexpr long kMaxChunks = 65535;   // gridDim.y

__device__ __forceinline__ size_t group_offset(long r, int G, int D, int ld) {
  return size_t(r / G) * ld + size_t(r % G) * D;
}

template <class T>
__global__ void rms_fwd_kernel(const T* x, const float* w, T* y, float* rstd, long rows, int G,
                               int D, int ld, float eps) {
  const int lane = threadIdx.x & 31;
  const long r = long(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const size_t off = group_offset(r, G, D, ld);
  float s = 0.f;
  for (int d = lane; d < D; d += 32) {
    const float v = to_f(x[off + d]);
    s += v * v;
  }
  const float rs = rsqrtf(warp_sum(s) / D + eps);
  for (int d = lane; d < D; d += 32) y[off + d] = from_f<T>(to_f(x[off + d]) * rs * w[d]);
  if (lane == 0 && rstd) rstd[r] = rs;
}

template <class T>
__global__ void rms_bwd_dx_kernel(const T* dy, const T* x, const float* w, const float* rstd, T* dx,
                                  long rows, int G, int D, int ld, bool accumulate) {
  const int lane = threadIdx.x & 31;
  const long r = long(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const size_t off = group_offset(r, G, D, ld);
  const float rs = rstd[r];
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += to_f(dy[off + d]) * w[d] * to_f(x[off + d]) * rs;
  const float mgx = warp_sum(s) / D;
  // Each lane reads an element's dy and x before writing its dx, so dx may alias dy.
  for (int d = lane; d < D; d += 32) {
    const float xv = to_f(x[off + d]);
    float v = rs * (to_f(dy[off + d]) * w[d] - xv * rs * mgx);
    if (accumulate) v += to_f(dx[off + d]);
    dx[off + d] = from_f<T>(v);
  }
}

// part[chunk * D + d] = sum over the chunk's groups of dy * x * rstd at feature d.
template <class T>
__global__ void rms_dw_partial_kernel(const T* dy, const T* x, const float* rstd, float* part,
                                      long rows, int G, int D, int ld, long per_chunk) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= D) return;
  const long r0 = long(blockIdx.y) * per_chunk;
  const long r1 = min(rows, r0 + per_chunk);
  float s = 0.f;
  for (long r = r0; r < r1; ++r) {
    const size_t i = group_offset(r, G, D, ld) + d;
    s += to_f(dy[i]) * to_f(x[i]) * rstd[r];
  }
  part[size_t(blockIdx.y) * D + d] = s;
}

__global__ void rms_dw_sum_kernel(const float* part, float* dw, int chunks, int D) {
  const int d = blockIdx.x * blockDim.x + threadIdx.x;
  if (d >= D) return;
  float s = 0.f;
  for (int c = 0; c < chunks; ++c) s += part[size_t(c) * D + d];
  dw[d] += s;
}

template <class T>
__global__ void swiglu_fwd_kernel(const T* x12, T* y, int H, size_t n) {
  UVIT_GRID_STRIDE(i, n) {
    const size_t m = i / H, j = i % H;
    const float a = to_f(x12[m * 2 * H + j]), b = to_f(x12[m * 2 * H + H + j]);
    y[i] = from_f<T>(a / (1.f + __expf(-a)) * b);
  }
}

template <class T>
__global__ void swiglu_bwd_kernel(const T* dy, int ldy, const T* x12, T* dx12, int H, size_t n) {
  UVIT_GRID_STRIDE(i, n) {
    const size_t m = i / H, j = i % H;
    const float a = to_f(x12[m * 2 * H + j]), b = to_f(x12[m * 2 * H + H + j]);
    const float g = to_f(dy[m * ldy + j]);
    const float s = 1.f / (1.f + __expf(-a));
    dx12[m * 2 * H + j] = from_f<T>(g * b * s * (1.f + a * (1.f - s)));
    dx12[m * 2 * H + H + j] = from_f<T>(g * a * s);
  }
}

template <class T>
__global__ void rope_kernel(T* x, const float* cos, const float* sin, int N, int G, int Dh, int ld,
                            bool inverse, int sec, size_t n) {
  const int P = Dh / 2, half = sec / 2;
  UVIT_GRID_STRIDE(i, n) {
    const size_t row = i / (size_t(G) * P);
    const int g = int(i / P % G), p = int(i % P);
    const int ka = p / half * sec + p % half, kb = ka + half;
    const float* c = cos + size_t(row % N) * Dh;
    const float* s = sin + size_t(row % N) * Dh;
    T* v = x + row * ld + size_t(g) * Dh;
    const float a = to_f(v[ka]), b = to_f(v[kb]);
    if (!inverse) {
      v[ka] = from_f<T>(a * c[ka] - b * s[ka]);
      v[kb] = from_f<T>(b * c[kb] + a * s[kb]);
    } else {
      v[ka] = from_f<T>(a * c[ka] + b * s[kb]);
      v[kb] = from_f<T>(b * c[kb] - a * s[ka]);
    }
  }
}
}  // namespace

void rmsnorm_fwd(bool bf16, const void* x, const float* w, void* y, float* rstd, int M, int G,
                 int D, int ld, float eps) {
  const long rows = long(M) * G;
  if (!rows) return;
  const unsigned blocks = unsigned((rows + kWarps - 1) / kWarps);
  UVIT_ACT_DISPATCH(
      bf16, T,
      rms_fwd_kernel<<<blocks, kWarps * 32>>>(as<T>(x), w, as<T>(y), rstd, rows, G, D, ld, eps));
  check_launch("rms_fwd_kernel");
}

void rmsnorm_bwd(bool bf16, const void* dy, const void* x, const float* w, const float* rstd,
                 void* dx, float* dw, int M, int G, int D, int ld, bool accumulate,
                 Scratch& scratch) {
  const long rows = long(M) * G;
  if (!rows) return;
  // The weight gradient first: dx may alias dy.
  const long per_chunk = std::max(kRowsPerChunk, (rows + kMaxChunks - 1) / kMaxChunks);
  const int chunks = int((rows + per_chunk - 1) / per_chunk);
  float* part = scratch.get(size_t(chunks) * D);
  const dim3 pgrid((D + kThreads - 1) / kThreads, chunks);
  UVIT_ACT_DISPATCH(bf16, T,
                    rms_dw_partial_kernel<<<pgrid, kThreads>>>(as<T>(dy), as<T>(x), rstd, part,
                                                               rows, G, D, ld, per_chunk));
  check_launch("rms_dw_partial_kernel");
  rms_dw_sum_kernel<<<(D + kThreads - 1) / kThreads, kThreads>>>(part, dw, chunks, D);
  check_launch("rms_dw_sum_kernel");
  const unsigned blocks = unsigned((rows + kWarps - 1) / kWarps);
  UVIT_ACT_DISPATCH(bf16, T,
                    rms_bwd_dx_kernel<<<blocks, kWarps * 32>>>(
                        as<T>(dy), as<T>(x), w, rstd, as<T>(dx), rows, G, D, ld, accumulate));
  check_launch("rms_bwd_dx_kernel");
}

void swiglu_fwd(bool bf16, const void* x12, void* y, int M, int H) {
  const size_t n = size_t(M) * H;
  if (!n) return;
  UVIT_ACT_DISPATCH(
      bf16, T, swiglu_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(x12), as<T>(y), H, n));
  check_launch("swiglu_fwd_kernel");
}

void swiglu_bwd(bool bf16, const void* dy, int ldy, const void* x12, void* dx12, int M, int H) {
  const size_t n = size_t(M) * H;
  if (!n) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    swiglu_bwd_kernel<<<grid_for(n, kThreads), kThreads>>>(
                        as<T>(dy), ldy, as<T>(x12), as<T>(dx12), H, n));
  check_launch("swiglu_bwd_kernel");
}

void rope(bool bf16, void* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
          int ld, bool inverse, int sec) {
  const size_t n = size_t(B) * N * G * (Dh / 2);
  if (!n) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    rope_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(x), cos, sin, N, G, Dh,
                                                                     ld, inverse, sec, n));
  check_launch("rope_kernel");
}

}  // namespace uvit::cuda
