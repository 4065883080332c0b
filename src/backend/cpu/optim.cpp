// AdamW and EMA as flat vectorised loops, following torch.optim.AdamW (PyTorch 1.13, single-tensor
// path) operation by operation so fp32 rounding matches: scalars and bias corrections in double,
// then p *= 1 - lr*wd; m = m*b1 + g*(1-b1); v = v*b2 + (1-b2)*g*g;
// denom = sqrt(v) / sqrt(bc2) + eps; p += (-lr/bc1) * m / denom.
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string>

#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 15;

// The hyperparameters arrive as fp32, but PyTorch sees the config's decimal literals as doubles
// (1 - 0.999 is 1e-3 there, while 1 - double(0.999f) is 0.99998713e-3). Recover the shortest
// decimal that rounds to the given float and use it as the double PyTorch would have had.
double as_decimal(float f) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf) - 1, f);
  *r.ptr = '\0';
  return std::strtod(buf, nullptr);
}
}  // namespace

void CpuBackend::adamw(float* p, const float* g, float* m, float* v, size_t n, float lr,
                       float beta1, float beta2, float eps, float weight_decay, long step) {
  const double lr_d = as_decimal(lr), b1_d = as_decimal(beta1), b2_d = as_decimal(beta2);
  const double bc1 = 1.0 - std::pow(b1_d, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2_d, static_cast<double>(step));
  const float decay = static_cast<float>(1.0 - lr_d * as_decimal(weight_decay));
  const float one_m_b1 = static_cast<float>(1.0 - b1_d);
  const float one_m_b2 = static_cast<float>(1.0 - b2_d);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float neg_step = static_cast<float>(-(lr_d / bc1));
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

void CpuBackend::ema(float* e, const float* p, size_t n, float decay) {
  const float keep = static_cast<float>(1.0 - as_decimal(decay));
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (ln >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) e[i] = e[i] * decay + keep * p[i];
}

}  // namespace uvit
