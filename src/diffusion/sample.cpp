// Named samplers and their defaults (SPEC 12): the presets that map a name to a solver.
#include <algorithm>

#include "sampler_common.hpp"
#include "uvit/quote.hpp"

namespace uvit {
namespace {

const std::vector<std::string> kNames = {
    "euler-maruyama", "euler-ode", "dpm-solver", "dpm-solver++", "dpm-solver++2m", "ddpm", "ddim"};

// Euler-Maruyama (SDE and ODE) integrate the continuous VP SDE: continuous_vp presets only.
bool needs_continuous_vp(const std::string& name) {
  return name == "euler-maruyama" || name == "euler-ode";
}

std::string joined_names() {
  std::string s;
  for (const std::string& n : kNames) s += (s.empty() ? "" : ", ") + n;
  return s;
}

template <class T>
std::vector<T> run(const std::string& name, const NoiseSchedule& ns, int steps, std::vector<T> x,
                   const EpsFnT<T>& eps_fn, uint64_t seed, const SamplerOptions& o) {
  check_sampler_name(name);
  if (steps <= 0) steps = default_steps(name);
  if (needs_continuous_vp(name))
    return detail::euler_maruyama_run(ns, steps, name == "euler-ode", std::move(x), eps_fn, seed,
                                      o);
  if (name == "ddpm" || name == "ddim")
    return detail::ddim_run(ns, steps, name == "ddpm", std::move(x), eps_fn, seed, o);
  DpmConfig cfg;
  if (name == "dpm-solver") {
    // Sampler A, the U-ViT "old" DPM-Solver-fast: noise form, K-interval logSNR grid, default r.
    cfg.data_prediction = false;
    cfg.skip = GridKind::LogSNR;
    cfg.outer_grid = true;
  } else if (name == "dpm-solver++") {
    // Sampler B, the U-ViT pp copy: data form, full time-uniform grid, r from the grid's lambdas.
    cfg.data_prediction = true;
    cfg.skip = GridKind::TimeUniform;
    cfg.outer_grid = false;
  } else {  // dpm-solver++2m: official multistep DPM-Solver++(2M)
    cfg.data_prediction = true;
    cfg.multistep = true;
    cfg.order = 2;
    cfg.skip = GridKind::TimeUniform;
  }
  if (o.order != 0) cfg.order = o.order;
  if (!o.skip.empty()) cfg.skip = grid_kind_from_name(o.skip);
  cfg.taylor = o.taylor;
  const double t_start = o.t_start > 0 ? o.t_start : ns.t_max();
  const double t_end = o.t_end > 0 ? o.t_end : ns.default_t_end();
  return detail::dpm_run(ns, cfg, steps, t_start, t_end, std::move(x), eps_fn, o.progress, nullptr);
}

}  // namespace

std::vector<std::string> sampler_names() { return kNames; }

void check_sampler_name(const std::string& name) {
  UVIT_CHECK(std::find(kNames.begin(), kNames.end(), name) != kNames.end(), "unknown sampler '",
             clipped(name), "' (valid: ", joined_names(), ")");
}

void check_sampler_for(const std::string& name, ScheduleKind kind, const std::string& what) {
  check_sampler_name(name);
  if (kind == ScheduleKind::LinearVP || !needs_continuous_vp(name)) return;
  std::vector<std::string> ok;
  for (const std::string& n : kNames)
    if (!needs_continuous_vp(n)) ok.push_back(n);
  std::string list;
  for (size_t i = 0; i < ok.size(); ++i)
    list += (i == 0 ? "" : i + 1 == ok.size() ? " or " : ", ") + ok[i];
  fail("sampler '", clipped(name), "' needs the continuous VP schedule (continuous_vp presets); ",
       what, " takes ", list);
}

int default_steps(const std::string& name) {
  check_sampler_name(name);
  return (name == "euler-maruyama" || name == "euler-ode" || name == "ddpm") ? 1000 : 50;
}

std::string sampler_for_algorithm(const std::string& algorithm, ScheduleKind kind) {
  if (algorithm == "euler_maruyama_sde") return "euler-maruyama";
  if (algorithm == "euler_maruyama_ode") return "euler-ode";
  if (algorithm == "dpm_solver" || algorithm.empty())
    return kind == ScheduleKind::LinearVP ? "dpm-solver" : "dpm-solver++";
  if (algorithm == "ddpm" || algorithm == "ddim") return algorithm;  // DiT's (ADM) samplers
  fail("sample.algorithm '", clipped(algorithm),
       "' is not an official sampler (valid: euler_maruyama_sde, euler_maruyama_ode, "
       "dpm_solver, ddpm, ddim)");
}

std::vector<float> sample(const std::string& name, const NoiseSchedule& ns, int steps,
                          std::vector<float> x_T, const EpsFn& eps_fn, uint64_t seed,
                          const SamplerOptions& options) {
  return run(name, ns, steps, std::move(x_T), eps_fn, seed, options);
}

std::vector<double> sample(const std::string& name, const NoiseSchedule& ns, int steps,
                           std::vector<double> x_T, const EpsFn64& eps_fn, uint64_t seed,
                           const SamplerOptions& options) {
  return run(name, ns, steps, std::move(x_T), eps_fn, seed, options);
}

}  // namespace uvit
