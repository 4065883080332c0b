// LayerNorm forward/backward and the deterministic column reductions (bias_grad, LayerNorm dw/db).
//
// LayerNorm: one warp per row, the row held in registers (up to 1536 elements per row; longer rows
// take a slower kernel that re-reads global memory). Statistics in fp32, two passes over the
// registers (no E[x^2] - E[x]^2 cancellation).
//
// Column reductions: blocks of 32 x 8 threads; a block owns 32*VC columns of one chunk of rows
// and writes one fp32 partial per column; a second kernel adds the chunks' partials in a fixed
// order into the fp32 gradient (+=). No atomics, so the result is reproducible run to run.
#include <algorithm>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr int kMaxRegD = 1536;    // longest row held in registers (32 lanes x 48)
constexpr int kRowsPerBlock = 4;  // warps (rows) per LayerNorm block

// The row's packs owned by this lane: pack k*32 + lane, VC elements each.
template <int VC>
struct RowRegs {
  static constexpr int NP = kMaxRegD / 32 / VC;
};

// WP: w and b are aligned for pack loads too (else per-element loads, which gather across lanes).
template <class T, int VC, bool WP>
__global__ void ln_fwd_reg_kernel(const T* __restrict__ x, const float* __restrict__ w,
                                  const float* __restrict__ b, T* __restrict__ y, float* mean,
                                  float* rstd, int M, int D, float eps) {
  constexpr int NP = RowRegs<VC>::NP;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= M) return;
  const T* xr = x + size_t(row) * D;
  const int npk = D / VC;
  float v[NP][VC];
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < NP; ++k) {
    const int p = k * 32 + lane;
    if (p < npk) {
      load_pack<VC>(xr + p * VC, v[k]);
#pragma unroll
      for (int j = 0; j < VC; ++j) s += v[k][j];
    }
  }
  const float mu = warp_sum(s) / D;
  float q = 0.f;
#pragma unroll
  for (int k = 0; k < NP; ++k) {
    if (k * 32 + lane < npk) {
#pragma unroll
      for (int j = 0; j < VC; ++j) {
        const float c = v[k][j] - mu;
        q += c * c;
      }
    }
  }
  const float rs = 1.f / sqrtf(warp_sum(q) / D + eps);
  T* yr = y + size_t(row) * D;
#pragma unroll
  for (int k = 0; k < NP; ++k) {
    const int p = k * 32 + lane;
    if (p < npk) {
      float o[VC], wv[VC], bv[VC];
      if constexpr (WP) {
        load_pack<VC>(w + p * VC, wv);
        load_pack<VC>(b + p * VC, bv);
      } else {
#pragma unroll
        for (int j = 0; j < VC; ++j) wv[j] = __ldg(w + p * VC + j), bv[j] = __ldg(b + p * VC + j);
      }
#pragma unroll
      for (int j = 0; j < VC; ++j) o[j] = (v[k][j] - mu) * rs * wv[j] + bv[j];
      store_pack<VC>(yr + p * VC, o);
    }
  }
  if (lane == 0) {
    if (mean) mean[row] = mu;
    if (rstd) rstd[row] = rs;
  }
}

// Rows longer than kMaxRegD: the same math, re-reading the row from global memory.
template <class T>
__global__ void ln_fwd_long_kernel(const T* x, const float* w, const float* b, T* y, float* mean,
                                   float* rstd, int M, int D, float eps) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= M) return;
  const T* xr = x + size_t(row) * D;
  float s = 0.f;
  for (int d = lane; d < D; d += 32) s += to_f(xr[d]);
  const float mu = warp_sum(s) / D;
  float q = 0.f;
  for (int d = lane; d < D; d += 32) {
    const float c = to_f(xr[d]) - mu;
    q += c * c;
  }
  const float rs = 1.f / sqrtf(warp_sum(q) / D + eps);
  T* yr = y + size_t(row) * D;
  for (int d = lane; d < D; d += 32) yr[d] = from_f<T>((to_f(xr[d]) - mu) * rs * w[d] + b[d]);
  if (lane == 0) {
    if (mean) mean[row] = mu;
    if (rstd) rstd[row] = rs;
  }
}

