// The autoencoder's mid-block attention: one head, HW tokens, C features, as three GEMMs worth of
// work (scores, softmax, weighted values) in blocks of query rows.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "backend/cpu/vmath.hpp"
#include "uvit/error.hpp"
#include "uvit/nn.hpp"

namespace uvit::nn {

namespace {

// Runs inside the parallel loop, which no exception may leave: a failure is kept in `failed`
// (one of them, when several) and reported after the loop.
void sgemm(char ta, char tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc, std::atomic<int>& failed) {
  const dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (st != dnnl_success) failed = int(st);
}

}  // namespace

// Each block of kRows query rows is one task: its scores, softmax and weighted values run as
// single-threaded GEMMs of a fixed shape, in the running thread's own score buffer. One
// multi-threaded GEMM over all rows let oneDNN split the weighted values' sum over the HW keys
// among the threads, so the decoded images depended on the thread count (docs/cli.md,
// "Reproducibility"; docs/ux_audit.md, round 16). 128 rows: the CPU time of the one-GEMM version
// (64 rows cost 30 % more; docs/benchmarks.md, "Spatial attention in fixed row tasks").
constexpr int kRows = 128;

void spatial_attention(const float* q, const float* k, const float* v, float* out, int C, int HW,
                       float scale) {
  const int tasks = (HW + kRows - 1) / kRows;
  std::atomic<int> failed{int(dnnl_success)};
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> s(size_t(std::min(kRows, HW)) * HW);
#pragma omp for schedule(static)
    for (int t = 0; t < tasks; ++t) {
      const int r0 = t * kRows, rows = std::min(kRows, HW - r0);
      // s[i, j] = scale * sum_d q[d, r0 + i] k[d, j]  (q, k stored [C, HW]: op(A) = q^T)
      sgemm('T', 'N', rows, HW, C, scale, q + r0, HW, k, HW, 0.f, s.data(), HW, failed);
      for (int i = 0; i < rows; ++i) {
        float* r = s.data() + size_t(i) * HW;
        float m = r[0];
        for (int j = 1; j < HW; ++j) m = std::max(m, r[j]);
        float sum = 0.f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < HW; ++j) {
          r[j] = vm::exp(r[j] - m);
          sum += r[j];
        }
        const float inv = 1.f / sum;
#pragma omp simd
        for (int j = 0; j < HW; ++j) r[j] *= inv;
      }
      // out[c, r0 + i] = sum_j v[c, j] s[i, j]
      sgemm('N', 'T', C, rows, HW, 1.f, v, HW, s.data(), HW, 0.f, out + r0, HW, failed);
    }
  }
  UVIT_CHECK(failed == int(dnnl_success), "spatial_attention: oneDNN sgemm failed with status ",
             int(failed));
}

}  // namespace uvit::nn
