// Noise schedules (SPEC 6.2, 6.3): continuous linear VP and discrete (Stable-Diffusion) schedules,
// computed in double as SPEC 18.1 recommends.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "uvit/ascii.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"

namespace uvit {
namespace {

// log(1 + e^x) without overflow.
double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

// Piecewise-linear interpolation through ascending xs, extrapolating linearly with the first
// segment below the range and the last segment above it (interpolate_fn, SPEC 6.3).
double interpolate(double x, const std::vector<double>& xs, const std::vector<double>& ys) {
  size_t k = size_t(std::upper_bound(xs.begin(), xs.end(), x) - xs.begin());
  k = std::clamp<size_t>(k, 1, xs.size() - 1) - 1;
  return ys[k] + (x - xs[k]) * (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k]);
}

}  // namespace

NoiseSchedule NoiseSchedule::linear_vp(double beta_0, double beta_1) {
  UVIT_CHECK(std::isfinite(beta_0) && std::isfinite(beta_1) && beta_0 >= 0 && beta_1 > beta_0,
             "linear VP schedule: need 0 <= beta_0 < beta_1, got beta_0 = ", beta_0,
             ", beta_1 = ", beta_1);
  NoiseSchedule s;
  s.kind_ = ScheduleKind::LinearVP;
  s.beta_0_ = beta_0;
  s.beta_1_ = beta_1;
  s.n_ = 1000;
  return s;
}

NoiseSchedule NoiseSchedule::discrete_sd(int n, double linear_start, double linear_end) {
  UVIT_CHECK(n >= 2, "discrete SD schedule: need at least 2 steps, got ", n);
  UVIT_CHECK(linear_start > 0 && linear_end > linear_start && linear_end < 1,
             "discrete SD schedule: need 0 < linear_start < linear_end < 1, got ", linear_start,
             ", ", linear_end);
  std::vector<double> b = linspace(std::sqrt(linear_start), std::sqrt(linear_end), n);
  for (double& v : b) v *= v;
  return discrete(std::move(b));
}

NoiseSchedule NoiseSchedule::discrete(std::vector<double> betas) {
  UVIT_CHECK(betas.size() >= 2, "discrete schedule: need at least 2 betas, got ", betas.size());
  for (size_t i = 0; i < betas.size(); ++i)
    UVIT_CHECK(std::isfinite(betas[i]) && betas[i] > 0 && betas[i] < 1, "discrete schedule: beta[",
               i, "] = ", betas[i], " is not in (0, 1)");
  NoiseSchedule s;
  s.kind_ = ScheduleKind::Discrete;
  s.n_ = int(betas.size());
  const int n = s.n_;
  s.alphabar_.assign(n + 1, 1.0);
  s.cumbeta_.assign(n + 1, 0.0);
  s.knot_t_.resize(n);
  s.knot_a_.resize(n);
  double acc = 0;
  for (int i = 0; i < n; ++i) {
    s.alphabar_[i + 1] = s.alphabar_[i] * (1 - betas[i]);
    s.cumbeta_[i + 1] = s.cumbeta_[i] * (1 - betas[i]) + betas[i];
    acc += std::log1p(-betas[i]);
    s.knot_a_[i] = 0.5 * acc;
    s.knot_t_[i] = double(i + 1) / n;
  }
  s.rev_a_.assign(s.knot_a_.rbegin(), s.knot_a_.rend());
  s.rev_t_.assign(s.knot_t_.rbegin(), s.knot_t_.rend());
  s.betas_ = std::move(betas);
  return s;
}

NoiseSchedule NoiseSchedule::by_name(const std::string& name) {
  const std::string k = ascii_lower(name);
  if (k == "linear" || k == "linear_vp" || k == "continuous") return linear_vp();
  if (k == "discrete" || k == "discrete_sd") return discrete_sd();
  fail("noise schedule: unknown name '", name, "' (valid: linear, discrete)");
}

double NoiseSchedule::t_min() const { return kind_ == ScheduleKind::Discrete ? 1.0 / n_ : 0.0; }

double NoiseSchedule::default_t_end() const {
  return kind_ == ScheduleKind::Discrete ? 1.0 / n_ : 1e-4;
}

double NoiseSchedule::net_time(double t) const {
  return kind_ == ScheduleKind::Discrete ? double(n_) * t : 999.0 * t;
}

double net_time(ScheduleKind kind, double t) {
  return kind == ScheduleKind::Discrete ? 1000.0 * t : 999.0 * t;
}

