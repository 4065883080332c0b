// LightningDiT's kernels (docs/lightningdit.md): RMSNorm over groups of features, SwiGLU and the
// 2-D rotary position embedding. RMSNorm statistics are accumulated in double like LayerNorm's
// (layernorm.cpp); its weight gradient is reduced per thread and summed in thread order.
#include <omp.h>

#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/vmath.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 14;
}  // namespace

void CpuBackend::rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G,
                             int D, int ld, float eps) {
  const long rows = long(M) * G;
#pragma omp parallel for schedule(static) if (rows * D >= kParallelMin)
  for (long r = 0; r < rows; ++r) {
    const size_t off = size_t(r / G) * ld + size_t(r % G) * D;
    const float* xr = x + off;
    float* yr = y + off;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; ++d) s += double(xr[d]) * xr[d];
    const float rs = float(1.0 / std::sqrt(s / D + double(eps)));
#pragma omp simd
    for (int d = 0; d < D; ++d) yr[d] = xr[d] * rs * w[d];
    if (rstd) rstd[r] = rs;
  }
}

void CpuBackend::rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                             float* dx, float* dw, int M, int G, int D, int ld, bool accumulate) {
  const long rows = long(M) * G;
  const bool par = rows * D >= kParallelMin;
  const int nt = par ? omp_get_max_threads() : 1;
  std::vector<double> part(size_t(nt) * D, 0.0);
#pragma omp parallel num_threads(nt) if (par)
  {
    double* pdw = part.data() + size_t(omp_get_thread_num()) * D;
#pragma omp for schedule(static)
    for (long r = 0; r < rows; ++r) {
      const size_t off = size_t(r / G) * ld + size_t(r % G) * D;
      const float *xr = x + off, *gr = dy + off;
      float* dxr = dx + off;
      const float rs = rstd[r];
      double sgx = 0;
      for (int d = 0; d < D; ++d) {
        const float xh = xr[d] * rs;
        pdw[d] += double(gr[d]) * xh;
        sgx += double(gr[d]) * w[d] * xh;
      }
      const float mgx = float(sgx / D);
      // Each element's dy and x are read before its dx is written, so dx may alias dy.
      for (int d = 0; d < D; ++d) {
        const float v = rs * (gr[d] * w[d] - xr[d] * rs * mgx);
        dxr[d] = accumulate ? dxr[d] + v : v;
      }
    }
  }
  for (int t = 0; t < nt; ++t)
    for (int d = 0; d < D; ++d) dw[d] += float(part[size_t(t) * D + d]);
}

void CpuBackend::swiglu_fwd(const float* x12, float* y, int M, int H) {
#pragma omp parallel for schedule(static) if (long(M) * H >= kParallelMin)
  for (long m = 0; m < M; ++m) {
    const float* a = x12 + size_t(m) * 2 * H;
    float* yr = y + size_t(m) * H;
#pragma omp simd
    for (int j = 0; j < H; ++j) yr[j] = a[j] / (1.f + vm::exp(-a[j])) * a[H + j];
  }
}

void CpuBackend::swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M, int H) {
#pragma omp parallel for schedule(static) if (long(M) * H >= kParallelMin)
  for (long m = 0; m < M; ++m) {
    const float* a = x12 + size_t(m) * 2 * H;
    const float* g = dy + size_t(m) * ldy;
    float* d = dx12 + size_t(m) * 2 * H;
#pragma omp simd
    for (int j = 0; j < H; ++j) {
      const float v = a[j], s = 1.f / (1.f + vm::exp(-v)), gj = g[j];
      d[j] = gj * a[H + j] * s * (1.f + v * (1.f - s));
      d[H + j] = gj * v * s;
    }
  }
}

void CpuBackend::rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
                      int ld, bool inverse) {
  const long rows = long(B) * N;
#pragma omp parallel for schedule(static) if (rows * G * Dh >= kParallelMin)
  for (long r = 0; r < rows; ++r) {
    const float* c = cos + size_t(r % N) * Dh;
    const float* s = sin + size_t(r % N) * Dh;
    for (int g = 0; g < G; ++g) {
      float* v = x + size_t(r) * ld + size_t(g) * Dh;
      for (int k = 0; k + 1 < Dh; k += 2) {
        const float a = v[k], b = v[k + 1];
        if (!inverse) {
          v[k] = a * c[k] - b * s[k];
          v[k + 1] = b * c[k + 1] + a * s[k + 1];
        } else {
          v[k] = a * c[k] + b * s[k + 1];
          v[k + 1] = b * c[k + 1] - a * s[k];
        }
      }
    }
  }
}

}  // namespace uvit
