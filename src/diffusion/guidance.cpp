// Classifier-free guidance (SPEC 8): eps_c + scale·(eps_c - eps_u), in float32 like the official
// code.
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

}  // namespace uvit
