// LayerNorm over the last dimension, statistics accumulated in double (tests compare against a
// float64 reference at 1e-5 relative; the rows are short, so this costs little).

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
using cpu::as;

// The row statistics in one pass, in double over 16-lane fp32 loads (act.hpp: load16 widens bf16
// in registers): s1 = sum(x - c) and s2 = sum((x - c)^2) about c = x[0], so mean = c + s1 / n and
// var = s2 / n - (s1 / n)^2. The shift keeps the cancellation of E[x^2] - E[x]^2 away (its error
// is 1e-16 relative times (mean - c)^2 / var; x - c and its square are exact in double). Each is
// kept in 32 partial sums: lane j of the row's 16-element chunk k adds into partial (k % 2) * 16 +
// j, the partials added in index order at the end, so four independent 8-double accumulators keep
// the adds from being one dependency chain. The same code runs for fp32 and bf16, so a bf16 row's
// statistics are those of its fp32 widening, bit for bit.
struct RowStats {
  double mean, var;
};

inline double add_parts(const double* part) {
  double s = 0;
  for (int j = 0; j < 32; ++j) s += part[j];
  return s;
}

#if defined(UVIT_CPU_AVX512)
// Lanes 8 hi .. 8 hi + 7 of v as doubles (the maskz extract: GCC 12 warns on the plain one).
template <int hi>
inline __m512d half_pd(cpu::f32x16 v) {
  const __m256d h = _mm512_maskz_extractf64x4_pd(__mmask8(0xf), _mm512_castps_pd(__m512(v)), hi);
  return _mm512_cvtps_pd(_mm256_castpd_ps(h));
}
inline __mmask8 half_lanes(long m, int hi) {
  const long k = std::clamp(m - 8L * hi, 0L, 8L);
  return __mmask8((1u << k) - 1);
}
// One 16-lane chunk (its first m lanes) into the partial sums s1[0..1], s2[0..1].
inline void add_chunk(__m512d* s1, __m512d* s2, cpu::f32x16 v, long m, __m512d c) {
  const __m512d d[2] = {_mm512_sub_pd(half_pd<0>(v), c), _mm512_sub_pd(half_pd<1>(v), c)};
  for (int h = 0; h < 2; ++h) {
    const __mmask8 k = half_lanes(m, h);
    s1[h] = _mm512_mask_add_pd(s1[h], k, s1[h], d[h]);
    s2[h] = _mm512_mask3_fmadd_pd(d[h], d[h], s2[h], k);
  }
}
inline double add_parts(const __m512d* acc) {
  alignas(64) double part[32];
  for (int a = 0; a < 4; ++a) _mm512_store_pd(part + 8 * a, acc[a]);
  return add_parts(part);
}
#endif

// With buf (bf16 rows), the row's fp32 widening is also stored there for the output pass.
template <class T>
RowStats row_stats(const T* x, long n, float* buf) {
  const double c = n > 0 ? cpu::ld(x[0]) : 0.0;
#if defined(UVIT_CPU_AVX512)
  // Two chunks per iteration, each with its own accumulators: fixed indices keep them in
  // registers.
  __m512d s1[4], s2[4];
  for (int a = 0; a < 4; ++a) s1[a] = s2[a] = _mm512_setzero_pd();
  const __m512d vc = _mm512_set1_pd(c);
  for (long i = 0; i < n; i += 32) {
    const long m0 = std::min(16L, n - i), m1 = std::clamp(n - i - 16, 0L, 16L);
    const cpu::f32x16 a = cpu::load16(x + i, m0);
    if (buf) cpu::store16(buf + i, a, m0);
    add_chunk(s1, s2, a, m0, vc);
    if (m1 > 0) {
      const cpu::f32x16 b = cpu::load16(x + i + 16, m1);
      if (buf) cpu::store16(buf + i + 16, b, m1);
      add_chunk(s1 + 2, s2 + 2, b, m1, vc);
    }
  }
  const double t1 = add_parts(s1), t2 = add_parts(s2);
#else
  double p1[32] = {}, p2[32] = {};
  for (long i = 0; i < n; i += 16) {
    const long o = ((i / 16) % 2) * 16;
    for (long j = 0; j < std::min(16L, n - i); ++j) {
      if (buf) buf[i + j] = cpu::ld(x[i + j]);
      const double d = cpu::ld(x[i + j]) - c;
      p1[o + j] += d;
      p2[o + j] += d * d;
    }
  }
  const double t1 = add_parts(p1), t2 = add_parts(p2);
#endif
  const double m1 = t1 / double(n);
  return {c + m1, std::max(t2 / double(n) - m1 * m1, 0.0)};
}

