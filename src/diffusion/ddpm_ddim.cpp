// Reference discrete samplers (SPEC 11, denoising.py of the DPM-Solver repository): DDIM with eta
// and DDPM ancestral sampling on the index sequence 0, skip, 2·skip, ... (skip = N/steps). Index i
// is evaluated at t = (i+1)/N, so the network label is n = i+1; alphabar_i = alpha((i+1)/N)^2,
// which for the discrete schedule is the DDPM cumulative product.
#include <algorithm>

#include "sampler_common.hpp"

namespace uvit::detail {

template <class T>
std::vector<T> ddim_run(const NoiseSchedule& ns, int steps, bool ddpm, std::vector<T> x,
                        const EpsFnT<T>& eps_fn, uint64_t seed, const SamplerOptions& o) {
  const char* who = ddpm ? "DDPM" : "DDIM";
  check_input(x, who);
  UVIT_CHECK(
      o.t_end == 0 && o.t_start == 0, who,
      ": t_start/t_end are not used (the grid is the DDPM index sequence ending at t = 1/N)");
  UVIT_CHECK(o.eta >= 0, who, ": eta = ", o.eta, " must be >= 0");
  const int n = ns.total_n();
  const std::vector<int> seq = ddim_index_sequence(n, steps);
  auto time_of = [&](int i) { return double(i + 1) / n; };
  auto abar = [&](int i) {
    if (i < 0) return 1.0;
    return ns.kind() == ScheduleKind::Discrete ? ns.alphabar_n(i + 1)
                                               : std::exp(2 * ns.log_alpha(time_of(i)));
  };
  ModelCall<T> m{ns, eps_fn, false};
  std::vector<T> eps, x0(x.size());
  for (int k = steps - 1; k >= 0; --k) {
    const int i = seq[k], j = k > 0 ? seq[k - 1] : -1;
    const double at = abar(i), an = abar(j);
    m(x, time_of(i), eps);
    const double sa = std::sqrt(at), sb = std::sqrt(1 - at);
    for (size_t e = 0; e < x.size(); ++e) {
      double v = (double(x[e]) - sb * double(eps[e])) / sa;
      if (o.clip_x0) v = std::clamp(v, -1.0, 1.0);
      x0[e] = T(v);
    }
    double noise_std = 0;
    if (ddpm) {
      // Posterior mean with the strided beta_t = 1 - at/an (denoising.py ddpm_steps).
      const double beta_t = 1 - at / an;
      const double ca = std::sqrt(an) * beta_t / (1 - at);
      const double cb = std::sqrt(1 - beta_t) * (1 - an) / (1 - at);
      lincomb(x, {ca, cb}, {&x0, &x});
      const double var = o.ddpm_small_variance ? beta_t * (1 - an) / (1 - at) : beta_t;
      if (i != 0) noise_std = std::sqrt(var);
    } else {
      const double c1 = o.eta * std::sqrt((1 - at / an) * (1 - an) / (1 - at));
      const double c2 = std::sqrt(std::max(0.0, 1 - an - c1 * c1));
      lincomb(x, {std::sqrt(an), c2}, {&x0, &eps});
      noise_std = c1;
    }
    if (noise_std > 0) add_noise(x, noise_std, seed, uint64_t(steps - 1 - k), o.noise_offset);
    if (o.progress) o.progress(steps - k, steps);
  }
  return x;
}

template std::vector<float> ddim_run(const NoiseSchedule&, int, bool, std::vector<float>,
                                     const EpsFnT<float>&, uint64_t, const SamplerOptions&);
template std::vector<double> ddim_run(const NoiseSchedule&, int, bool, std::vector<double>,
                                      const EpsFnT<double>&, uint64_t, const SamplerOptions&);

}  // namespace uvit::detail
