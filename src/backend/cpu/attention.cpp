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

constexpr int kBq = 128;  // query rows per tile: two [128, N<=400] fp32 tiles stay in L2

// Row maximum with 16 independent lanes: GCC does not vectorise a max-reduction under IEEE
// semantics, and this loop was half of the softmax time when scalar.
float row_max(const float* row, int n) {
  constexpr int W = 16;
  float lane[W];
  for (int l = 0; l < W; ++l) lane[l] = -std::numeric_limits<float>::infinity();
  int j = 0;
  for (; j + W <= n; j += W)
    for (int l = 0; l < W; ++l) lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
  float mx = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < W; ++l) mx = lane[l] > mx ? lane[l] : mx;
  for (; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
  return mx;
}

// In place: row r of s (length n, scale already applied by the GEMM) becomes exp(s - max), inv[r]
// its 1/sum (applied to the [rows, Dh] output instead of the [rows, n] tile) and lse[r] the
// log-sum-exp.
void softmax_rows(float* s, int rows, int n, float* inv, float* lse) {
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<size_t>(r) * n;
    const float mx = row_max(row, n);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; ++j) {
      const float e = vm::exp(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    inv[r] = 1.f / sum;
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
    std::vector<float> s(static_cast<size_t>(kBq) * N), inv(kBq);
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
        // S = scale * Q_blk K^T, then exp in place, then O_blk = (E V) / rowsum(E).
        gemm_serial(false, true, bq, N, Dh, scale, q + static_cast<size_t>(i0) * ld3, ld3, k, ld3,
                    0.f, s.data(), N);
        softmax_rows(s.data(), bq, N, inv.data(), l ? l + i0 : nullptr);
        float* ob = o + static_cast<size_t>(i0) * D;
        gemm_serial(false, false, bq, Dh, N, 1.f, s.data(), N, v, ld3, 0.f, ob, D);
        for (int r = 0; r < bq; ++r) {
          float* orow = ob + static_cast<size_t>(r) * D;
#pragma omp simd
          for (int d = 0; d < Dh; ++d) orow[d] *= inv[r];
        }
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
