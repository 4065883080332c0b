// AdamW and EMA as flat vectorised loops, following torch.optim.AdamW (PyTorch 1.13, single-tensor
// path) operation by operation so fp32 rounding matches: scalars and bias corrections in double,
// then p *= 1 - lr*wd; m = m*b1 + g*(1-b1); v = v*b2 + (1-b2)*g*g;
// denom = sqrt(v) / sqrt(bc2) + eps; p += (-lr/bc1) * m / denom.
// Adan likewise, its per-element update shared with CUDA (backend/adan_update.hpp). adamw_ema is
// AdamW then EMA in one pass, element for element the same arithmetic as the two kernels.
#include <cmath>

#include "backend/adan_update.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/optim_scalars.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 15;

// One element of AdamW; the unfused and fused kernels both call it, so their p, m, v agree bit for
// bit. The FMAs are spelled out (the file is compiled without contraction, CMakeLists.txt): the
// moments in one FMA each, the decayed p rounded before the step is added, as the scalar loop
// compiled before it was vectorised (and as torch's mul_ then addcdiv_).
inline float adamw_one(float& p, float g, float& m, float& v, const AdamScalars& s) {
  const float pi = p * s.decay;
  const float mi = std::fma(m, s.beta1, g * s.one_m_b1);
  const float vi = std::fma(v, s.beta2, s.one_m_b2 * g * g);
  m = mi;
  v = vi;
  const float denom = std::sqrt(vi) / s.bc2_sqrt + s.eps;
  return p = pi + s.neg_step * mi / denom;
}

inline void ema_one(float& e, float p, float decay, float keep) {
  e = std::fma(e, decay, keep * p);
}
}  // namespace

void CpuBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, long step) {
  const AdamScalars s = adam_scalars(lr, beta1, beta2, eps, weight_decay, step);
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (ln >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) adamw_one(p[i], g[i], m[i], v[i], s);
}

// One pass instead of two: the EMA reads the fresh p from a register rather than memory again
// (memory-bound: 9 fp32 streams instead of 7 + 3; docs/kernels.md, "Optimizer").
void CpuBackend::adamw_ema(float* p, const float* g, float* m, float* v, float* e, size_t n,
                           float lr, float beta1, float beta2, float eps, float weight_decay,
                           long step, float ema_decay) {
  const AdamScalars s = adam_scalars(lr, beta1, beta2, eps, weight_decay, step);
  const float keep = ema_keep(ema_decay);
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (ln >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i)
    ema_one(e[i], adamw_one(p[i], g[i], m[i], v[i], s), ema_decay, keep);
}

void CpuBackend::adan(float* p, const float* g, float* m, float* d, float* n, float* gp,
                      size_t count, const AdanHyper& h, long step) {
  const AdanScalars s = adan_scalars(h, step);
  const long ln = static_cast<long>(count);
#pragma omp parallel for simd if (ln >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) adan_one(p[i], g[i], m[i], d[i], n[i], gp[i], s);
}

void CpuBackend::ema(float* e, const float* p, size_t n, float decay) {
  const float keep = ema_keep(decay);
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (ln >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) ema_one(e[i], p[i], decay, keep);
}

}  // namespace uvit
