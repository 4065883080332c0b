// Classifier-free guidance (SPEC 8): eps_c + scale·(eps_c - eps_u), in float32 like the official
// code; MDT's power-cos schedule of the scale (docs/mdt_diffusion.md).
#include <algorithm>
#include <cmath>

#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"

namespace uvit {

void cfg_combine(const float* eps_c, const float* eps_u, float scale, float* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = eps_c[i] + scale * (eps_c[i] - eps_u[i]);
}

std::vector<float> cfg_combine(const std::vector<float>& eps_c, const std::vector<float>& eps_u,
                               float scale) {
  UVIT_CHECK(eps_c.size() == eps_u.size(), "classifier-free guidance: conditional output has ",
             eps_c.size(), " elements, unconditional has ", eps_u.size());
  std::vector<float> out(eps_c.size());
  cfg_combine(eps_c.data(), eps_u.data(), scale, out.data(), out.size());
  return out;
}

double power_cos_scale(double tau, double power) {
  UVIT_CHECK(std::isfinite(power) && power >= 0, "the power-cos guidance power must be >= 0, got ",
             power);
  // (a solver's grid end may round a hair outside [0, 1])
  UVIT_CHECK(tau >= -1e-9 && tau <= 1 + 1e-9, "power-cos guidance: time ", tau,
             " is outside [0, 1]");
  const double kPi = 3.14159265358979323846;  // math.pi
  const double u = 1.0 - std::min(std::max(tau, 0.0), 1.0);
  return (1.0 - std::cos(std::pow(u, power) * kPi)) / 2.0;
}

}  // namespace uvit
