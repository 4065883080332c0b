// 3x3 convolution, padding 1 (the optional final conv of U-ViT, C <= 4 channels): direct loops,
// each output element / weight gradient owned by one thread so nothing races.
#include <algorithm>

#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

void CpuBackend::conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B,
                             int Cin, int Cout, int H, int W) {
  const size_t HW = static_cast<size_t>(H) * W;
#pragma omp parallel for collapse(2) schedule(static)
  for (int n = 0; n < B; ++n)
    for (int co = 0; co < Cout; ++co) {
      float* yo = y + (static_cast<size_t>(n) * Cout + co) * HW;
      for (size_t i = 0; i < HW; ++i) yo[i] = b ? b[co] : 0.f;
      for (int ci = 0; ci < Cin; ++ci) {
        const float* xi = x + (static_cast<size_t>(n) * Cin + ci) * HW;
        const float* k = w + (static_cast<size_t>(co) * Cin + ci) * 9;
        for (int ky = 0; ky < 3; ++ky)
          for (int r = 0; r < H; ++r) {
            const int sr = r + ky - 1;
            if (sr < 0 || sr >= H) continue;
            const float* xr = xi + static_cast<size_t>(sr) * W;
            float* yr = yo + static_cast<size_t>(r) * W;
            const float k0 = k[ky * 3], k1 = k[ky * 3 + 1], k2 = k[ky * 3 + 2];
            // interior columns vectorise; the two edges drop the out-of-image tap
            for (int c = 1; c < W - 1; ++c) yr[c] += k0 * xr[c - 1] + k1 * xr[c] + k2 * xr[c + 1];
            yr[0] += k1 * xr[0] + (W > 1 ? k2 * xr[1] : 0.f);
            if (W > 1) yr[W - 1] += k0 * xr[W - 2] + k1 * xr[W - 1];
          }
      }
    }
}

void CpuBackend::conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw,
                             float* db, int B, int Cin, int Cout, int H, int W) {
  const size_t HW = static_cast<size_t>(H) * W;
  if (dx) {
    // dx[ci, r, c] = sum_co sum_k w[co, ci, ky, kx] * dy[co, r - ky + 1, c - kx + 1]
#pragma omp parallel for collapse(2) schedule(static)
    for (int n = 0; n < B; ++n)
      for (int ci = 0; ci < Cin; ++ci) {
        float* xo = dx + (static_cast<size_t>(n) * Cin + ci) * HW;
        for (size_t i = 0; i < HW; ++i) xo[i] = 0.f;
        for (int co = 0; co < Cout; ++co) {
          const float* g = dy + (static_cast<size_t>(n) * Cout + co) * HW;
          const float* k = w + (static_cast<size_t>(co) * Cin + ci) * 9;
          for (int ky = 0; ky < 3; ++ky)
            for (int r = 0; r < H; ++r) {
              const int sr = r - ky + 1;
              if (sr < 0 || sr >= H) continue;
              const float* gr = g + static_cast<size_t>(sr) * W;
              float* xr = xo + static_cast<size_t>(r) * W;
              for (int kx = 0; kx < 3; ++kx) {
                const float kv = k[ky * 3 + kx];
                const int c0 = std::max(0, kx - 1), c1 = std::min(W, W + kx - 1);
                for (int c = c0; c < c1; ++c) xr[c] += kv * gr[c - kx + 1];
              }
            }
        }
      }
  }
  // dw[co, ci, ky, kx] += sum_{n, r, c} dy[n, co, r, c] * x[n, ci, r + ky - 1, c + kx - 1]
#pragma omp parallel for collapse(2) schedule(static)
  for (int co = 0; co < Cout; ++co)
    for (int ci = 0; ci < Cin; ++ci) {
      double acc[9] = {};
      for (int n = 0; n < B; ++n) {
        const float* g = dy + (static_cast<size_t>(n) * Cout + co) * HW;
        const float* xi = x + (static_cast<size_t>(n) * Cin + ci) * HW;
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            const int r0 = std::max(0, 1 - ky), r1 = std::min(H, H + 1 - ky);
            const int c0 = std::max(0, 1 - kx), c1 = std::min(W, W + 1 - kx);
            float s = 0.f;
            for (int r = r0; r < r1; ++r) {
              const float* gr = g + static_cast<size_t>(r) * W;
              const float* xr = xi + static_cast<size_t>(r + ky - 1) * W;
#pragma omp simd reduction(+ : s)
              for (int c = c0; c < c1; ++c) s += gr[c] * xr[c + kx - 1];
            }
            acc[ky * 3 + kx] += s;
          }
      }
      float* d = dw + (static_cast<size_t>(co) * Cin + ci) * 9;
      for (int t = 0; t < 9; ++t) d[t] += static_cast<float>(acc[t]);
    }
  if (db)
    for (int co = 0; co < Cout; ++co) {
      double s = 0;
      for (int n = 0; n < B; ++n) {
        const float* g = dy + (static_cast<size_t>(n) * Cout + co) * HW;
        for (size_t i = 0; i < HW; ++i) s += g[i];
      }
      db[co] += static_cast<float>(s);
    }
}

}  // namespace uvit
