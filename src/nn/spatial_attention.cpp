// The autoencoder's mid-block attention: one head, HW tokens, C features, as three GEMMs worth of
// work (scores, softmax, weighted values) in blocks of query rows.
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <vector>

#include "backend/cpu/vmath.hpp"
#include "uvit/error.hpp"
#include "uvit/nn.hpp"

namespace uvit::nn {

namespace {

void sgemm(char ta, char tb, int M, int N, int K, float alpha, const float* A, int lda,
           const float* B, int ldb, float beta, float* C, int ldc) {
  const dnnl_status_t st = dnnl_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  UVIT_CHECK(st == dnnl_success, "spatial_attention: oneDNN sgemm failed with status ", int(st));
}

}  // namespace

void spatial_attention(const float* q, const float* k, const float* v, float* out, int C, int HW,
                       float scale) {
  const int blk = std::min(HW, 1024);
  std::vector<float> s(size_t(blk) * HW);
  for (int i0 = 0; i0 < HW; i0 += blk) {
    const int nb = std::min(blk, HW - i0);
    // s[i, j] = scale * sum_d q[d, i0 + i] k[d, j]  (q, k stored [C, HW]: op(A) = q^T)
    sgemm('T', 'N', nb, HW, C, scale, q + i0, HW, k, HW, 0.f, s.data(), HW);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb; ++i) {
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
    // out[c, i0 + i] = sum_j v[c, j] s[i, j]
    sgemm('N', 'T', C, nb, HW, 1.f, v, HW, s.data(), HW, 0.f, out + i0, HW);
  }
}

}  // namespace uvit::nn