// dx += rstd * (g w - mean(g w) - xhat * mean(g w xhat)), g = dy; one warp per row.
template <class T, int VC, bool WP>
__global__ void ln_bwd_dx_reg_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                     const float* __restrict__ w, const float* __restrict__ mean,
                                     const float* __restrict__ rstd, T* dx, int M, int D) {
  constexpr int NP = RowRegs<VC>::NP;
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= M) return;
  const size_t off = size_t(row) * D;
  const int npk = D / VC;
  const float mu = mean[row], rs = rstd[row];
  float gw[NP][VC], xh[NP][VC];
  float sg = 0.f, sgx = 0.f;
#pragma unroll
  for (int k = 0; k < NP; ++k) {
    const int p = k * 32 + lane;
    if (p < npk) {
      load_pack<VC>(dy + off + p * VC, gw[k]);
      load_pack<VC>(x + off + p * VC, xh[k]);
      float wv[VC];
      if constexpr (WP) {
        load_pack<VC>(w + p * VC, wv);
      } else {
#pragma unroll
        for (int j = 0; j < VC; ++j) wv[j] = __ldg(w + p * VC + j);
      }
#pragma unroll
      for (int j = 0; j < VC; ++j) {
        xh[k][j] = (xh[k][j] - mu) * rs;
        gw[k][j] *= wv[j];
        sg += gw[k][j];
        sgx += gw[k][j] * xh[k][j];
      }
    }
  }
  const float mg = warp_sum(sg) / D, mgx = warp_sum(sgx) / D;
#pragma unroll
  for (int k = 0; k < NP; ++k) {
    const int p = k * 32 + lane;
    if (p < npk) {
      float o[VC];
      load_pack<VC>(dx + off + p * VC, o);
#pragma unroll
      for (int j = 0; j < VC; ++j) o[j] += rs * (gw[k][j] - mg - xh[k][j] * mgx);
      store_pack<VC>(dx + off + p * VC, o);
    }
  }
}

template <class T>
__global__ void ln_bwd_dx_long_kernel(const T* dy, const T* x, const float* w, const float* mean,
                                      const float* rstd, T* dx, int M, int D) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kRowsPerBlock + (threadIdx.x >> 5);
  if (row >= M) return;
  const size_t off = size_t(row) * D;
  const float mu = mean[row], rs = rstd[row];
  float sg = 0.f, sgx = 0.f;
  for (int d = lane; d < D; d += 32) {
    const float g = to_f(dy[off + d]) * w[d];
    sg += g;
    sgx += g * ((to_f(x[off + d]) - mu) * rs);
  }
  const float mg = warp_sum(sg) / D, mgx = warp_sum(sgx) / D;
  for (int d = lane; d < D; d += 32) {
    const float g = to_f(dy[off + d]) * w[d];
    const float xh = (to_f(x[off + d]) - mu) * rs;
    dx[off + d] = from_f<T>(to_f(dx[off + d]) + rs * (g - mg - xh * mgx));
  }
}

// ---- column reductions ----
constexpr int kColY = 8;  // rows in flight per block (threadIdx.y)

