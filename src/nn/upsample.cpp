// Nearest-neighbour x2 upsampling (the autoencoder decoder's Upsample, before its conv).
#include <algorithm>

#include "uvit/nn.hpp"

namespace uvit::nn {

void upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  const int W2 = 2 * W;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < long(N) * H; ++r) {
    const float* xr = x + size_t(r) * W;
    float* y0 = y + size_t(r) * 2 * W2;  // output rows 2r and 2r+1 of the same plane
#pragma omp simd
    for (int j = 0; j < W2; ++j) y0[j] = xr[j >> 1];
    std::copy(y0, y0 + W2, y0 + W2);
  }
}

}  // namespace uvit::nn
