// Entry point of the DPM-Solver family: validates the time range and dispatches to the singlestep
// or multistep driver.
#include "sampler_common.hpp"

namespace uvit {
namespace detail {

template <class T>
std::vector<T> dpm_run(const NoiseSchedule& ns, const DpmConfig& cfg, int steps, double t_start,
                       double t_end, std::vector<T> x, const EpsFnT<T>& eps_fn,
                       const std::function<void(int, int)>& progress, int* nfe) {
  check_input(x, "DPM-Solver");
  UVIT_CHECK(steps >= 1, "DPM-Solver: steps = ", steps, " must be >= 1");
  UVIT_CHECK(cfg.order >= 1 && cfg.order <= 3, "DPM-Solver: order ", cfg.order,
             " is not supported (valid: 1, 2, 3)");
  UVIT_CHECK(t_start <= ns.t_max() && t_end < t_start,
             "DPM-Solver: need t_end < t_start <= 1, got ", t_end, " and ", t_start);
  UVIT_CHECK(t_end > 0, "DPM-Solver: t_end = ", t_end, " must be > 0");
  UVIT_CHECK(t_end >= ns.t_min() * (1 - 1e-9), "DPM-Solver: t_end = ", t_end,
             " is below the discrete schedule's first knot 1/N = ", ns.t_min(),
             ": the schedule is invalid there (SPEC 20 #15)");
  ModelCall<T> m{ns, eps_fn, cfg.data_prediction};
  x = cfg.multistep ? dpm_multistep(m, cfg, steps, t_start, t_end, std::move(x), progress)
                    : dpm_singlestep(m, cfg, steps, t_start, t_end, std::move(x), progress);
  if (nfe) *nfe = m.nfe;
  return x;
}

template std::vector<float> dpm_run(const NoiseSchedule&, const DpmConfig&, int, double, double,
                                    std::vector<float>, const EpsFnT<float>&,
                                    const std::function<void(int, int)>&, int*);
template std::vector<double> dpm_run(const NoiseSchedule&, const DpmConfig&, int, double, double,
                                     std::vector<double>, const EpsFnT<double>&,
                                     const std::function<void(int, int)>&, int*);

}  // namespace detail

template <class T>
std::vector<T> dpm_solver_sample(const NoiseSchedule& ns, const DpmConfig& cfg, int steps,
                                 double t_start, double t_end, std::vector<T> x,
                                 const EpsFnT<T>& eps_fn, int* nfe) {
  return detail::dpm_run(ns, cfg, steps, t_start, t_end, std::move(x), eps_fn, {}, nfe);
}

template std::vector<float> dpm_solver_sample(const NoiseSchedule&, const DpmConfig&, int, double,
                                              double, std::vector<float>, const EpsFnT<float>&,
                                              int*);
template std::vector<double> dpm_solver_sample(const NoiseSchedule&, const DpmConfig&, int, double,
                                               double, std::vector<double>, const EpsFnT<double>&,
                                               int*);

}  // namespace uvit
