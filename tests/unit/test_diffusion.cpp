// Noise schedules, grids, guidance and samplers against SPEC 22/23 (float64 reference values) and
// tests/reference/sampler_reference.py, plus Gaussian-toy convergence and determinism checks.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "diffusion/sampler_common.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/rng.hpp"

using namespace uvit;

namespace {

// Relative closeness for 10-significant-digit reference values.
void expect_rel(double got, double want, double tol = 2e-9) {
  EXPECT_NEAR(got, want, tol * std::max(1.0, std::fabs(want))) << "want " << want;
}

// Exact noise predictor for data ~ N(mu, s^2) per element: eps = sigma (x - alpha mu)/(alpha^2 s^2
// + sigma^2). SPEC 22.4 uses mu = 0, s = 0.5.
template <class T>
EpsFnT<T> gaussian_eps(const NoiseSchedule& ns, double mu, double s, int* calls = nullptr,
                       std::vector<double>* times = nullptr) {
  return [&ns, mu, s, calls, times](const std::vector<T>& x, double t, std::vector<T>& e) {
    if (calls) ++*calls;
    if (times) times->push_back(t);
    const double a = ns.alpha(t), g = ns.sigma(t);
    for (size_t i = 0; i < x.size(); ++i)
      e[i] = T(g * (double(x[i]) - a * mu) / (a * a * s * s + g * g));
  };
}

struct ToyResult {
  double x;
  int nfe;
};
ToyResult toy(const NoiseSchedule& ns, const DpmConfig& cfg, int steps, double t_end) {
  int nfe = 0;
  auto r = dpm_solver_sample<double>(ns, cfg, steps, 1.0, t_end, {1.0},
                                     gaussian_eps<double>(ns, 0, 0.5), &nfe);
  return {r[0], nfe};
}

DpmConfig pp_config() {  // U-ViT pp DPM-Solver++ (sampler B)
  DpmConfig c;
  c.data_prediction = true;
  c.skip = GridKind::TimeUniform;
  c.outer_grid = false;
  return c;
}

const NoiseSchedule& sd() {
  static const NoiseSchedule s = NoiseSchedule::discrete_sd();
  return s;
}
const NoiseSchedule& lin() {
  static const NoiseSchedule s = NoiseSchedule::linear_vp();
  return s;
}

}  // namespace

// ---------------------------------------------------------------- schedules (SPEC 22.1, 22.2, 23)

TEST(ScheduleDiscrete, BetasAndAlphasCumprod) {
  expect_rel(sd().beta_n(1), 0.00085);
  expect_rel(sd().beta_n(2), 0.0008546986554);
  expect_rel(sd().beta_n(500), 0.004803792981);
  expect_rel(sd().beta_n(999), 0.01198237633);
  expect_rel(sd().beta_n(1000), 0.012);
  const std::pair<int, double> table[] = {
      {0, 0.99915},        {1, 0.9982960278},   {9, 0.9913210885},    {99, 0.8954627735},
      {249, 0.6754324137}, {499, 0.2776696505}, {749, 0.05662349160}, {999, 0.004660098513}};
  for (auto [i, v] : table) expect_rel(sd().alphabar_n(i + 1), v);
  EXPECT_EQ(sd().alphabar_n(0), 1.0);
  EXPECT_EQ(sd().total_n(), 1000);
}

TEST(ScheduleDiscrete, LogAlphaKnotsAndMarginals) {
  const auto& a = sd().log_alpha_knots();
  expect_rel(a[0], -0.0004251807274);
  expect_rel(a[1], -0.0008527127867);
  expect_rel(a[99], -0.05520731449);
  expect_rel(a[499], -0.6406615898);
  expect_rel(a[999], -2.684359345);
  expect_rel(sd().alpha(1), 0.06826491422);
  expect_rel(sd().sigma(1), 0.9976672298);
  expect_rel(sd().lambda(1), -2.682023850);
  expect_rel(sd().alpha(1e-3), 0.9995749096);
  expect_rel(sd().sigma(1e-3), 0.02915475947, 1e-8);
  expect_rel(sd().lambda(1e-3), 3.534711924);
  expect_rel(sd().log_alpha(0.5), -0.6406615898);
  expect_rel(sd().lambda(0.5), -0.4780252414);
  // Between knots the interpolation is linear in t.
  expect_rel(sd().log_alpha(0.5005), 0.5 * (a[499] + a[500]), 1e-12);
}

