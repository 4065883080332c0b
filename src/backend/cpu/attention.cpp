// Fused attention, one task per (batch, head), queries processed in blocks of kBq against all keys:
// only a [kBq, N] score tile per thread exists, never [B, H, N, N]. The forward saves the
// log-sum-exp per query; the backward (FlashAttention-2 style) recomputes P = exp(S - lse) per
// block, uses D_i = rowsum(dO_i * O_i) and dS = P * (dP - D_i). The small products run as
// single-threaded sgemm calls on strided views of qkv (faster than hand loops at Dh <= 72).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/vmath.hpp"

namespace uvit {

namespace {

constexpr int kBq = 64;  // query rows per tile: a [64, N<=400] fp32 tile stays in L2

// In place: row r of s (length n) becomes softmax(s) and lse[r] the log-sum-exp (scale already
// applied by the GEMM).
void softmax_rows(float* s, int rows, int n, float* lse) {
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<size_t>(r) * n;
    float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; ++j) mx = std::max(mx, row[j]);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; ++j) {
      const float e = vm::exp(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    const float inv = 1.f / sum;
#pragma omp simd
    for (int j = 0; j < n; ++j) row[j] *= inv;
    if (lse) lse[r] = mx + std::log(sum);
  }
}

}  // namespace

void CpuBackend::attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H,
                               int Dh, float scale) {
  const int D = H * Dh, ld3 = 3 * D;
  const int tasks = B * H;
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> s(static_cast<size_t>(kBq) * N);
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / H, h = task % H;
      const float* q = qkv + static_cast<size_t>(b) * N * ld3 + h * Dh;
      const float* k = q + D;
      const float* v = q + 2 * D;
      float* o = out + static_cast<size_t>(b) * N * D + h * Dh;
      float* l = lse ? lse + static_cast<size_t>(task) * N : nullptr;
      for (int i0 = 0; i0 < N; i0 += kBq) {
        const int bq = std::min(kBq, N - i0);
        // S = scale * Q_blk K^T, then softmax in place, then O_blk = P V.
        gemm_serial(false, true, bq, N, Dh, scale, q + static_cast<size_t>(i0) * ld3, ld3, k, ld3,
                    0.f, s.data(), N);
        softmax_rows(s.data(), bq, N, l ? l + i0 : nullptr);
        gemm_serial(false, false, bq, Dh, N, 1.f, s.data(), N, v, ld3, 0.f,
                    o + static_cast<size_t>(i0) * D, D);
      }
    }
  }
}

void CpuBackend::attention_bwd(const float* dout, const float* qkv, const float* out,
                               const float* lse, float* dqkv, int B, int N, int H, int Dh,
                               float scale) {
  const int D = H * Dh, ld3 = 3 * D;
  const int tasks = B * H;
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> p(static_cast<size_t>(kBq) * N), dp(static_cast<size_t>(kBq) * N);
    std::vector<float> di(N);
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / H, h = task % H;
      const size_t base3 = static_cast<size_t>(b) * N * ld3 + h * Dh;
      const float* q = qkv + base3;
      const float* k = q + D;
      const float* v = q + 2 * D;
      float* dq = dqkv + base3;
      float* dk = dq + D;
      float* dv = dq + 2 * D;
      const size_t base = static_cast<size_t>(b) * N * D + h * Dh;
      const float* o = out + base;
      const float* dO = dout + base;
      const float* l = lse + static_cast<size_t>(task) * N;
      for (int i = 0; i < N; ++i) {
        const float* a = dO + static_cast<size_t>(i) * D;
        const float* c = o + static_cast<size_t>(i) * D;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int d = 0; d < Dh; ++d) acc += a[d] * c[d];
        di[i] = acc;
      }
      for (int i0 = 0; i0 < N; i0 += kBq) {
        const int bq = std::min(kBq, N - i0);
        const float* qb = q + static_cast<size_t>(i0) * ld3;
        const float* dob = dO + static_cast<size_t>(i0) * D;
        const float first = i0 == 0 ? 0.f : 1.f;  // dk, dv are overwritten by the first block
        // P = exp(scale * Q K^T - lse)
        gemm_serial(false, true, bq, N, Dh, scale, qb, ld3, k, ld3, 0.f, p.data(), N);
        for (int r = 0; r < bq; ++r) {
          float* row = p.data() + static_cast<size_t>(r) * N;
          const float li = l[i0 + r];
#pragma omp simd
          for (int j = 0; j < N; ++j) row[j] = vm::exp(row[j] - li);
        }
        // dV (+)= P^T dO_blk ; dP = dO_blk V^T
        gemm_serial(true, false, N, Dh, bq, 1.f, p.data(), N, dob, D, first, dv, ld3);
        gemm_serial(false, true, bq, N, Dh, 1.f, dob, D, v, ld3, 0.f, dp.data(), N);
        // dS = P * (dP - D_i); the score scale is folded into the dQ / dK products.
        for (int r = 0; r < bq; ++r) {
          const float* pr = p.data() + static_cast<size_t>(r) * N;
          float* dr = dp.data() + static_cast<size_t>(r) * N;
          const float dii = di[i0 + r];
#pragma omp simd
          for (int j = 0; j < N; ++j) dr[j] = pr[j] * (dr[j] - dii);
        }
        gemm_serial(false, false, bq, Dh, N, scale, dp.data(), N, k, ld3, 0.f,
                    dq + static_cast<size_t>(i0) * ld3, ld3);
        gemm_serial(true, false, N, Dh, bq, scale, dp.data(), N, qb, ld3, first, dk, ld3);
      }
    }
  }
}

}  // namespace uvit
