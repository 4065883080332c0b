// Pooling layers of the FID Inception (SPEC 17) on independent NCHW planes.
#include <algorithm>

#include "uvit/inception.hpp"

namespace uvit::nn {

void max_pool3x3_s2(const float* x, float* y, int planes, int H, int W) {
  const int oh = (H - 3) / 2 + 1, ow = (W - 3) / 2 + 1;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    float* yp = y + p * oh * ow;
    for (int i = 0; i < oh; ++i)
      for (int j = 0; j < ow; ++j) {
        const float* r = xp + (2 * i) * W + 2 * j;
        float m = r[0];
        for (int u = 0; u < 3; ++u)
          for (int v = 0; v < 3; ++v) m = std::max(m, r[u * W + v]);
        yp[i * ow + j] = m;
      }
  }
}

void max_pool3x3_s1p1(const float* x, float* y, int planes, int H, int W) {
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    float* yp = y + p * H * W;
    for (int i = 0; i < H; ++i) {
      const int u0 = std::max(i - 1, 0), u1 = std::min(i + 1, H - 1);
      for (int j = 0; j < W; ++j) {
        const int v0 = std::max(j - 1, 0), v1 = std::min(j + 1, W - 1);
        float m = xp[u0 * W + v0];
        for (int u = u0; u <= u1; ++u)
          for (int v = v0; v <= v1; ++v) m = std::max(m, xp[u * W + v]);
        yp[i * W + j] = m;
      }
    }
  }
}

void avg_pool3x3_s1p1_exclude_pad(const float* x, float* y, int planes, int H, int W) {
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    const float* xp = x + p * H * W;
    float* yp = y + p * H * W;
    for (int i = 0; i < H; ++i) {
      const int u0 = std::max(i - 1, 0), u1 = std::min(i + 1, H - 1);
      for (int j = 0; j < W; ++j) {
        const int v0 = std::max(j - 1, 0), v1 = std::min(j + 1, W - 1);
        float s = 0;
        for (int u = u0; u <= u1; ++u)
          for (int v = v0; v <= v1; ++v) s += xp[u * W + v];
        // count_include_pad=False: divide by the number of in-image taps.
        yp[i * W + j] = s / float((u1 - u0 + 1) * (v1 - v0 + 1));
      }
    }
  }
}

void global_avg_pool(const float* x, float* y, int planes, int H, int W) {
  const long n = long(H) * W;
#pragma omp parallel for schedule(static)
  for (long p = 0; p < planes; ++p) {
    double s = 0;
    for (long i = 0; i < n; ++i) s += x[p * n + i];
    y[p] = float(s / double(n));
  }
}

}  // namespace uvit::nn