// part[chunk][c] = sum over the chunk's rows of dy[r, c]   (LN: times xhat[r, c]); dy's rows are
// ld apart (bias_grad of a wider tensor's first N features), x's N apart.
// LN also writes part[gridDim.y + chunk][c] = sum of dy[r, c] (the bias gradient).
template <class T, int VC, bool LN>
__global__ void colsum_partial_kernel(const T* __restrict__ dy, const T* __restrict__ x,
                                      const float* __restrict__ mean,
                                      const float* __restrict__ rstd, float* __restrict__ part,
                                      int M, int N, long ld, int rows_per_chunk) {
  __shared__ float sa[kColY][32 * VC];
  __shared__ float sb[LN ? kColY : 1][LN ? 32 * VC : 1];
  const int c0 = (blockIdx.x * 32 + threadIdx.x) * VC;
  const bool active = c0 < N;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(M, r0 + rows_per_chunk);
  float a[VC], bs[VC];
#pragma unroll
  for (int j = 0; j < VC; ++j) a[j] = bs[j] = 0.f;
  if (active) {
    for (int r = r0 + threadIdx.y; r < r1; r += kColY) {
      float g[VC];
      load_pack<VC>(dy + size_t(r) * ld + c0, g);
      if constexpr (LN) {
        float xv[VC];
        load_pack<VC>(x + size_t(r) * N + c0, xv);
        const float mu = mean[r], rs = rstd[r];
#pragma unroll
        for (int j = 0; j < VC; ++j) {
          a[j] += g[j] * ((xv[j] - mu) * rs);
          bs[j] += g[j];
        }
      } else {
#pragma unroll
        for (int j = 0; j < VC; ++j) a[j] += g[j];
      }
    }
  }
#pragma unroll
  for (int j = 0; j < VC; ++j) {
    sa[threadIdx.y][threadIdx.x * VC + j] = a[j];
    if constexpr (LN) sb[threadIdx.y][threadIdx.x * VC + j] = bs[j];
  }
  __syncthreads();
  if (threadIdx.y == 0 && active) {
#pragma unroll
    for (int j = 0; j < VC; ++j) {
      float s = 0.f, t = 0.f;
      for (int yy = 0; yy < kColY; ++yy) {
        s += sa[yy][threadIdx.x * VC + j];
        if constexpr (LN) t += sb[yy][threadIdx.x * VC + j];
      }
      part[size_t(blockIdx.y) * N + c0 + j] = s;
      if constexpr (LN) part[size_t(gridDim.y + blockIdx.y) * N + c0 + j] = t;
    }
  }
}

// out_a[c] += sum_g part[g][c]; out_b[c] += sum_g part[chunks + g][c] (when out_b).
__global__ void colsum_final_kernel(const float* __restrict__ part, int chunks, int N, float* out_a,
                                    float* out_b) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= N) return;
  double s = 0;
  for (int g = 0; g < chunks; ++g) s += part[size_t(g) * N + c];
  out_a[c] += static_cast<float>(s);
  if (out_b) {
    double t = 0;
    for (int g = 0; g < chunks; ++g) t += part[size_t(chunks + g) * N + c];
    out_b[c] += static_cast<float>(t);
  }
}

// Splits M rows into chunks so that about kTargetBlocks blocks run, each chunk >= 64 rows.
struct ColPlan {
  int gx, chunks, rows_per_chunk;
};
ColPlan col_plan(int M, int N, int VC) {
  constexpr int kTargetBlocks = 2048, kMinRows = 64;
  ColPlan p;
  p.gx = (N + 32 * VC - 1) / (32 * VC);
  int want = std::max(1, kTargetBlocks / p.gx);
  want = std::min(want, std::max(1, (M + kMinRows - 1) / kMinRows));
  p.rows_per_chunk = (M + want - 1) / want;
  p.chunks = (M + p.rows_per_chunk - 1) / p.rows_per_chunk;
  return p;
}

template <class T, bool LN>
void colsum(const T* dy, long ld, const T* x, const float* mean, const float* rstd, float* out_a,
            float* out_b, int M, int N, Scratch& scratch) {
  if (M <= 0 || N <= 0) return;
  constexpr int V = 16 / sizeof(T);
  const bool vec = N % V == 0 && ld % V == 0 && aligned16(dy) && (!LN || aligned16(x));
  const ColPlan p = col_plan(M, N, vec ? V : 1);
  float* part = scratch.get(size_t(p.chunks) * N * (LN ? 2 : 1));
  const dim3 grid(p.gx, p.chunks), block(32, kColY);
  if (vec)
    colsum_partial_kernel<T, V, LN>
        <<<grid, block>>>(dy, x, mean, rstd, part, M, N, ld, p.rows_per_chunk);
  else
    colsum_partial_kernel<T, 1, LN>
        <<<grid, block>>>(dy, x, mean, rstd, part, M, N, ld, p.rows_per_chunk);
  check_launch("colsum_partial_kernel");
  colsum_final_kernel<<<(N + 255) / 256, 256>>>(part, p.chunks, N, out_a, LN ? out_b : nullptr);
  check_launch("colsum_final_kernel");
}

