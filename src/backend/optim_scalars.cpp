#include "backend/optim_scalars.hpp"

#include <charconv>
#include <cmath>
#include <cstdlib>

namespace uvit {

namespace {
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

AdamScalars adam_scalars(float lr, float beta1, float beta2, float eps, float weight_decay,
                         long step) {
  const double lr_d = as_decimal(lr), b1_d = as_decimal(beta1), b2_d = as_decimal(beta2);
  const double bc1 = 1.0 - std::pow(b1_d, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(b2_d, static_cast<double>(step));
  AdamScalars s;
  s.decay = static_cast<float>(1.0 - lr_d * as_decimal(weight_decay));
  s.beta1 = beta1;
  s.beta2 = beta2;
  s.one_m_b1 = static_cast<float>(1.0 - b1_d);
  s.one_m_b2 = static_cast<float>(1.0 - b2_d);
  s.bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  s.neg_step = static_cast<float>(-(lr_d / bc1));
  s.eps = eps;
  return s;
}

AdanScalars adan_scalars(const AdanHyper& h, long step) {
  const double lr = as_decimal(h.lr), b1 = as_decimal(h.beta1), b2 = as_decimal(h.beta2),
               b3 = as_decimal(h.beta3), wd = as_decimal(h.weight_decay);
  const double k = static_cast<double>(step);
  const double bc1 = 1.0 - std::pow(b1, k), bc2 = 1.0 - std::pow(b2, k),
               bc3 = 1.0 - std::pow(b3, k);
  AdanScalars s;
  s.beta1 = h.beta1;
  s.beta2 = h.beta2;
  s.beta3 = h.beta3;
  s.one_m_b1 = static_cast<float>(1.0 - b1);
  s.one_m_b2 = static_cast<float>(1.0 - b2);
  s.one_m_b3 = static_cast<float>(1.0 - b3);
  s.bc3_sqrt = static_cast<float>(std::sqrt(bc3));
  s.neg_step = static_cast<float>(-(lr / bc1));
  s.neg_step_diff = static_cast<float>(-(lr * b2 / bc2));
  s.decay = static_cast<float>(1.0 - lr * wd);
  s.div = static_cast<float>(1.0 + lr * wd);
  s.eps = h.eps;
  s.no_prox = h.no_prox ? 1 : 0;
  s.first = step == 1 ? 1 : 0;
  return s;
}

float ema_keep(float decay) { return static_cast<float>(1.0 - as_decimal(decay)); }

}  // namespace uvit