// Two passes over a row: the statistics, which read the act row through load16 (bf16 widened in
// registers, and stored once into the fp32 row buf in L1 for the second pass), then the output,
// written through store16. bf16 moves half the bytes of fp32 (docs/benchmarks.md, "LayerNorm in
// bf16, second pass").
template <class T>
void layernorm_row(const T* xr, const float* w, const float* b, T* yr, float* mean, float* rstd,
                   long D, float eps, float* buf) {
  const RowStats st = row_stats(xr, D, buf);
  const double rs = 1.0 / std::sqrt(st.var + static_cast<double>(eps));
  const float muf = static_cast<float>(st.mean), rsf = static_cast<float>(rs);
  const float* xf = buf;
  cpu::for_each16(D, [=](long i, long k) {
    const cpu::f32x16 v = xf ? cpu::load16(xf + i, k) : cpu::load16(xr + i, k);
    cpu::store16(yr + i, rsf * (-muf + v) * cpu::load16(w + i, k) + cpu::load16(b + i, k), k);
  });
  if (mean) *mean = muf;
  if (rstd) *rstd = rsf;
}

template <class T>
void layernorm_fwd_t(const T* x, const float* w, const float* b, T* y, float* mean, float* rstd,
                     int M, int D, float eps) {
#pragma omp parallel if (static_cast <long>(M) * D >= 16384)
  {
    std::vector<float> xb = cpu::f32_scratch<T>(D);  // empty for fp32: the row itself is read
    float* buf = xb.empty() ? nullptr : xb.data();
#pragma omp for schedule(static)
    for (int m = 0; m < M; ++m)
      layernorm_row(x + static_cast<size_t>(m) * D, w, b, y + static_cast<size_t>(m) * D,
                    mean ? mean + m : nullptr, rstd ? rstd + m : nullptr, D, eps, buf);
  }
}

// dw, db are summed over fixed blocks of rows, each block's partial in double in row order and the
// partials added in block order: the blocks do not depend on the thread count, so neither do the
// bits (a split per thread made `--threads 1` and `2` train differently; docs/cli.md,
// "Reproducibility"). At most kLnBlocks blocks bound the partials' memory (2 D doubles each).
constexpr int kLnBlocks = 128, kLnBlockRows = 64;

template <class T>
void layernorm_bwd_t(const T* dy, const T* x, const float* w, const float* mean, const float* rstd,
                     T* dx, float* dw, float* db, int M, int D) {
  // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * w.
  // Per-element ld()/st<T>() here: fp32 row copies as in the forward measured 8% slower in bf16
  // (the double-precision sums dominate; docs/benchmarks.md).
  const bool par = static_cast<long>(M) * D >= 16384;
  const cpu::FixedBlocks blocks(M, kLnBlockRows, kLnBlocks);
  const int nb = static_cast<int>(blocks.count);
  std::vector<double> part(static_cast<size_t>(nb) * 2 * D, 0.0);
#pragma omp parallel if (par)
  {
    std::vector<float> xh(D), gw(D);
#pragma omp for schedule(static)
    for (int blk = 0; blk < nb; ++blk) {
      double* pdw = part.data() + static_cast<size_t>(blk) * 2 * D;
      double* pdb = pdw + D;
      for (int m = static_cast<int>(blocks.begin(blk)); m < blocks.end(blk); ++m) {
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
#pragma omp simd simdlen(16)
        // 16 lanes: no reduction here (docs/kernels.md, "Vector width"). The stored product:
        // recomputing gr * w here lets -march=native contract it with - mg into an FMA, whose
        // unrounded product leaves rounding noise * rstd where g - mean(g) is 0.
        for (int d = 0; d < D; ++d)
          dxr[d] = cpu::st<T>(cpu::ld(dxr[d]) + rs * (gw[d] - mg - xh[d] * mgx));
      }
    }
  }
  for (int d = 0; d < D; ++d) {
    double sw = 0, sb = 0;
    for (int blk = 0; blk < nb; ++blk) {
      sw += part[static_cast<size_t>(blk) * 2 * D + d];
      sb += part[static_cast<size_t>(blk) * 2 * D + D + d];
    }
    dw[d] += static_cast<float>(sw);
    db[d] += static_cast<float>(sb);
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