void NoiseSchedule::check_time(double t, const char* what) const {
  UVIT_CHECK(std::isfinite(t), name(), " noise schedule: ", what, " at non-finite t = ", t);
  UVIT_CHECK(t <= 1.0 + 1e-9, name(), " noise schedule: ", what, " at t = ", t, " > T = 1");
  if (kind_ == ScheduleKind::Discrete) {
    // Slack of 1e-9 relative lets grid points computed as 1/N through rounding pass.
    UVIT_CHECK(t >= (1.0 - 1e-9) / n_, "discrete noise schedule: ", what, " at t = ", t,
               " below 1/N = ", 1.0 / n_,
               ": the extrapolated schedule is invalid there (use t_end >= 1/N)");
  } else {
    UVIT_CHECK(t >= 0, "linear noise schedule: ", what, " at negative t = ", t);
  }
}

double NoiseSchedule::log_alpha(double t) const {
  check_time(t, "log_alpha");
  if (kind_ == ScheduleKind::LinearVP)
    return -0.25 * t * t * (beta_1_ - beta_0_) - 0.5 * t * beta_0_;
  return interpolate(t, knot_t_, knot_a_);
}

double NoiseSchedule::alpha(double t) const { return std::exp(log_alpha(t)); }

double NoiseSchedule::sigma(double t) const { return std::sqrt(-std::expm1(2 * log_alpha(t))); }

double NoiseSchedule::lambda(double t) const {
  double la = log_alpha(t);
  return la - 0.5 * std::log(-std::expm1(2 * la));
}

double NoiseSchedule::inverse_lambda(double lam) const {
  UVIT_CHECK(!std::isnan(lam), name(), " noise schedule: inverse_lambda of NaN");
  if (kind_ == ScheduleKind::LinearVP) {
    // Positive root of 0.25(b1-b0)t^2 + 0.5·b0·t - 0.5·S = 0 in rationalized form (SPEC 6.2).
    double s = softplus(-2 * lam);
    double tmp = 2 * (beta_1_ - beta_0_) * s;
    double delta = beta_0_ * beta_0_ + tmp;
    return tmp / ((std::sqrt(delta) + beta_0_) * (beta_1_ - beta_0_));
  }
  double la = -0.5 * softplus(-2 * lam);
  // log_alpha decreases in t, so interpolate through the reversed knots (ascending in log_alpha).
  return interpolate(la, rev_a_, rev_t_);
}

double NoiseSchedule::beta(double t) const {
  UVIT_CHECK(
      kind_ == ScheduleKind::LinearVP,
      "beta(t): only the linear VP schedule defines a continuous beta (Euler–Maruyama needs it)");
  check_time(t, "beta");
  return beta_0_ + t * (beta_1_ - beta_0_);
}

NoiseSchedule::Coeffs NoiseSchedule::train_coeffs(double t) const {
  UVIT_CHECK(kind_ == ScheduleKind::LinearVP,
             "train_coeffs(t): continuous training needs the linear VP schedule");
  UVIT_CHECK(t >= 0 && t <= 1, "train_coeffs: t = ", t, " is not in [0, 1]");
  double la = log_alpha(t);
  return {std::exp(la), std::sqrt(-std::expm1(2 * la))};
}

NoiseSchedule::Coeffs NoiseSchedule::train_coeffs_discrete(int n) const {
  UVIT_CHECK(kind_ == ScheduleKind::Discrete,
             "train_coeffs_discrete: the linear VP schedule has no discrete steps");
  UVIT_CHECK(n >= 1 && n <= n_, "train_coeffs_discrete: n = ", n, " is not in 1..", n_);
  return {std::sqrt(alphabar_[n]), std::sqrt(cumbeta_[n])};
}

double NoiseSchedule::beta_n(int n) const {
  UVIT_CHECK(kind_ == ScheduleKind::Discrete, "beta_n: not a discrete schedule");
  UVIT_CHECK(n >= 1 && n <= n_, "beta_n: n = ", n, " is not in 1..", n_);
  return betas_[n - 1];
}

double NoiseSchedule::alphabar_n(int n) const {
  UVIT_CHECK(kind_ == ScheduleKind::Discrete, "alphabar_n: not a discrete schedule");
  UVIT_CHECK(n >= 0 && n <= n_, "alphabar_n: n = ", n, " is not in 0..", n_);
  return alphabar_[n];
}

}  // namespace uvit