TEST(ScheduleDiscrete, InverseLambdaIsExactInverse) {
  for (double t : {1e-3, 0.0017, 0.02, 0.3331, 0.5, 0.77777, 0.999, 1.0}) {
    EXPECT_NEAR(sd().inverse_lambda(sd().lambda(t)), t, 1e-12) << t;
    const double l = sd().lambda(t);
    EXPECT_NEAR(sd().lambda(sd().inverse_lambda(l)), l, 1e-10) << t;
  }
}

TEST(ScheduleDiscrete, GuardBelowFirstKnot) {
  // SPEC 20 #15: below t = 1/N the extrapolated log_alpha is positive and sigma is NaN.
  EXPECT_THROW(sd().log_alpha(0.0), Error);
  EXPECT_THROW(sd().lambda(1e-4), Error);
  EXPECT_THROW(sd().sigma(0.0009), Error);
  EXPECT_THROW(sd().alpha(1.01), Error);
  EXPECT_THROW(sd().alpha(std::nan("")), Error);
  EXPECT_NO_THROW(sd().lambda(1.0 / 1000));
  try {
    sd().lambda(1e-4);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("below 1/N"), std::string::npos) << e.what();
  }
  // A sampler run with the continuous models' t_end = 1e-4 on a discrete schedule is refused.
  SamplerOptions o;
  o.t_end = 1e-4;
  EXPECT_THROW(sample("dpm-solver++", sd(), 10, std::vector<float>{1.f},
                      gaussian_eps<float>(sd(), 0, 0.5), 0, o),
               Error);
}

TEST(ScheduleLinear, TableValues) {
  struct Row {
    double t, la, a, s, l;
  };
  const Row rows[] = {{1, -5.025, 0.006571586495, 0.9999784069, -5.024978407},
                      {0.5, -1.26875, 0.2811828808, 0.9596542021, -1.227567734},
                      {1e-3, -5.4975e-5, 0.9999450265, 0.01048541634, 4.557714933},
                      {1e-4, -5.04975e-6, 0.9999949503, 0.003177963027, 5.751509795}};
  for (const Row& r : rows) {
    expect_rel(lin().log_alpha(r.t), r.la);
    expect_rel(lin().alpha(r.t), r.a);
    expect_rel(lin().sigma(r.t), r.s);
    expect_rel(lin().lambda(r.t), r.l);
    EXPECT_NEAR(lin().inverse_lambda(r.l), r.t, 1e-9 * r.t) << r.t;
  }
  // cum_alpha(1) of sde.py.
  expect_rel(std::pow(lin().alpha(1), 2), 4.318574906e-5);
  expect_rel(lin().beta(0.5), 0.1 + 0.5 * 19.9, 1e-15);
  EXPECT_THROW(lin().log_alpha(-0.1), Error);
  EXPECT_THROW(sd().beta(0.5), Error);
}

TEST(ScheduleTraining, ContinuousAndDiscreteCoefficients) {
  auto c = lin().train_coeffs(1.0);
  expect_rel(c.mean * c.mean, 4.318574906e-5);
  expect_rel(c.mean * c.mean + c.std * c.std, 1.0, 1e-14);
  c = lin().train_coeffs(0.0);
  EXPECT_EQ(c.mean, 1.0);
  EXPECT_EQ(c.std, 0.0);
  c = lin().train_coeffs(0.5);
  expect_rel(c.mean, 0.2811828808);
  expect_rel(c.std, 0.9596542021);

  c = sd().train_coeffs_discrete(1);
  expect_rel(c.mean * c.mean, 0.99915);
  expect_rel(c.std * c.std, 0.00085, 1e-12);
  c = sd().train_coeffs_discrete(500);
  expect_rel(c.mean * c.mean, 0.2776696505);
  expect_rel(c.std * c.std, 1 - 0.2776696505, 1e-9);
  c = sd().train_coeffs_discrete(1000);
  expect_rel(c.mean * c.mean, 0.004660098513);
  EXPECT_THROW(sd().train_coeffs_discrete(0), Error);
  EXPECT_THROW(sd().train_coeffs_discrete(1001), Error);
  EXPECT_THROW(sd().train_coeffs(0.5), Error);
  EXPECT_THROW(lin().train_coeffs_discrete(3), Error);
  // Training index n lands on the sampling knot tau_{n-1} (SPEC 6.3 link).
  expect_rel(sd().alpha(0.5), sd().train_coeffs_discrete(500).mean, 1e-12);
}

