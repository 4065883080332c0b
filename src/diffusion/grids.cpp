// Time grids (SPEC 9.1, 10, 11.2) and the singlestep "fast" order list (SPEC 9.2).
#include <algorithm>
#include <cctype>

#include "uvit/ascii.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"

namespace uvit {

std::vector<double> linspace(double start, double end, int count) {
  UVIT_CHECK(count >= 1, "linspace: count = ", count, " must be >= 1");
  std::vector<double> v(count);
  if (count == 1) {
    v[0] = start;
    return v;
  }
  // torch.linspace fills symmetrically from both ends, so both endpoints are exact.
  const double step = (end - start) / (count - 1);
  const int half = count / 2;
  for (int i = 0; i < count; ++i) v[i] = i < half ? start + i * step : end - (count - 1 - i) * step;
  return v;
}

std::vector<double> time_uniform_grid(double t_T, double t_0, int n) {
  UVIT_CHECK(n >= 1, "time grid: need at least 1 interval, got ", n);
  return linspace(t_T, t_0, n + 1);
}

std::vector<double> logsnr_grid(const NoiseSchedule& ns, double t_T, double t_0, int n) {
  UVIT_CHECK(n >= 1, "logSNR grid: need at least 1 interval, got ", n);
  std::vector<double> lam = linspace(ns.lambda(t_T), ns.lambda(t_0), n + 1);
  std::vector<double> t(n + 1);
  for (int i = 0; i <= n; ++i) t[i] = ns.inverse_lambda(lam[i]);
  // inverse_lambda(lambda(t)) = t up to rounding; pin the ends so t_0 = 1/N passes the guard.
  t.front() = t_T;
  t.back() = t_0;
  return t;
}

std::vector<double> make_grid(GridKind kind, const NoiseSchedule& ns, double t_T, double t_0,
                              int n) {
  return kind == GridKind::LogSNR ? logsnr_grid(ns, t_T, t_0, n) : time_uniform_grid(t_T, t_0, n);
}

GridKind grid_kind_from_name(const std::string& name) {
  const std::string k = ascii_lower(name);
  if (k == "time_uniform" || k == "time-uniform") return GridKind::TimeUniform;
  if (k == "logsnr") return GridKind::LogSNR;
  fail("time grid: unknown skip type '", name, "' (valid: time_uniform, logSNR)");
}

std::vector<int> singlestep_orders(int steps, int order) {
  UVIT_CHECK(steps >= 1, "singlestep DPM-Solver: steps = ", steps, " must be >= 1");
  std::vector<int> o;
  if (order == 3) {
    const int k = steps / 3 + 1;
    if (steps % 3 == 0) {
      o.assign(k - 2, 3);
      o.push_back(2);
      o.push_back(1);
    } else {
      o.assign(k - 1, 3);
      o.push_back(steps % 3 == 1 ? 1 : 2);
    }
  } else if (order == 2) {
    o.assign(steps / 2, 2);
    if (steps % 2) o.push_back(1);
  } else if (order == 1) {
    o.assign(steps, 1);
  } else {
    fail("DPM-Solver: order ", order, " is not supported (valid: 1, 2, 3)");
  }
  return o;
}

std::vector<double> euler_maruyama_grid(double eps, int steps) {
  UVIT_CHECK(steps >= 1, "Euler–Maruyama: steps = ", steps, " must be >= 1");
  UVIT_CHECK(eps > 0 && eps < 1, "Euler–Maruyama: eps (t_end) = ", eps, " is not in (0, 1)");
  std::vector<double> g = linspace(eps, 1.0, steps);
  g.insert(g.begin(), 0.0);
  return g;
}

std::vector<int> ddim_index_sequence(int total_n, int steps) {
  UVIT_CHECK(steps >= 1 && steps <= total_n, "DDIM/DDPM: steps = ", steps, " is not in 1..",
             total_n);
  const int skip = total_n / steps;
  std::vector<int> seq(steps);
  for (int i = 0; i < steps; ++i) seq[i] = i * skip;
  return seq;
}

}  // namespace uvit
