// Euler–Maruyama for the linear VP SDE (sde.py, SPEC 10): reverse SDE and probability-flow ODE.
// Official quirks kept: drift and diffusion at the upper time of each interval; the last step
// (1e-3 -> 0) adds no noise and there is no separate denoising step.
#include "sampler_common.hpp"
#include "uvit/rng.hpp"

namespace uvit {

EulerCoeffs euler_maruyama_coeffs(const NoiseSchedule& ns, double s, double t, bool ode) {
  UVIT_CHECK(ns.kind() == ScheduleKind::LinearVP,
             "Euler–Maruyama: needs the linear VP schedule (continuous models), not ", ns.name());
  UVIT_CHECK(s < t, "Euler–Maruyama: step from t = ", t, " to s = ", s, " must go down in time");
  const double beta = ns.beta(t);
  const double cum_beta = -std::expm1(2 * ns.log_alpha(t));  // 1 - exp(-(0.1 t + 9.95 t^2))
  const double dt = s - t;                                   // negative
  // drift = -0.5·beta·x + k·beta·eps/sqrt(cum_beta), k = 1 (SDE) or 1/2 (ODE); x_s = x + drift·dt.
  const double k = ode ? 0.5 : 1.0;
  EulerCoeffs c;
  c.x_coef = 1 - 0.5 * beta * dt;
  c.eps_coef = k * beta * dt / std::sqrt(cum_beta);
  c.noise_std = (ode || s == 0) ? 0.0 : std::sqrt(beta) * std::sqrt(-dt);
  return c;
}

namespace detail {

template <class T>
void add_noise(std::vector<T>& x, double noise_std, uint64_t seed, uint64_t k, uint64_t offset) {
  const Philox rng(seed, sampler_noise_stream(k));
  // Counter-based draws: the result does not depend on the thread split.
#pragma omp parallel for if (x.size() > (1u << 15))
  for (size_t i = 0; i < x.size(); ++i)
    x[i] = T(double(x[i]) + noise_std * double(rng.normal(offset + i)));
}

template <class T>
std::vector<T> euler_maruyama_run(const NoiseSchedule& ns, int steps, bool ode, std::vector<T> x,
                                  const EpsFnT<T>& eps_fn, uint64_t seed, const SamplerOptions& o) {
  check_input(x, "Euler–Maruyama");
  UVIT_CHECK(ns.kind() == ScheduleKind::LinearVP,
             "Euler–Maruyama: needs the linear VP schedule (continuous models), not ", ns.name());
  UVIT_CHECK(
      o.t_start == 0 || o.t_start == 1,
      "Euler–Maruyama: t_start is fixed at T = 1 (its grid is [0] + linspace(eps, 1, steps))");
  const std::vector<double> g = euler_maruyama_grid(o.t_end > 0 ? o.t_end : 1e-3, steps);
  ModelCall<T> m{ns, eps_fn, false};
  std::vector<T> eps;
  for (int k = steps; k >= 1; --k) {
    const double s = g[k - 1], t = g[k];
    const EulerCoeffs c = euler_maruyama_coeffs(ns, s, t, ode);
    m(x, t, eps);
    lincomb(x, {c.x_coef, c.eps_coef}, {&x, &eps});
    if (c.noise_std > 0) add_noise(x, c.noise_std, seed, uint64_t(steps - k), o.noise_offset);
    if (o.progress) o.progress(steps - k + 1, steps);
  }
  return x;
}

template void add_noise(std::vector<float>&, double, uint64_t, uint64_t, uint64_t);
template void add_noise(std::vector<double>&, double, uint64_t, uint64_t, uint64_t);
template std::vector<float> euler_maruyama_run(const NoiseSchedule&, int, bool, std::vector<float>,
                                               const EpsFnT<float>&, uint64_t,
                                               const SamplerOptions&);
template std::vector<double> euler_maruyama_run(const NoiseSchedule&, int, bool,
                                                std::vector<double>, const EpsFnT<double>&,
                                                uint64_t, const SamplerOptions&);

}  // namespace detail
}  // namespace uvit
