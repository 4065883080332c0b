// Shared pieces of the samplers: the checked model call and per-element linear combinations
// (computed in double, stored in the element type T).
#pragma once
#include <cmath>
#include <vector>

#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"

namespace uvit::detail {

// Calls the noise model, checks its output and counts evaluations. With data_prediction it
// returns D = (x - sigma_t·eps)/alpha_t instead (guidance already applied by the callback).
template <class T>
struct ModelCall {
  const NoiseSchedule& ns;
  const EpsFnT<T>& eps_fn;
  bool data_prediction = false;
  int nfe = 0;

  void operator()(const std::vector<T>& x, double t, std::vector<T>& out) {
    out.assign(x.size(), T(0));
    eps_fn(x, t, out);
    ++nfe;
    UVIT_CHECK(out.size() == x.size(), "sampler: the model returned ", out.size(),
               " values for an input of ", x.size(), " (t = ", t, ")");
    if (data_prediction) uvit::data_prediction(ns, t, x.data(), out.data(), out.data(), x.size());
  }
};

// out = sum_k c[k]·v[k] over equally long vectors.
template <class T>
void lincomb(std::vector<T>& out, std::initializer_list<double> c,
             std::initializer_list<const std::vector<T>*> v) {
  const size_t n = (*v.begin())->size();
  std::vector<T> r(n);
#pragma omp parallel for if (n > (1u << 16))
  for (size_t i = 0; i < n; ++i) {
    double acc = 0;
    auto ci = c.begin();
    for (const std::vector<T>* p : v) acc += *ci++ * double((*p)[i]);
    r[i] = T(acc);
  }
  out.swap(r);
}

template <class T>
void check_input(const std::vector<T>& x, const char* who) {
  UVIT_CHECK(!x.empty(), who, ": x_T is empty");
}

}  // namespace uvit::detail

namespace uvit::detail {

// Step coefficients of the exponential integrators (SPEC 6.1, 9.3): a step from s to t of size
// h = lambda_t - lambda_s is x_t = cx·x + c1·M_s + c2·D1 + c3·D2, where
//   noise form: cx = alpha_t/alpha_s, c1 = -sigma_t·phi1, c2 = -sigma_t·phi2, c3 = -sigma_t·phi3;
//   data form:  cx = sigma_t/sigma_s, c1 = -alpha_t·psi1, c2 = +alpha_t·psi2, c3 = -alpha_t·psi3.
struct StepCoeffs {
  double cx, c1, c2, c3;
};
inline StepCoeffs step_coeffs(bool data, double h, double alpha_s, double sigma_s, double alpha_t,
                              double sigma_t) {
  if (data) {
    const double psi1 = std::expm1(-h), psi2 = psi1 / h + 1, psi3 = psi2 / h - 0.5;
    return {sigma_t / sigma_s, -alpha_t * psi1, alpha_t * psi2, -alpha_t * psi3};
  }
  const double phi1 = std::expm1(h), phi2 = phi1 / h - 1, phi3 = phi2 / h - 0.5;
  return {alpha_t / alpha_s, -sigma_t * phi1, -sigma_t * phi2, -sigma_t * phi3};
}

template <class T>
std::vector<T> dpm_singlestep(ModelCall<T>& m, const DpmConfig& cfg, int steps, double t_start,
                              double t_end, std::vector<T> x,
                              const std::function<void(int, int)>& progress);
template <class T>
std::vector<T> dpm_multistep(ModelCall<T>& m, const DpmConfig& cfg, int steps, double t_start,
                             double t_end, std::vector<T> x,
                             const std::function<void(int, int)>& progress);

// Validates the time range and runs the singlestep or multistep driver.
template <class T>
std::vector<T> dpm_run(const NoiseSchedule& ns, const DpmConfig& cfg, int steps, double t_start,
                       double t_end, std::vector<T> x, const EpsFnT<T>& eps_fn,
                       const std::function<void(int, int)>& progress, int* nfe);

}  // namespace uvit::detail

namespace uvit::detail {

// Adds noise_std·z to x, z drawn from the Philox stream of the k-th noisy step.
template <class T>
void add_noise(std::vector<T>& x, double noise_std, uint64_t seed, uint64_t k, uint64_t offset);

template <class T>
std::vector<T> euler_maruyama_run(const NoiseSchedule& ns, int steps, bool ode, std::vector<T> x,
                                  const EpsFnT<T>& eps_fn, uint64_t seed, const SamplerOptions& o);
template <class T>
std::vector<T> ddim_run(const NoiseSchedule& ns, int steps, bool ddpm, std::vector<T> x,
                        const EpsFnT<T>& eps_fn, uint64_t seed, const SamplerOptions& o);

}  // namespace uvit::detail
