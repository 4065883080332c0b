// AdamW and EMA as flat vectorised loops, following torch.optim.AdamW (PyTorch 1.13, single-tensor
// path) operation by operation so fp32 rounding matches: scalars and bias corrections in double,
// then p *= 1 - lr*wd; m = m*b1 + g*(1-b1); v = v*b2 + (1-b2)*g*g;
// denom = sqrt(v) / sqrt(bc2) + eps; p += (-lr/bc1) * m / denom.
// Adan likewise, its per-element update shared with CUDA (backend/adan_update.hpp).
#include <cmath>

#include "backend/adan_update.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/optim_scalars.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 15;
}  // namespace

void CpuBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, long step) {
  const AdamScalars s = adam_scalars(lr, beta1, beta2, eps, weight_decay, step);
  const float decay = s.decay, one_m_b1 = s.one_m_b1, one_m_b2 = s.one_m_b2, bc2_sqrt = s.bc2_sqrt,
              neg_step = s.neg_step;
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (ln >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) {
    const float gi = g[i];
    const float pi = p[i] * decay;
    const float mi = m[i] * beta1 + gi * one_m_b1;
    const float vi = v[i] * beta2 + one_m_b2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pi + neg_step * mi / denom;
  }
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
  for (long i = 0; i < ln; ++i) e[i] = e[i] * decay + keep * p[i];
}

}  // namespace uvit