TEST(ScheduleNetTime, PerPathMapping) {
  // SPEC 7.1: 999·t continuous, 1000·t discrete (the official (t - 1/N)·1000 is off by one).
  EXPECT_DOUBLE_EQ(net_time(ScheduleKind::LinearVP, 1.0), 999.0);
  EXPECT_DOUBLE_EQ(net_time(ScheduleKind::LinearVP, 1e-4), 0.0999);
  EXPECT_DOUBLE_EQ(net_time(ScheduleKind::Discrete, 1e-3), 1.0);
  EXPECT_DOUBLE_EQ(sd().net_time(1.0), 1000.0);
  EXPECT_DOUBLE_EQ(lin().net_time(1e-3), 0.999);
  const auto g = time_uniform_grid(1, 1e-3, 50);
  expect_rel(sd().net_time(g[1]), 980.02);
  expect_rel(sd().net_time(g[48]), 40.96);
  expect_rel(sd().net_time(g[49]), 20.98);
  const auto gl = logsnr_grid(lin(), 1, 1e-4, 17);
  expect_rel(lin().net_time(gl[1]), 933.5441334);
  expect_rel(lin().net_time(gl[2]), 863.1835067);
  expect_rel(lin().net_time(gl[15]), 1.143444774);
  expect_rel(lin().net_time(gl[16]), 0.3465227474);
}

TEST(ScheduleGuidance, CfgCombine) {
  // SPEC 22.5: eps_c = 1, eps_u = 0, scale 0.4 gives 1.4 (w = 1 + scale).
  auto out = cfg_combine(std::vector<float>{1.f, 0.5f}, std::vector<float>{0.f, 1.5f}, 0.4f);
  EXPECT_FLOAT_EQ(out[0], 1.4f);
  EXPECT_FLOAT_EQ(out[1], 0.5f + 0.4f * (0.5f - 1.5f));
  EXPECT_THROW(cfg_combine(std::vector<float>{1.f}, std::vector<float>{}, 0.4f), Error);
}

// ---------------------------------------------------------------- grids and orders (SPEC 9.1, 9.2)

