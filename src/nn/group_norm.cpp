// GroupNorm (+ swish), the autoencoder's normalisation: one (image, group) slab per task.
#include <cmath>

#include "backend/cpu/vmath.hpp"
#include "uvit/error.hpp"
#include "uvit/nn.hpp"

namespace uvit::nn {

void group_norm(const float* x, const float* w, const float* b, float* y, int B, int C, int HW,
                int G, float eps, bool swish) {
  UVIT_CHECK(B > 0 && C > 0 && HW > 0 && G > 0 && C % G == 0, "group_norm: ", C,
             " channels do not split into ", G, " groups");
  const int cpg = C / G;
  const size_t n = size_t(cpg) * HW;
#pragma omp parallel for schedule(dynamic, 1)
  for (int t = 0; t < B * G; ++t) {
    const int bi = t / G, g = t % G;
    const size_t off = (size_t(bi) * C + size_t(g) * cpg) * HW;
    const float* xs = x + off;
    // Two passes (mean, then centred squares) as the slab is small enough to stay in cache.
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (size_t i = 0; i < n; ++i) s += xs[i];
    const double mean = s / double(n);
    double ss = 0;
#pragma omp simd reduction(+ : ss)
    for (size_t i = 0; i < n; ++i) {
      const double d = xs[i] - mean;
      ss += d * d;
    }
    const float rstd = float(1.0 / std::sqrt(ss / double(n) + eps));
    for (int c = 0; c < cpg; ++c) {
      const int ch = g * cpg + c;
      const float sc = rstd * w[ch], sh = b[ch] - float(mean) * sc;
      const float* xc = xs + size_t(c) * HW;
      float* yc = y + off + size_t(c) * HW;
      if (swish) {
#pragma omp simd
        for (int i = 0; i < HW; ++i) {
          const float v = xc[i] * sc + sh;
          yc[i] = v / (1.f + vm::exp(-v));
        }
      } else {
#pragma omp simd
        for (int i = 0; i < HW; ++i) yc[i] = xc[i] * sc + sh;
      }
    }
  }
}

}  // namespace uvit::nn
