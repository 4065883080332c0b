// LayerNorm over the last dimension, statistics accumulated in double (tests compare against a
// float64 reference at 1e-5 relative; the rows are short, so this costs little).
#include <omp.h>

#include <cmath>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
using cpu::as;

// The forward widens rows to fp32 (act.hpp: load_f32), so its loops run on fp32 arrays in both
// modes and compute what per-element ld()/st<T>() did, bit for bit.
template <class T>
void layernorm_fwd_t(const T* x, const float* w, const float* b, T* y, float* mean, float* rstd,
                     int M, int D, float eps) {
#pragma omp parallel if (static_cast <long>(M) * D >= 16384)
  {
    std::vector<float> xb = cpu::f32_scratch<T>(D), yb = cpu::f32_scratch<T>(D);
#pragma omp for schedule(static)
    for (int m = 0; m < M; ++m) {
      const float* xr = cpu::load_f32(x + static_cast<size_t>(m) * D, D, xb.data());
      T* yrow = y + static_cast<size_t>(m) * D;
      float* yr = cpu::out_f32(yrow, yb.data());
      double s = 0;
#pragma omp simd reduction(+ : s)
      for (int d = 0; d < D; ++d) s += xr[d];
      const double mu = s / D;
      double v = 0;  // two passes: no cancellation from E[x^2] - E[x]^2
#pragma omp simd reduction(+ : v)
      for (int d = 0; d < D; ++d) {
        const double c = xr[d] - mu;
        v += c * c;
      }
      const double rs = 1.0 / std::sqrt(v / D + static_cast<double>(eps));
      const float muf = static_cast<float>(mu), rsf = static_cast<float>(rs);
#pragma omp simd
      for (int d = 0; d < D; ++d) yr[d] = (xr[d] - muf) * rsf * w[d] + b[d];
      cpu::store_f32(yrow, yr, D);
      if (mean) mean[m] = muf;
      if (rstd) rstd[m] = rsf;
    }
  }
}

template <class T>
void layernorm_bwd_t(const T* dy, const T* x, const float* w, const float* mean, const float* rstd,
                     T* dx, float* dw, float* db, int M, int D) {
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w; dw, db are reduced per
  // thread into private buffers and summed in thread order (deterministic for a fixed team).
  // Per-element ld()/st<T>() here: fp32 row copies as in the forward measured 8% slower in bf16
  // (the double-precision sums dominate; docs/benchmarks.md).
  const bool par = static_cast<long>(M) * D >= 16384;
  const int nt = par ? omp_get_max_threads() : 1;
  std::vector<double> part(static_cast<size_t>(nt) * 2 * D, 0.0);
#pragma omp parallel num_threads(nt) if (par)
  {
    double* pdw = part.data() + static_cast<size_t>(omp_get_thread_num()) * 2 * D;
    double* pdb = pdw + D;
    std::vector<float> xh(D), gw(D);
#pragma omp for schedule(static)
    for (int m = 0; m < M; ++m) {
      const T* xr = x + static_cast<size_t>(m) * D;
      const T* gr = dy + static_cast<size_t>(m) * D;
      T* dxr = dx + static_cast<size_t>(m) * D;
      const float mu = mean[m], rs = rstd[m];
      double sg = 0, sgx = 0;
#pragma omp simd reduction(+ : sg, sgx)
      for (int d = 0; d < D; ++d) {
        const float xhat = (cpu::ld(xr[d]) - mu) * rs;
        xh[d] = xhat;
        const float gd = cpu::ld(gr[d]);
        const float g = gd * w[d];
        gw[d] = g;
        sg += g;
        sgx += static_cast<double>(g) * xhat;
        pdw[d] += static_cast<double>(gd) * xhat;
        pdb[d] += gd;
      }
      const float mg = static_cast<float>(sg / D), mgx = static_cast<float>(sgx / D);
#pragma omp simd
      // The stored product: recomputing gr * w here lets -march=native contract it with - mg into
      // an FMA, whose unrounded product leaves rounding noise * rstd where g - mean(g) is 0.
      for (int d = 0; d < D; ++d)
        dxr[d] = cpu::st<T>(cpu::ld(dxr[d]) + rs * (gw[d] - mg - xh[d] * mgx));
    }
  }
  for (int t = 0; t < nt; ++t) {
    const double* pdw = part.data() + static_cast<size_t>(t) * 2 * D;
    for (int d = 0; d < D; ++d) {
      dw[d] += static_cast<float>(pdw[d]);
      db[d] += static_cast<float>(pdw[D + d]);
    }
  }
}

}  // namespace

void CpuBackend::layernorm_fwd(const float* x, const float* w, const float* b, float* y,
                               float* mean, float* rstd, int M, int D, float eps) {
  UVIT_CPU_ACT(layernorm_fwd_t(as<T>(x), w, b, as<T>(y), mean, rstd, M, D, eps));
}

void CpuBackend::layernorm_bwd(const float* dy, const float* x, const float* w, const float* mean,
                               const float* rstd, float* dx, float* dw, float* db, int M, int D) {
  UVIT_CPU_ACT(layernorm_bwd_t(as<T>(dy), as<T>(x), w, mean, rstd, as<T>(dx), dw, db, M, D));
}

}  // namespace uvit
