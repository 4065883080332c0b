// Elementwise activations. GELU is the exact erf form (nn.GELU default) or the tanh approximation
// (DiT); erf and exp come from vmath.hpp so the loops vectorise (std::erf made GELU a visible share
// of the forward pass).
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/vmath.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 14;
constexpr float kRsqrt2 = 0.70710678118654752f;
constexpr float kRsqrt2Pi = 0.39894228040143268f;  // 1/sqrt(2 pi)
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kCoef = 0.044715f;  // the cubic term of the tanh approximation

// tanh(u) through exp, vectorisable: 1 - 2 / (exp(2u) + 1), exact at the saturated ends.
inline float tanh_fast(float u) { return 1.f - 2.f / (vm::exp(2.f * u) + 1.f); }

using cpu::as;

// In bf16 mode an input takes one of 65536 values, so the maps read f(x) (rounded to bf16) and
// f'(x) (fp32) from tables that the same f builds once per kernel, on first use: bit for bit what
// evaluating f gives, and faster than the erf/exp polynomials, which made these kernels slower in
// bf16 than in fp32 however fast the conversions (docs/cpu_bf16.md). One table per lambda type, so
// per kernel; 128 KiB (forward) or 256 KiB (backward), built in about 0.15 ms.
template <class R, class F>
const R* table(F f) {
  static const std::vector<R> t = [&] {
    // One padding entry: lookup16 reads 32 bits at the 16-bit entry 65535.
    std::vector<R> v((size_t(1) << 16) + 1);
    for (uint32_t b = 0; b < (uint32_t(1) << 16); ++b) {
      const float y = f(cpu::ld(cpu::bf16{uint16_t(b)}));
      if constexpr (std::is_same_v<R, float>)
        v[b] = y;
      else
        v[b] = cpu::to_bf16(y).bits;
    }
    return v;
  }();
  return t.data();
}

// t[x] for m bf16 x: 16 per vpgatherdd with AVX-512, which reads 32 bits at byte 2x and keeps the
// low 16 (the table's padding entry covers x = 65535); the scalar loop loads one entry at a time,
// and these lookups were 4 % of bf16 sampling (docs/benchmarks.md, "AMX Xeon, 2026-12-06 (2)").
inline void lookup16(const uint16_t* t, const cpu::bf16* x, cpu::bf16* y, long m) {
  long i = 0;
#if defined(UVIT_CPU_AVX512)
  const __mmask16 all = 0xffff;  // maskz forms: GCC 12 warns on the plain ones' undefined sources
  for (; i + 16 <= m; i += 16) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i));
    const __m512i idx = _mm512_maskz_cvtepu16_epi32(all, b);
    const __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), all, idx, t, 2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_maskz_cvtepi32_epi16(all, v));
  }
#endif
  for (; i < m; ++i) y[i].bits = t[x[i].bits];
}

// t[x] as fp32 lanes for m <= 16 bf16 x (lanes past m are 0).
inline cpu::f32x16 gather16(const float* t, const cpu::bf16* x, long m) {
#if defined(UVIT_CPU_AVX512)
  const __mmask16 k = cpu::lanes(m);
  const __m256i b = _mm256_maskz_loadu_epi16(k, x);
  const __m512i idx = _mm512_maskz_cvtepu16_epi32(0xffff, b);
  return cpu::f32x16(_mm512_mask_i32gather_ps(_mm512_setzero_ps(), k, idx, t, 4));
#else
  cpu::f32x16 v{};
  for (long j = 0; j < m; ++j) v[j] = t[x[j].bits];
  return v;
#endif
}

// simdlen(16) on the fp32 maps: GCC's tuning for Intel AVX-512 cores (-march=native on the AMX
// Xeon) prefers 256-bit vectors, and these loops, with no reduction, give the same bits in 16 lanes
// at 1.2-2x the speed (docs/kernels.md, "Vector width").

