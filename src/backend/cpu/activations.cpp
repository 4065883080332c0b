// Elementwise activations. GELU is the exact erf form (nn.GELU default) or the tanh approximation
// (DiT); erf and exp come from vmath.hpp so the loops vectorise (std::erf made GELU a visible share
// of the forward pass).
#include <cmath>

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

// y = f(x) elementwise, on fp32 blocks (act.hpp).
template <class T, class F>
void map_fwd(const float* x, float* y, size_t n, F f) {
  const T* xs = as<T>(x);
  T* ys = as<T>(y);
  cpu::for_each_block(long(n), kParallelMin, [&](long i0, long m) {
    alignas(64) float xb[cpu::kBlock], yb[cpu::kBlock];
    const float* xv = cpu::load_f32(xs + i0, m, xb);
    float* yv = cpu::out_f32(ys + i0, yb);
#pragma omp simd
    for (long i = 0; i < m; ++i) yv[i] = f(xv[i]);
    cpu::store_f32(ys + i0, yv, m);
  });
}

// dx = dy * f'(x) elementwise (dx may alias dy); f returns f'(x).
template <class T, class F>
void map_bwd(const float* dy, const float* x, float* dx, size_t n, F f) {
  const T *gs = as<T>(dy), *xs = as<T>(x);
  T* ds = as<T>(dx);
  cpu::for_each_block(long(n), kParallelMin, [&](long i0, long m) {
    alignas(64) float gb[cpu::kBlock], xb[cpu::kBlock], db[cpu::kBlock];
    const float* gv = cpu::load_f32(gs + i0, m, gb);
    const float* xv = cpu::load_f32(xs + i0, m, xb);
    float* dv = cpu::out_f32(ds + i0, db);
#pragma omp simd
    for (long i = 0; i < m; ++i) dv[i] = gv[i] * f(xv[i]);
    cpu::store_f32(ds + i0, dv, m);
  });
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

}  // namespace uvit
