// Flow samplers from t = 0 (noise) to t = 1 (data), docs/flow.md "Samplers": torchdiffeq's
// fixed-grid euler and heun2 on the shifted grid, its adaptive dopri5 (step-size control, initial
// step and interpolation at t = 1 as odeint does them), and SiT's sample_sde Euler–Maruyama.
// Element updates are computed in double and stored in T.
#include <algorithm>
#include <cmath>

#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/quote.hpp"
#include "uvit/rng.hpp"

namespace uvit {

namespace {
const std::vector<std::string> kFlowNames = {"euler", "heun", "euler_maruyama", "dopri5"};

std::string joined() {
  std::string s;
  for (const std::string& n : kFlowNames) s += (s.empty() ? "" : ", ") + n;
  return s;
}

// The checked, counted velocity call.
template <class T>
struct Velocity {
  const VelocityFnT<T>& fn;
  int nfe = 0;
  void operator()(const std::vector<T>& x, double t, std::vector<T>& out) {
    out.assign(x.size(), T(0));
    fn(x, t, out);
    ++nfe;
    UVIT_CHECK(out.size() == x.size(), "flow sampler: the model returned ", out.size(),
               " values for an input of ", x.size(), " (t = ", t, ")");
  }
};

// out[i] = x[i] + h · sum_j c[j] · k[j][i]
template <class T>
void axpy_sum(std::vector<T>& out, const std::vector<T>& x, double h, const double* c,
              const std::vector<std::vector<T>>& k, int nk) {
  out.resize(x.size());
#pragma omp parallel for if (x.size() > (1u << 16))
  for (size_t i = 0; i < x.size(); ++i) {
    double acc = 0;
    for (int j = 0; j < nk; ++j)
      if (c[j] != 0) acc += c[j] * double(k[j][i]);
    out[i] = T(double(x[i]) + h * acc);
  }
}

double rms(const std::vector<double>& v) {
  double s = 0;
  for (double e : v) s += e * e;
  return std::sqrt(s / double(v.size()));
}

template <class T>
std::vector<T> euler(const std::vector<double>& g, std::vector<T> x, Velocity<T>& f) {
  std::vector<T> k;
  for (size_t i = 0; i + 1 < g.size(); ++i) {
    f(x, g[i], k);
    const double dt = g[i + 1] - g[i];
    for (size_t e = 0; e < x.size(); ++e) x[e] = T(double(x[e]) + dt * double(k[e]));
  }
  return x;
}

// torchdiffeq heun2: k1 = f(t0, y0), k2 = f(t0 + dt, y0 + dt k1), y1 = y0 + dt (k1 + k2) / 2.
template <class T>
std::vector<T> heun(const std::vector<double>& g, std::vector<T> x, Velocity<T>& f) {
  std::vector<T> k1, k2, y(x.size());
  for (size_t i = 0; i + 1 < g.size(); ++i) {
    const double dt = g[i + 1] - g[i];
    f(x, g[i], k1);
    for (size_t e = 0; e < x.size(); ++e) y[e] = T(double(x[e]) + dt * double(k1[e]));
    f(y, g[i] + dt, k2);
    for (size_t e = 0; e < x.size(); ++e)
      x[e] = T(double(x[e]) + dt * (0.5 * double(k1[e]) + 0.5 * double(k2[e])));
  }
  return x;
}

// SiT's sample_sde as sample.py runs it: diffusion form "sigma" (D = 1 - t), norm 1, K - 1
// Euler–Maruyama steps on linspace(0, 0.96, K) with drift v + D·score, score = (t v - x) / (1 - t)
// (the linear path's score of a velocity), then the "Mean" last step x + drift(x, 0.96) · 0.04.
template <class T>
std::vector<T> euler_maruyama(int K, std::vector<T> x, Velocity<T>& f, uint64_t seed,
                              uint64_t offset) {
  const std::vector<double> g = flow_sde_grid(K);
  const double dt = g[1] - g[0];
  std::vector<T> v;
  std::vector<float> z(x.size());
  auto drift = [&](size_t e, double t) {
    const double score = (t * double(v[e]) - double(x[e])) / (1 - t);
    return double(v[e]) + (1 - t) * score;
  };
  for (int i = 0; i + 1 < K; ++i) {
    const double t = g[i];
    f(x, t, v);
    Philox(seed, sampler_noise_stream(uint64_t(i))).fill_normal(z.data(), z.size(), offset);
    const double noise = std::sqrt(2 * (1 - t)) * std::sqrt(dt);
    for (size_t e = 0; e < x.size(); ++e)
      x[e] = T(double(x[e]) + drift(e, t) * dt + noise * double(z[e]));
  }
  const double t1 = g[K - 1];
  f(x, t1, v);
  for (size_t e = 0; e < x.size(); ++e) x[e] = T(double(x[e]) + drift(e, t1) * kSdeLastStep);
  return x;
}

// Dormand–Prince 5(4) as torchdiffeq's dopri5 (rk_common.py, dopri5.py, misc.py, interp.py).
constexpr double kAlpha[6] = {1 / 5., 3 / 10., 4 / 5., 8 / 9., 1., 1.};
constexpr double kBeta[6][6] = {
    {1 / 5.},
    {3 / 40., 9 / 40.},
    {44 / 45., -56 / 15., 32 / 9.},
    {19372 / 6561., -25360 / 2187., 64448 / 6561., -212 / 729.},
    {9017 / 3168., -355 / 33., 46732 / 5247., 49 / 176., -5103 / 18656.},
    {35 / 384., 0, 500 / 1113., 125 / 192., -2187 / 6784., 11 / 84.}};
constexpr double kErr[7] = {35 / 384. - 1951 / 21600.,
                            0,
                            500 / 1113. - 22642 / 50085.,
                            125 / 192. - 451 / 720.,
                            -2187 / 6784. - -12231 / 42400.,
                            11 / 84. - 649 / 6300.,
                            -1. / 60.};
constexpr double kMid[7] = {6025192743 / 30085553152. / 2,     0,
                            51252292925 / 65400821598. / 2,    -2691868925 / 45128329728. / 2,
                            187940372067 / 1594534317056. / 2, -1776094331 / 19743644256. / 2,
                            11237099 / 235043384. / 2};

template <class T>
std::vector<T> dopri5(std::vector<T> y, Velocity<T>& f, const FlowOptions& o, FlowStats* st) {
  UVIT_CHECK(o.atol > 0 && o.rtol > 0 && std::isfinite(o.atol) && std::isfinite(o.rtol),
             "dopri5: atol and rtol must be positive, got ", o.atol, " and ", o.rtol);
  const size_t n = y.size();
  const double safety = 0.9, ifactor = 10, dfactor = 0.2, t_end = 1;
  double t = 0;
  std::vector<std::vector<T>> k(7);
  f(y, t, k[0]);
  // Initial step (_select_initial_step, Hairer–Nørsett–Wanner II.4, order - 1 = 4).
  std::vector<double> r(n);
  auto scaled = [&](auto&& val) {
    for (size_t i = 0; i < n; ++i) r[i] = val(i) / (o.atol + std::fabs(double(y[i])) * o.rtol);
    return rms(r);
  };
  const double d0 = scaled([&](size_t i) { return double(y[i]); });
  const double d1 = scaled([&](size_t i) { return double(k[0][i]); });
  const double h0 = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
  std::vector<T> y1(n), ys, f1;
  for (size_t i = 0; i < n; ++i) y1[i] = T(double(y[i]) + h0 * double(k[0][i]));
  f(y1, t + h0, f1);
  const double d2 = scaled([&](size_t i) { return double(f1[i]) - double(k[0][i]); }) / h0;
  const double h1 = (d1 <= 1e-15 && d2 <= 1e-15) ? std::max(1e-6, h0 * 1e-3)
                                                 : std::pow(0.01 / std::max(d1, d2), 1.0 / 5);
  double dt = std::min(100 * h0, h1);

  double t_prev = 0;
  std::vector<std::vector<T>> coeff;  // interpolation polynomial of the last accepted step
  int steps = 0;
  std::vector<T> err_y(n), y_mid(n);
  while (t_end > t) {
    UVIT_CHECK(steps++ < o.max_steps, "dopri5: no solution after ", o.max_steps, " steps (atol ",
               o.atol, ", rtol ", o.rtol, ")");
    if (!std::isfinite(dt)) dt = 0;
    UVIT_CHECK(t + dt > t, "dopri5: step size underflow at t = ", t, " (dt = ", dt, ")");
    const double t1 = t + dt;
    for (int s = 0; s < 6; ++s) {
      axpy_sum(ys, y, dt, kBeta[s], k, s + 1);
      f(ys, kAlpha[s] == 1. ? t1 : t + kAlpha[s] * dt, k[s + 1]);
    }
    // ys is the 5th-order solution (the last stage's abscissae equal the solution weights).
    for (size_t i = 0; i < n; ++i) {
      double e = 0;
      for (int j = 0; j < 7; ++j) e += kErr[j] * double(k[j][i]);
      r[i] =
          dt * e / (o.atol + o.rtol * std::max(std::fabs(double(y[i])), std::fabs(double(ys[i]))));
    }
    const double ratio = rms(r);
    if (ratio <= 1) {
      axpy_sum(y_mid, y, dt, kMid, k, 7);
      coeff.assign(5, std::vector<T>(n));
      for (size_t i = 0; i < n; ++i) {
        const double a0 = y[i], a1 = ys[i], m = y_mid[i], g0 = k[0][i], g1 = k[6][i];
        coeff[0][i] = T(a0);
        coeff[1][i] = T(dt * g0);
        coeff[2][i] = T(dt * (g1 - 4 * g0) - 11 * a0 - 5 * a1 + 16 * m);
        coeff[3][i] = T(dt * (5 * g0 - 3 * g1) + 18 * a0 + 14 * a1 - 32 * m);
        coeff[4][i] = T(2 * dt * (g1 - g0) - 8 * (a1 + a0) + 16 * m);
      }
      t_prev = t;
      t = t1;
      y.swap(ys);
      k[0].swap(k[6]);  // FSAL: f(t1, y1) is the last stage
      if (st) st->step_ends.push_back(t), ++st->accepted;
    } else if (st) {
      ++st->rejected;
    }
    // _optimal_step_size (order 5)
    double factor;
    if (ratio == 0)
      factor = ifactor;
    else
      factor =
          std::min(ifactor, std::max(safety / std::pow(ratio, 1.0 / 5), ratio < 1 ? 1.0 : dfactor));
    dt *= factor;
  }
  // x(1) from the last step's quartic (_interp_evaluate).
  const double s = (t_end - t_prev) / (t - t_prev);
  std::vector<T> out(n);
  for (size_t i = 0; i < n; ++i) {
    double total = double(coeff[0][i]) + s * double(coeff[1][i]), p = s;
    for (int j = 2; j < 5; ++j) p *= s, total += p * double(coeff[j][i]);
    out[i] = T(total);
  }
  return out;
}
}  // namespace

std::vector<std::string> flow_sampler_names() { return kFlowNames; }

void check_flow_sampler_name(const std::string& name) {
  UVIT_CHECK(std::find(kFlowNames.begin(), kFlowNames.end(), name) != kFlowNames.end(), "sampler '",
             clipped(name), "' is not a flow sampler (valid for flow presets: ", joined(), ")");
}

double shift_time(double t, double shift) { return shift * t / (1 + (shift - 1) * t); }

std::vector<double> flow_time_grid(int K, double shift) {
  UVIT_CHECK(K >= 2, "flow samplers need at least 2 time points (--steps), got ", K);
  UVIT_CHECK(shift > 0 && std::isfinite(shift), "the time shift must be positive, got ", shift);
  std::vector<double> g = linspace(0.0, 1.0, K);
  for (double& t : g) t = shift_time(t, shift);
  return g;
}

std::vector<double> flow_sde_grid(int K) {
  UVIT_CHECK(K >= 2, "flow samplers need at least 2 time points (--steps), got ", K);
  return linspace(0.0, 1.0 - kSdeLastStep, K);
}

int flow_evaluations(const std::string& name, int K, int zero_steps) {
  check_flow_sampler_name(name);
  if (name == "dopri5") return -1;
  if (name == "heun") return 2 * (K - 1 - zero_steps);
  if (name == "euler_maruyama") return K;
  return K - 1 - zero_steps;
}

void check_zero_steps(const std::string& name, int K, int zero_steps) {
  UVIT_CHECK(zero_steps >= 0, "zero-init steps must be >= 0, got ", zero_steps);
  if (zero_steps == 0) return;
  UVIT_CHECK(name == "euler" || name == "heun",
             "zero-init steps (cfg_star) apply to the euler and ", "heun grids only, not to ",
             name);
  UVIT_CHECK(zero_steps < K - 1, "zero-init steps ", zero_steps, " leave none of the ", K - 1,
             " steps of ", K, " time points to integrate");
}

template <class T>
std::vector<T> flow_sample(const std::string& name, int K, std::vector<T> x,
                           const VelocityFnT<T>& v, uint64_t seed, const FlowOptions& o,
                           FlowStats* stats) {
  check_flow_sampler_name(name);
  check_zero_steps(name, K, o.zero_steps);
  Velocity<T> f{v};
  UVIT_CHECK(o.grid.empty() || int(o.grid.size()) == K, "flow sampler: a time grid of ",
             o.grid.size(), " points for ", K, " points");
  std::vector<double> grid;
  if (name == "euler" || name == "heun") {
    // Zero velocity over the first steps: x(t'_N) = x(0), so integrate from t'_N.
    grid = o.grid.empty() ? flow_time_grid(K, o.shift) : o.grid;
    grid.erase(grid.begin(), grid.begin() + o.zero_steps);
  }
  if (name == "euler")
    x = euler(grid, std::move(x), f);
  else if (name == "heun")
    x = heun(grid, std::move(x), f);
  else if (name == "euler_maruyama")
    x = euler_maruyama(K, std::move(x), f, seed, o.noise_offset);
  else
    x = dopri5(std::move(x), f, o, stats);
  if (stats) stats->nfe = f.nfe;
  return x;
}

template std::vector<float> flow_sample(const std::string&, int, std::vector<float>,
                                        const VelocityFnT<float>&, uint64_t, const FlowOptions&,
                                        FlowStats*);
template std::vector<double> flow_sample(const std::string&, int, std::vector<double>,
                                         const VelocityFnT<double>&, uint64_t, const FlowOptions&,
                                         FlowStats*);

}  // namespace uvit