TEST(ScheduleGrid, TimeUniformDiscrete) {
  const auto g = time_uniform_grid(1, 1e-3, 50);
  ASSERT_EQ(g.size(), 51u);
  EXPECT_EQ(g[0], 1.0);
  expect_rel(g[1], 0.98002, 1e-14);
  expect_rel(g[2], 0.96004, 1e-14);
  expect_rel(g[48], 0.04096, 1e-13);
  expect_rel(g[49], 0.02098, 1e-13);
  EXPECT_EQ(g[50], 0.001);
  expect_rel(sd().lambda(g[1]), -2.562473348);
  expect_rel(sd().lambda(g[2]), -2.446288785);
  expect_rel(sd().lambda(g[48]), 1.614706414);
  expect_rel(sd().lambda(g[49]), 1.981075826);
  double lo = 1e9, hi = 0;
  for (int i = 0; i < 50; ++i) {
    const double d = sd().lambda(g[i + 1]) - sd().lambda(g[i]);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  expect_rel(lo, 0.06543790624);
  expect_rel(hi, 1.553636097);
}

TEST(ScheduleGrid, LogSNRLinearAndDiscrete) {
  const auto g = logsnr_grid(lin(), 1, 1e-4, 17);
  ASSERT_EQ(g.size(), 18u);
  expect_rel((lin().lambda(1e-4) - lin().lambda(1)) / 17, 0.6339110707);
  EXPECT_EQ(g[0], 1.0);
  expect_rel(g[1], 0.9344786120);
  expect_rel(g[2], 0.8640475542);
  expect_rel(g[15], 0.001144589363);
  expect_rel(g[16], 0.0003468696170);
  EXPECT_EQ(g[17], 1e-4);
  const auto d = logsnr_grid(sd(), 1, 1e-3, 17);
  expect_rel(d[1], 0.9369907687);
  expect_rel(d[2], 0.8676909460);
  expect_rel(d[15], 0.004272493261);
  expect_rel(d[16], 0.002070683033);
  EXPECT_EQ(d[17], 0.001);
}

TEST(ScheduleGrid, LinspaceIsSymmetricAndExactAtEnds) {
  const auto v = linspace(0.1, 0.7, 7);
  EXPECT_EQ(v.front(), 0.1);
  EXPECT_EQ(v.back(), 0.7);
  EXPECT_DOUBLE_EQ(v[3], 0.4);
  EXPECT_EQ(linspace(2, 5, 1), std::vector<double>{2});
  EXPECT_EQ(grid_kind_from_name("logSNR"), GridKind::LogSNR);
  EXPECT_EQ(grid_kind_from_name("time_uniform"), GridKind::TimeUniform);
  EXPECT_THROW(grid_kind_from_name("quadratic"), Error);
}

TEST(ScheduleGrid, SinglestepOrders) {
  auto o = singlestep_orders(50, 3);
  ASSERT_EQ(o.size(), 17u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(o[i], 3);
  EXPECT_EQ(o[16], 2);
  // SPEC 9.2 table: steps -> K, last orders.
  const struct {
    int steps, k;
    std::vector<int> last;
  } rows[] = {{10, 4, {3, 3, 1}}, {15, 6, {3, 2, 1}}, {20, 7, {3, 3, 2}}, {25, 9, {3, 3, 1}}};
  for (const auto& r : rows) {
    o = singlestep_orders(r.steps, 3);
    EXPECT_EQ(int(o.size()), r.k) << r.steps;
    EXPECT_EQ(std::vector<int>(o.end() - 3, o.end()), r.last) << r.steps;
    EXPECT_EQ(std::accumulate(o.begin(), o.end(), 0), r.steps);
  }
  EXPECT_EQ(singlestep_orders(7, 2), (std::vector<int>{2, 2, 2, 1}));
  EXPECT_EQ(singlestep_orders(3, 1), (std::vector<int>{1, 1, 1}));
  EXPECT_THROW(singlestep_orders(10, 4), Error);
  EXPECT_THROW(singlestep_orders(0, 3), Error);
}

TEST(ScheduleGrid, PpStepRatiosFromGridLambdas) {
  // SPEC 22.1: first U-ViT pp step (order 3, 1 -> 0.94006) and last (order 2, 0.04096 -> 0.001).
  const auto g = time_uniform_grid(1, 1e-3, 50);
  expect_rel(g[3], 0.94006, 1e-14);
  auto l = [&](int i) { return sd().lambda(g[i]); };
  const double h = l(3) - l(0);
  expect_rel(h, 0.3486332311);
  expect_rel((l(1) - l(0)) / h, 0.3429119524);
  expect_rel((l(2) - l(0)) / h, 0.6761692352);
  const double hl = l(50) - l(48);
  expect_rel(hl, 1.920005510);
  expect_rel((l(49) - l(48)) / hl, 0.1908168548);
}

TEST(ScheduleGrid, FirstOrderStepCoefficients) {
  // SPEC 22.1: one DPM-Solver-1 / DDIM step from 1 to 0.98002 on the discrete schedule.
  const double s = 1, t = 0.98002, h = sd().lambda(t) - sd().lambda(s);
  expect_rel(h, 0.1195505019);
  auto d = detail::step_coeffs(true, h, sd().alpha(s), sd().sigma(s), sd().alpha(t), sd().sigma(t));
  expect_rel(d.cx, 0.9993712313);
  expect_rel(d.c1, 0.008663521452);
  auto n =
      detail::step_coeffs(false, h, sd().alpha(s), sd().sigma(s), sd().alpha(t), sd().sigma(t));
  expect_rel(n.cx, 1.126281542);
  expect_rel(n.c1, -0.1266142578);
  // SPEC 22.2: first old DPM-Solver-fast step on the linear schedule (1 -> 0.9344786120).
  const auto g = logsnr_grid(lin(), 1, 1e-4, 17);
  const double hl = lin().lambda(g[1]) - lin().lambda(g[0]);
  auto c = detail::step_coeffs(false, hl, lin().alpha(g[0]), lin().sigma(g[0]), lin().alpha(g[1]),
                               lin().sigma(g[1]));
  expect_rel(c.cx, 1.884864519);
  expect_rel(-c.c1, 0.8849005347);
}

TEST(ScheduleGrid, EulerMaruyamaGridAndCoefficients) {
  const auto g = euler_maruyama_grid(1e-3, 1000);
  ASSERT_EQ(g.size(), 1001u);
  for (int k = 0; k <= 1000; ++k) EXPECT_NEAR(g[k], k / 1000.0, 1e-15) << k;
  // SPEC 22.3: step 1 -> 0.999 and the final step 1e-3 -> 0 (no noise).
  auto c = euler_maruyama_coeffs(lin(), 0.999, 1.0, false);
  expect_rel(c.x_coef, 1.01, 1e-12);
  expect_rel(c.eps_coef, -0.02000043187);
  expect_rel(c.noise_std, 0.1414213562, 1e-8);
  expect_rel(-std::expm1(2 * lin().log_alpha(1.0)), 0.9999568143);
  c = euler_maruyama_coeffs(lin(), 0.0, 1e-3, false);
  expect_rel(c.x_coef, 1.00005995, 1e-12);
  expect_rel(c.eps_coef, -0.01143492983);
  EXPECT_EQ(c.noise_std, 0.0);
  expect_rel(-std::expm1(2 * lin().log_alpha(1e-3)), 1.099439557e-4);
  // The probability-flow ODE halves the score term and never adds noise.
  c = euler_maruyama_coeffs(lin(), 0.999, 1.0, true);
  expect_rel(c.eps_coef, -0.02000043187 / 2);
  EXPECT_EQ(c.noise_std, 0.0);
  EXPECT_THROW(euler_maruyama_coeffs(sd(), 0.5, 0.6, false), Error);
}

TEST(ScheduleGrid, DdimIndexSequence) {
  const auto seq = ddim_index_sequence(1000, 50);
  ASSERT_EQ(seq.size(), 50u);
  EXPECT_EQ(seq[1], 20);
  EXPECT_EQ(seq.back(), 980);  // evaluated at t = 0.981
  EXPECT_THROW(ddim_index_sequence(1000, 1001), Error);
}

// ---------------------------------------------------------------- samplers: SPEC 22.4 toy

TEST(SamplerToy, UvitPpDpmSolverPlusPlus) {
  const double want[] = {0.5090440980, 0.5274898109, 0.4296285305};
  const int steps[] = {50, 20, 10};
  for (int i = 0; i < 3; ++i) {
    auto r = toy(sd(), pp_config(), steps[i], 1e-3);
    expect_rel(r.x, want[i]);
    EXPECT_EQ(r.nfe, steps[i]);
  }
  // The named sampler with its defaults is the same thing (double and float).
  auto x = sample("dpm-solver++", sd(), 50, std::vector<double>{1.0},
                  gaussian_eps<double>(sd(), 0, 0.5), 0);
  expect_rel(x[0], 0.5090440980);
  auto xf = sample("dpm-solver++", sd(), 50, std::vector<float>{1.f},
                   gaussian_eps<float>(sd(), 0, 0.5), 0);
  EXPECT_NEAR(xf[0], 0.5090440980, 2e-6);
}

TEST(SamplerToy, UvitOldDpmSolverFast) {
  DpmConfig old;  // noise form, logSNR K-interval grid, default r
  const double want[] = {0.5002530835, 0.5058985732, 0.5091041073};
  const int steps[] = {50, 20, 10};
  for (int i = 0; i < 3; ++i) {
    auto r = toy(lin(), old, steps[i], 1e-4);
    expect_rel(r.x, want[i]);
    EXPECT_EQ(r.nfe, steps[i]);
  }
  int calls = 0;
  auto xf = sample("dpm-solver", lin(), 50, std::vector<float>{1.f},
                   gaussian_eps<float>(lin(), 0, 0.5, &calls), 0);
  EXPECT_NEAR(xf[0], 0.5002530835, 2e-6);
  EXPECT_EQ(calls, 50);
  // Noise-form singlestep order 3 logSNR on the discrete schedule, 20 steps.
  expect_rel(toy(sd(), old, 20, 1e-3).x, 0.5026936449);
}

TEST(SamplerToy, OtherSolverBranches) {
  DpmConfig c = pp_config();
  c.order = 1;  // DPM-Solver-1 (DDIM), time_uniform
  expect_rel(toy(sd(), c, 50, 1e-3).x, 0.4765997948);
  expect_rel(toy(sd(), c, 20, 1e-3).x, 0.4450160456);
  expect_rel(toy(sd(), c, 10, 1e-3).x, 0.4000041119);
  c = pp_config();
  c.taylor = true;
  expect_rel(toy(sd(), c, 20, 1e-3).x, 0.5643594902);
  c = pp_config();
  c.order = 2;
  expect_rel(toy(sd(), c, 20, 1e-3).x, 0.5236921908);
  // Official ++ singlestep logSNR: K-interval outer grid (SPEC 22.4 convergence check).
  c = pp_config();
  c.skip = GridKind::LogSNR;
  c.outer_grid = true;
  expect_rel(toy(sd(), c, 100, 1e-3).x, 0.5014831990);
}

TEST(SamplerToy, OfficialMultistep) {
  DpmConfig m;
  m.data_prediction = true;
  m.multistep = true;
  m.order = 2;
  m.skip = GridKind::TimeUniform;
  const int steps[] = {50, 20, 10};
  const double m2[] = {0.5234281946, 0.5663767283, 0.6092570958};
  const double m3[] = {0.4929178295, 0.5040511110, 0.6279812656};
  const double n3[] = {0.5037373603, 0.5164317079, 0.5414544847};
  for (int i = 0; i < 3; ++i) {
    m.order = 2;
    m.data_prediction = true;
    auto r = toy(sd(), m, steps[i], 1e-3);
    expect_rel(r.x, m2[i]);
    EXPECT_EQ(r.nfe, steps[i]);
    m.order = 3;
    expect_rel(toy(sd(), m, steps[i], 1e-3).x, m3[i]);
    m.data_prediction = false;
    expect_rel(toy(sd(), m, steps[i], 1e-3).x, n3[i]);
  }
  auto x = sample("dpm-solver++2m", sd(), 20, std::vector<double>{1.0},
                  gaussian_eps<double>(sd(), 0, 0.5), 0);
  expect_rel(x[0], 0.5663767283);
  SamplerOptions o;
  o.order = 3;
  x = sample("dpm-solver++2m", sd(), 20, std::vector<double>{1.0},
             gaussian_eps<double>(sd(), 0, 0.5), 0, o);
  expect_rel(x[0], 0.5040511110);
}

TEST(SamplerToy, EulerMaruyamaOde) {
  int calls = 0;
  auto x = sample("euler-ode", lin(), 1000, std::vector<double>{1.0},
                  gaussian_eps<double>(lin(), 0, 0.5, &calls), 0);
  expect_rel(x[0], 0.4997735011);
  EXPECT_EQ(calls, 1000);
  x = sample("euler-ode", lin(), 50, std::vector<double>{1.0}, gaussian_eps<double>(lin(), 0, 0.5),
             0);
  expect_rel(x[0], 0.4957459952);
}

TEST(SamplerToy, DdimMatchesNumpyReference) {
  // tests/reference/sampler_reference.py, ddim(50) and ddim(20).
  auto x =
      sample("ddim", sd(), 50, std::vector<double>{1.0}, gaussian_eps<double>(sd(), 0, 0.5), 0);
  expect_rel(x[0], 0.4753787386);
  x = sample("ddim", sd(), 20, std::vector<double>{1.0}, gaussian_eps<double>(sd(), 0, 0.5), 0);
  expect_rel(x[0], 0.4442759465);
}

// ---------------------------------------------------------------- samplers: evaluation times

TEST(SamplerTimes, OldFastIntermediateTimes) {
  std::vector<double> ts;
  sample("dpm-solver", lin(), 50, std::vector<double>{1.0},
         gaussian_eps<double>(lin(), 0, 0.5, nullptr, &ts), 0);
  ASSERT_EQ(ts.size(), 50u);
  EXPECT_EQ(ts[0], 1.0);
  expect_rel(ts[1], 0.9786438646);
  expect_rel(ts[2], 0.9568142902);
  expect_rel(ts[3], 0.9344786120);
  expect_rel(ts[48], 0.0003468696170);
  expect_rel(ts[49], 0.0001868959894);
}

TEST(SamplerTimes, PpIntermediateTimesAreGridPoints) {
  std::vector<double> ts;
  sample("dpm-solver++", sd(), 50, std::vector<double>{1.0},
         gaussian_eps<double>(sd(), 0, 0.5, nullptr, &ts), 0);
  const auto g = time_uniform_grid(1, 1e-3, 50);
  ASSERT_EQ(ts.size(), 50u);
  // Every model call is at a grid point (s1, s2 come back through inverse_lambda); the final
  // 0.001 is never evaluated.
  for (int i = 0; i < 50; ++i) EXPECT_NEAR(ts[i], g[i], 1e-12) << i;
}

TEST(SamplerTimes, EulerMaruyamaUpperTimes) {
  std::vector<double> ts;
  sample("euler-maruyama", lin(), 1000, std::vector<double>{0.3},
         gaussian_eps<double>(lin(), 0, 0.5, nullptr, &ts), 1);
  ASSERT_EQ(ts.size(), 1000u);
  EXPECT_EQ(ts.front(), 1.0);
  EXPECT_NEAR(ts.back(), 1e-3, 1e-15);  // never at t = 0
}

TEST(SamplerTimes, DdimAndDdpmTimes) {
  std::vector<double> ts;
  sample("ddim", sd(), 50, std::vector<double>{1.0},
         gaussian_eps<double>(sd(), 0, 0.5, nullptr, &ts), 0);
  ASSERT_EQ(ts.size(), 50u);
  EXPECT_NEAR(ts[0], 0.981, 1e-15);
  EXPECT_NEAR(ts[1], 0.961, 1e-15);
  EXPECT_NEAR(ts.back(), 0.001, 1e-15);
  ts.clear();
  sample("ddpm", sd(), 0, std::vector<double>{1.0},
         gaussian_eps<double>(sd(), 0, 0.5, nullptr, &ts), 0);
  ASSERT_EQ(ts.size(), 1000u);
  EXPECT_EQ(ts[0], 1.0);
}

// ---------------------------------------------------------------- samplers: Gaussian convergence

namespace {

struct Moments {
  double mean, std;
};
Moments moments(const std::vector<float>& v) {
  double m = 0, q = 0;
  for (float x : v) m += x;
  m /= v.size();
  for (float x : v) q += (x - m) * (x - m);
  return {m, std::sqrt(q / v.size())};
}

// x_T from the exact marginal at t = 1 of data N(mu, s^2).
std::vector<float> prior(const NoiseSchedule& ns, double mu, double s, size_t n, uint64_t seed) {
  const double a = ns.alpha(1), sd_t = std::sqrt(a * a * s * s + std::pow(ns.sigma(1), 2));
  std::vector<float> x(n);
  Philox rng(seed, 0);
  for (size_t i = 0; i < n; ++i) x[i] = float(a * mu + sd_t * rng.normal(i));
  return x;
}

}  // namespace

TEST(SamplerGaussian, EverySamplerRecoversTheData) {
  const double mu = 0.3, s = 0.6;
  const size_t n = 4000;
  struct Case {
    const char* name;
    const NoiseSchedule* ns;
    int steps;
    SamplerOptions o;
  };
  SamplerOptions eta1;
  eta1.eta = 1.0;
  SamplerOptions small;
  small.ddpm_small_variance = true;
  const Case cases[] = {{"euler-maruyama", &lin(), 1000, {}},
                        {"euler-ode", &lin(), 200, {}},
                        {"dpm-solver", &lin(), 50, {}},
                        {"dpm-solver", &sd(), 20, {}},
                        {"dpm-solver++", &sd(), 50, {}},
                        {"dpm-solver++", &lin(), 100, {}},
                        {"dpm-solver++2m", &sd(), 100, {}},
                        {"ddim", &sd(), 50, {}},
                        {"ddim", &sd(), 100, eta1},
                        {"ddim", &lin(), 50, {}},
                        {"ddpm", &sd(), 1000, {}},
                        {"ddpm", &sd(), 250, small},
                        {"ddpm", &lin(), 1000, {}}};
  for (const Case& c : cases) {
    auto x = sample(c.name, *c.ns, c.steps, prior(*c.ns, mu, s, n, 11),
                    gaussian_eps<float>(*c.ns, mu, s), 5, c.o);
    ASSERT_EQ(x.size(), n);
    const Moments m = moments(x);
    EXPECT_NEAR(m.mean, mu, 0.04) << c.name << " " << c.ns->name() << " " << c.steps;
    EXPECT_NEAR(m.std, s, 0.04) << c.name << " " << c.ns->name() << " " << c.steps;
  }
}

// ---------------------------------------------------------------- samplers: determinism, noise

TEST(SamplerNoise, DeterministicForAFixedSeed) {
  for (const char* name : {"euler-maruyama", "ddpm"}) {
    const NoiseSchedule& ns = std::string(name) == "ddpm" ? sd() : lin();
    auto run = [&](uint64_t seed) {
      return sample(name, ns, 100, prior(ns, 0, 1, 64, 3), gaussian_eps<float>(ns, 0, 1), seed);
    };
    auto a = run(42), b = run(42), c = run(43);
    EXPECT_EQ(a, b) << name;
    EXPECT_NE(a, c) << name;
  }
  // Deterministic samplers ignore the seed.
  auto d1 = sample("dpm-solver++", sd(), 10, prior(sd(), 0, 1, 16, 3),
                   gaussian_eps<float>(sd(), 0, 1), 1);
  auto d2 = sample("dpm-solver++", sd(), 10, prior(sd(), 0, 1, 16, 3),
                   gaussian_eps<float>(sd(), 0, 1), 2);
  EXPECT_EQ(d1, d2);
}

TEST(SamplerNoise, ChunkedBatchDrawsTheSameNoise) {
  const auto x = prior(lin(), 0, 1, 8, 9);
  auto eps = gaussian_eps<float>(lin(), 0.2, 0.7);
  auto whole = sample("euler-maruyama", lin(), 30, x, eps, 77);
  SamplerOptions o;
  auto lo =
      sample("euler-maruyama", lin(), 30, std::vector<float>(x.begin(), x.begin() + 3), eps, 77, o);
  o.noise_offset = 3;
  auto hi =
      sample("euler-maruyama", lin(), 30, std::vector<float>(x.begin() + 3, x.end()), eps, 77, o);
  lo.insert(lo.end(), hi.begin(), hi.end());
  EXPECT_EQ(lo, whole);
}

TEST(SamplerNoise, DdimEtaOneEqualsDdpmWithPosteriorVariance) {
  // SPEC 11.2: eta = 1 gives DDPM with beta_tilde; the same noise stream per step makes them equal.
  SamplerOptions e;
  e.eta = 1.0;
  SamplerOptions s;
  s.ddpm_small_variance = true;
  const auto x = prior(sd(), 0, 1, 16, 4);
  std::vector<double> xd(x.begin(), x.end());
  auto a = sample("ddim", sd(), 40, xd, gaussian_eps<double>(sd(), 0.1, 0.8), 9, e);
  auto b = sample("ddpm", sd(), 40, xd, gaussian_eps<double>(sd(), 0.1, 0.8), 9, s);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-9) << i;
}

TEST(SamplerNoise, EulerOdeIsDeterministicAndSdeDiffers) {
  const auto x = prior(lin(), 0, 1, 32, 1);
  auto eps = gaussian_eps<float>(lin(), 0, 1);
  EXPECT_EQ(sample("euler-ode", lin(), 20, x, eps, 1), sample("euler-ode", lin(), 20, x, eps, 2));
  EXPECT_NE(sample("euler-maruyama", lin(), 20, x, eps, 1),
            sample("euler-ode", lin(), 20, x, eps, 1));
}

// ---------------------------------------------------------------- samplers: names and errors

TEST(SamplerNames, ListAndErrors) {
  const auto names = sampler_names();
  EXPECT_EQ(names.size(), 7u);
  for (const auto& n : names) EXPECT_NO_THROW(check_sampler_name(n));
  try {
    check_sampler_name("heun");
    FAIL() << "no error for an unknown sampler";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("'heun'"), std::string::npos) << m;
    for (const auto& n : names) EXPECT_NE(m.find(n), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos);
  }
  EXPECT_THROW(
      sample("heun", sd(), 10, std::vector<float>{1.f}, gaussian_eps<float>(sd(), 0, 1), 0), Error);
  EXPECT_EQ(default_steps("euler-maruyama"), 1000);
  EXPECT_EQ(default_steps("dpm-solver++"), 50);
  EXPECT_EQ(sampler_for_algorithm("dpm_solver", ScheduleKind::LinearVP), "dpm-solver");
  EXPECT_EQ(sampler_for_algorithm("dpm_solver", ScheduleKind::Discrete), "dpm-solver++");
  EXPECT_EQ(sampler_for_algorithm("euler_maruyama_sde", ScheduleKind::LinearVP), "euler-maruyama");
  EXPECT_EQ(sampler_for_algorithm("euler_maruyama_ode", ScheduleKind::LinearVP), "euler-ode");
  EXPECT_THROW(sampler_for_algorithm("ancestral", ScheduleKind::LinearVP), Error);
  EXPECT_EQ(NoiseSchedule::by_name("linear").kind(), ScheduleKind::LinearVP);
  EXPECT_EQ(NoiseSchedule::by_name("discrete").kind(), ScheduleKind::Discrete);
  EXPECT_THROW(NoiseSchedule::by_name("cosine"), Error);
}

