// Pooling layers of the FID Inception (SPEC 17) on independent planes.
#include <algorithm>

#include "uvit/nn.hpp"

namespace uvit::nn {

void pool2d(const float* x, float* y, int N, int H, int W, int k, int stride, int pad, bool max) {
  const int oh = (H + 2 * pad - k) / stride + 1, ow = (W + 2 * pad - k) / stride + 1;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < N; ++p) {
    const float* xp = x + p * H * W;
    float* yp = y + p * oh * ow;
    for (int i = 0; i < oh; ++i) {
      const int u0 = std::max(i * stride - pad, 0), u1 = std::min(i * stride - pad + k, H);
      for (int j = 0; j < ow; ++j) {
        const int v0 = std::max(j * stride - pad, 0), v1 = std::min(j * stride - pad + k, W);
        float acc = max ? xp[u0 * W + v0] : 0.f;  // padding never wins a max
        for (int u = u0; u < u1; ++u)
          for (int v = v0; v < v1; ++v)
            acc = max ? std::max(acc, xp[u * W + v]) : acc + xp[u * W + v];
        // count_include_pad=False: divide by the number of in-image taps.
        yp[i * ow + j] = max ? acc : acc / float((u1 - u0) * (v1 - v0));
      }
    }
  }
}

void global_avg_pool(const float* x, float* y, int N, int HW) {
  const long n = HW;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < N; ++p) {
    double s = 0;
    for (long i = 0; i < n; ++i) s += x[p * n + i];
    y[p] = float(s / double(n));
  }
}

}  // namespace uvit::nn
