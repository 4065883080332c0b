// LightningDiT's kernels (docs/lightningdit.md): RMSNorm over groups of features, SwiGLU and the
// 2-D rotary position embedding. RMSNorm statistics are accumulated in double like LayerNorm's
// (layernorm.cpp); its weight gradient over fixed blocks of rows (rmsnorm_bwd_t).
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/vmath.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 14;
using cpu::as;
using cpu::ld;
using cpu::st;

template <class T>
void rmsnorm_fwd_t(const T* x, const float* w, T* y, float* rstd, int M, int G, int D, int ldx,
                   float eps) {
  const long rows = long(M) * G;
#pragma omp parallel for schedule(static) if (rows * D >= kParallelMin)
  for (long r = 0; r < rows; ++r) {
    const size_t off = size_t(r / G) * ldx + size_t(r % G) * D;
    const T* xr = x + off;
    T* yr = y + off;
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (int d = 0; d < D; ++d) s += double(ld(xr[d])) * ld(xr[d]);
    const float rs = float(1.0 / std::sqrt(s / D + double(eps)));
#pragma omp simd
    for (int d = 0; d < D; ++d) yr[d] = st<T>(ld(xr[d]) * rs * w[d]);
    if (rstd) rstd[r] = rs;
  }
}

// dw is summed over fixed blocks of rows, each block's partial in double in row order and the
// partials added in block order, as LayerNorm's (layernorm.cpp): one partial per thread made
// `--threads 7` train fmnist_lightningdit_tiny differently from 1 (docs/cli.md, "Reproducibility").
constexpr long kRmsBlocks = 128, kRmsBlockRows = 64;

template <class T>
void rmsnorm_bwd_t(const T* dy, const T* x, const float* w, const float* rstd, T* dx, float* dw,
                   int M, int G, int D, int ldx, bool accumulate) {
  const long rows = long(M) * G;
  const bool par = rows * D >= kParallelMin;
  const cpu::FixedBlocks blocks(rows, kRmsBlockRows, kRmsBlocks);
  const long nb = blocks.count;
  std::vector<double> part(size_t(nb) * D, 0.0);
#pragma omp parallel for schedule(static) if (par)
  for (long blk = 0; blk < nb; ++blk) {
    double* pdw = part.data() + size_t(blk) * D;
    for (long r = blocks.begin(blk); r < blocks.end(blk); ++r) {
      const size_t off = size_t(r / G) * ldx + size_t(r % G) * D;
      const T *xr = x + off, *gr = dy + off;
      T* dxr = dx + off;
      const float rs = rstd[r];
      double sgx = 0;
      for (int d = 0; d < D; ++d) {
        const float xh = ld(xr[d]) * rs;
        pdw[d] += double(ld(gr[d])) * xh;
        sgx += double(ld(gr[d])) * w[d] * xh;
      }
      const float mgx = float(sgx / D);
      // Each element's dy and x are read before its dx is written, so dx may alias dy.
      for (int d = 0; d < D; ++d) {
        const float v = rs * (ld(gr[d]) * w[d] - ld(xr[d]) * rs * mgx);
        dxr[d] = st<T>(accumulate ? ld(dxr[d]) + v : v);
      }
    }
  }
  for (int d = 0; d < D; ++d) {
    double s = 0;
    for (long blk = 0; blk < nb; ++blk) s += part[size_t(blk) * D + d];
    dw[d] += float(s);
  }
}

template <class T>
void swiglu_fwd_t(const T* x12, T* y, int M, int H) {
#pragma omp parallel for schedule(static) if (long(M) * H >= kParallelMin)
  for (long m = 0; m < M; ++m) {
    const T* a = x12 + size_t(m) * 2 * H;
    T* yr = y + size_t(m) * H;
#pragma omp simd
    for (int j = 0; j < H; ++j) {
      const float v = ld(a[j]);
      yr[j] = st<T>(v / (1.f + vm::exp(-v)) * ld(a[H + j]));
    }
  }
}

template <class T>
void swiglu_bwd_t(const T* dy, int ldy, const T* x12, T* dx12, int M, int H) {
#pragma omp parallel for schedule(static) if (long(M) * H >= kParallelMin)
  for (long m = 0; m < M; ++m) {
    const T* a = x12 + size_t(m) * 2 * H;
    const T* g = dy + size_t(m) * ldy;
    T* d = dx12 + size_t(m) * 2 * H;
#pragma omp simd
    for (int j = 0; j < H; ++j) {
      const float v = ld(a[j]), s = 1.f / (1.f + vm::exp(-v)), gj = ld(g[j]), a2 = ld(a[H + j]);
      d[j] = st<T>(gj * a2 * s * (1.f + v * (1.f - s)));
      d[H + j] = st<T>(gj * v * s);
    }
  }
}

template <class T>
void rope_t(T* x, const float* cos, const float* sin, int B, int N, int G, int Dh, int ldx,
            bool inverse, int sec) {
  const long rows = long(B) * N;
  const int half = sec / 2;
#pragma omp parallel for schedule(static) if (rows * G * Dh >= kParallelMin)
  for (long r = 0; r < rows; ++r) {
    const float* c = cos + size_t(r % N) * Dh;
    const float* s = sin + size_t(r % N) * Dh;
    for (int g = 0; g < G; ++g) {
      T* v = x + size_t(r) * ldx + size_t(g) * Dh;
      for (int p = 0; p < Dh / 2; ++p) {
        const int ka = p / half * sec + p % half, kb = ka + half;
        const float a = ld(v[ka]), b = ld(v[kb]);
        if (!inverse) {
          v[ka] = st<T>(a * c[ka] - b * s[ka]);
          v[kb] = st<T>(b * c[kb] + a * s[kb]);
        } else {
          v[ka] = st<T>(a * c[ka] + b * s[kb]);
          v[kb] = st<T>(b * c[kb] - a * s[ka]);
        }
      }
    }
  }
}

}  // namespace

void CpuBackend::rmsnorm_fwd(const float* x, const float* w, float* y, float* rstd, int M, int G,
                             int D, int ld, float eps) {
  UVIT_CPU_ACT(rmsnorm_fwd_t(as<T>(x), w, as<T>(y), rstd, M, G, D, ld, eps));
}

void CpuBackend::rmsnorm_bwd(const float* dy, const float* x, const float* w, const float* rstd,
                             float* dx, float* dw, int M, int G, int D, int ld, bool accumulate) {
  UVIT_CPU_ACT(rmsnorm_bwd_t(as<T>(dy), as<T>(x), w, rstd, as<T>(dx), dw, M, G, D, ld, accumulate));
}

void CpuBackend::swiglu_fwd(const float* x12, float* y, int M, int H) {
  UVIT_CPU_ACT(swiglu_fwd_t(as<T>(x12), as<T>(y), M, H));
}

void CpuBackend::swiglu_bwd(const float* dy, int ldy, const float* x12, float* dx12, int M, int H) {
  UVIT_CPU_ACT(swiglu_bwd_t(as<T>(dy), ldy, as<T>(x12), as<T>(dx12), M, H));
}

void CpuBackend::rope(float* x, const float* cos, const float* sin, int B, int N, int G, int Dh,
                      int ld, bool inverse, int sec) {
  UVIT_CPU_ACT(rope_t(as<T>(x), cos, sin, B, N, G, Dh, ld, inverse, sec));
}

}  // namespace uvit