// y = f(x) elementwise.
template <class T, class F>
void map_fwd(const float* x, float* y, size_t n, F f) {
  const T* xs = as<T>(x);
  T* ys = as<T>(y);
  const long ln = static_cast<long>(n);
  if constexpr (std::is_same_v<T, cpu::bf16>) {
    const uint16_t* t = table<uint16_t>(f);
    cpu::for_each_block(ln, kParallelMin,
                        [&](long i0, long m) { lookup16(t, xs + i0, ys + i0, m); });
  } else {
    // Fixed blocks, not one span per thread: an element's code path (the vector loop or its
    // remainder) then does not depend on the thread count, nor do its bits (docs/cli.md,
    // "Reproducibility"; per-thread spans made --threads 5 and 7 train differently).
    cpu::for_each_block(ln, kParallelMin, [&](long i0, long m) {
      const T* xb = xs + i0;
      T* yb = ys + i0;
#pragma omp simd simdlen(16)
      for (long i = 0; i < m; ++i) yb[i] = f(xb[i]);
    });
  }
}

// dx = dy * f'(x) elementwise (dx may alias dy); f returns f'(x).
template <class T, class F>
void map_bwd(const float* dy, const float* x, float* dx, size_t n, F f) {
  const T *gs = as<T>(dy), *xs = as<T>(x);
  T* ds = as<T>(dx);
  const long ln = static_cast<long>(n);
  if constexpr (std::is_same_v<T, cpu::bf16>) {
    const float* t = table<float>(f);
    cpu::for_each_block(ln, kParallelMin, [&](long i0, long m) {
      const cpu::bf16 *g = gs + i0, *xb = xs + i0;
      cpu::bf16* d = ds + i0;
      cpu::for_each16(m, [=](long i, long k) {
        cpu::store16(d + i, cpu::load16(g + i, k) * gather16(t, xb + i, k), k);
      });
    });
  } else {
    cpu::for_each_block(ln, kParallelMin, [&](long i0, long m) {  // fixed blocks: as map_fwd
      const T *gb = gs + i0, *xb = xs + i0;
      T* db = ds + i0;
#pragma omp simd simdlen(16)
      for (long i = 0; i < m; ++i) db[i] = gb[i] * f(xb[i]);
    });
  }
}
}  // namespace

void CpuBackend::gelu_fwd(const float* x, float* y, size_t n) {
  UVIT_CPU_ACT(
      map_fwd<T>(x, y, n, [](float v) { return 0.5f * v * (1.f + vm::erf(v * kRsqrt2)); }));
}

void CpuBackend::gelu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_CPU_ACT(map_bwd<T>(dy, x, dx, n, [](float v) {
    const float cdf = 0.5f * (1.f + vm::erf(v * kRsqrt2));
    const float pdf = kRsqrt2Pi * vm::exp(-0.5f * v * v);
    return cdf + v * pdf;
  }));
}

void CpuBackend::gelu_tanh_fwd(const float* x, float* y, size_t n) {
  UVIT_CPU_ACT(map_fwd<T>(x, y, n, [](float v) {
    return 0.5f * v * (1.f + tanh_fast(kSqrt2OverPi * (v + kCoef * v * v * v)));
  }));
}

void CpuBackend::gelu_tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_CPU_ACT(map_bwd<T>(dy, x, dx, n, [](float v) {
    const float th = tanh_fast(kSqrt2OverPi * (v + kCoef * v * v * v));
    const float du = kSqrt2OverPi * (1.f + 3.f * kCoef * v * v);
    return 0.5f * (1.f + th) + 0.5f * v * (1.f - th * th) * du;
  }));
}

void CpuBackend::silu_fwd(const float* x, float* y, size_t n) {
  UVIT_CPU_ACT(map_fwd<T>(x, y, n, [](float v) { return v / (1.f + vm::exp(-v)); }));
}

void CpuBackend::silu_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_CPU_ACT(map_bwd<T>(dy, x, dx, n, [](float v) {
    const float s = 1.f / (1.f + vm::exp(-v));
    return s * (1.f + v * (1.f - s));
  }));
}

void CpuBackend::tanh_fwd(const float* x, float* y, size_t n) {
  UVIT_CPU_ACT(map_fwd<T>(x, y, n, [](float v) { return std::tanh(v); }));
}

void CpuBackend::tanh_bwd(const float* dy, const float* x, float* dx, size_t n) {
  UVIT_CPU_ACT(map_bwd<T>(dy, x, dx, n, [](float v) {
    const float t = std::tanh(v);
    return 1.f - t * t;
  }));
}

}  // namespace uvit