template <class T>
void ln_fwd_t(const T* x, const float* w, const float* b, T* y, float* mean, float* rstd, int M,
              int D, float eps) {
  if (M <= 0 || D <= 0) return;
  const unsigned blocks = (M + kRowsPerBlock - 1) / kRowsPerBlock, threads = 32 * kRowsPerBlock;
  constexpr int V = 16 / sizeof(T);
  if (D > kMaxRegD)
    ln_fwd_long_kernel<<<blocks, threads>>>(x, w, b, y, mean, rstd, M, D, eps);
  else if (D % V == 0 && aligned16(x) && aligned16(y)) {
    if (pack_ok(w, V) && pack_ok(b, V))
      ln_fwd_reg_kernel<T, V, true><<<blocks, threads>>>(x, w, b, y, mean, rstd, M, D, eps);
    else
      ln_fwd_reg_kernel<T, V, false><<<blocks, threads>>>(x, w, b, y, mean, rstd, M, D, eps);
  } else {
    ln_fwd_reg_kernel<T, 1, false><<<blocks, threads>>>(x, w, b, y, mean, rstd, M, D, eps);
  }
  check_launch("layernorm_fwd_kernel");
}

template <class T>
void ln_bwd_t(const T* dy, const T* x, const float* w, const float* mean, const float* rstd, T* dx,
              float* dw, float* db, int M, int D, Scratch& scratch) {
  if (M <= 0 || D <= 0) return;
  const unsigned blocks = (M + kRowsPerBlock - 1) / kRowsPerBlock, threads = 32 * kRowsPerBlock;
  constexpr int V = 16 / sizeof(T);
  if (D > kMaxRegD)
    ln_bwd_dx_long_kernel<<<blocks, threads>>>(dy, x, w, mean, rstd, dx, M, D);
  else if (D % V == 0 && aligned16(dy) && aligned16(x) && aligned16(dx)) {
    if (pack_ok(w, V))
      ln_bwd_dx_reg_kernel<T, V, true><<<blocks, threads>>>(dy, x, w, mean, rstd, dx, M, D);
    else
      ln_bwd_dx_reg_kernel<T, V, false><<<blocks, threads>>>(dy, x, w, mean, rstd, dx, M, D);
  } else {
    ln_bwd_dx_reg_kernel<T, 1, false><<<blocks, threads>>>(dy, x, w, mean, rstd, dx, M, D);
  }
  check_launch("layernorm_bwd_dx_kernel");
  colsum<T, true>(dy, D, x, mean, rstd, dw, db, M, D, scratch);
}

}  // namespace

void bias_grad(bool bf16, const void* dy, long ld, float* db, int M, int N, Scratch& scratch) {
  UVIT_ACT_DISPATCH(
      bf16, T,
      colsum<T, false>(as<T>(dy), ld, nullptr, nullptr, nullptr, db, nullptr, M, N, scratch));
}

void layernorm_fwd(bool bf16, const void* x, const float* w, const float* b, void* y, float* mean,
                   float* rstd, int M, int D, float eps) {
  UVIT_ACT_DISPATCH(bf16, T, ln_fwd_t(as<T>(x), w, b, as<T>(y), mean, rstd, M, D, eps));
}

void layernorm_bwd(bool bf16, const void* dy, const void* x, const float* w, const float* mean,
                   const float* rstd, void* dx, float* dw, float* db, int M, int D,
                   Scratch& scratch) {
  UVIT_ACT_DISPATCH(bf16, T,
                    ln_bwd_t(as<T>(dy), as<T>(x), w, mean, rstd, as<T>(dx), dw, db, M, D, scratch));
}

}  // namespace uvit::cuda