TEST(SamplerNames, BadInputsThrow) {
  auto eps = gaussian_eps<float>(sd(), 0, 1);
  EXPECT_THROW(sample("dpm-solver++", sd(), 10, std::vector<float>{}, eps, 0), Error);
  EXPECT_THROW(sample("euler-maruyama", sd(), 10, std::vector<float>{1.f}, eps, 0), Error);
  EXPECT_THROW(sample("ddim", sd(), 2000, std::vector<float>{1.f}, eps, 0), Error);
  SamplerOptions o;
  o.order = 5;
  EXPECT_THROW(sample("dpm-solver", sd(), 10, std::vector<float>{1.f}, eps, 0, o), Error);
  o = {};
  o.skip = "karras";
  EXPECT_THROW(sample("dpm-solver", sd(), 10, std::vector<float>{1.f}, eps, 0, o), Error);
  o = {};
  o.order = 3;
  EXPECT_THROW(sample("dpm-solver++2m", sd(), 2, std::vector<float>{1.f}, eps, 0, o), Error);
  // A model returning the wrong number of values is reported, not read out of bounds.
  EpsFn bad = [](const std::vector<float>&, double, std::vector<float>& e) { e.resize(1); };
  EXPECT_THROW(sample("dpm-solver++", sd(), 10, std::vector<float>{1.f, 2.f}, bad, 0), Error);
  o = {};
  o.t_end = 0.5;
  o.t_start = 0.4;
  EXPECT_THROW(sample("dpm-solver++", sd(), 10, std::vector<float>{1.f}, eps, 0, o), Error);
}
