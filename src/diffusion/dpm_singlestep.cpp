// Singlestep DPM-Solver / DPM-Solver++ "fast" (SPEC 9.2, 9.3): U-ViT's sampler A (old copy: noise
// form, logSNR K-interval grid, default r) and sampler B (pp copy: data form, time-uniform full
// grid, r from the grid's lambdas). expm1 is used throughout (SPEC 18.3).
#include "sampler_common.hpp"

namespace uvit::detail {
namespace {

// One singlestep update of order 1-3 from s to t with ratios r1, r2 (SPEC 9.3).
template <class T>
void singlestep_update(ModelCall<T>& m, std::vector<T>& x, double s, double t, int order, double r1,
                       double r2, bool taylor) {
  const NoiseSchedule& ns = m.ns;
  const bool data = m.data_prediction;
  const double lam_s = ns.lambda(s), h = ns.lambda(t) - lam_s;
  const double a_s = ns.alpha(s), g_s = ns.sigma(s);
  const StepCoeffs c = step_coeffs(data, h, a_s, g_s, ns.alpha(t), ns.sigma(t));
  // The same coefficients for the partial step to lambda_s + r·h (intermediate points).
  auto partial = [&](double r, double& time) {
    time = ns.inverse_lambda(lam_s + r * h);
    return step_coeffs(data, r * h, a_s, g_s, ns.alpha(time), ns.sigma(time));
  };

  std::vector<T> ms;
  m(x, s, ms);
  if (order == 1) {
    lincomb(x, {c.cx, c.c1}, {&x, &ms});
    return;
  }
  double s1 = 0, s2 = 0;
  const StepCoeffs p1 = partial(r1, s1);
  std::vector<T> u, m1;
  lincomb(u, {p1.cx, p1.c1}, {&x, &ms});
  m(u, s1, m1);
  if (order == 2) {
    // Coefficient k on (M_1 - M_s): dpmsolver -(1/(2 r1))·sigma_t·phi1, taylor -(1/r1)·sigma_t·phi2
    // (noise form; the data form has the matching signs, folded into c1 and c2).
    const double k = taylor ? c.c2 / r1 : c.c1 / (2 * r1);
    lincomb(x, {c.cx, c.c1 - k, k}, {&x, &ms, &m1});
    return;
  }
  UVIT_CHECK(order == 3, "DPM-Solver: singlestep order ", order, " is not supported");
  const StepCoeffs p2 = partial(r2, s2);
  // u2 = p2.cx·x + p2.c1·M_s + (r2/r1)·p2.c2·(M_1 - M_s); p2.c2 is -sigma_s2·phi22 (noise) or
  // +alpha_s2·psi22 (data) with phi22 = E(r2 h)/(r2 h) - 1, psi22 = E(-r2 h)/(r2 h) + 1.
  const double k2 = r2 / r1 * p2.c2;
  lincomb(u, {p2.cx, p2.c1 - k2, k2}, {&x, &ms, &m1});
  std::vector<T> m2;
  m(u, s2, m2);
  double ka, kb;  // coefficients on (M_1 - M_s) and (M_2 - M_s)
  if (!taylor) {
    ka = 0;
    kb = c.c2 / r2;
  } else {
    // D1 = (r2/r1·dM1 - r1/r2·dM2)/(r2 - r1), D2 = 2·(dM2/r2 - dM1/r1)/(r2 - r1).
    ka = c.c2 * (r2 / r1) / (r2 - r1) - c.c3 * 2 / (r1 * (r2 - r1));
    kb = -c.c2 * (r1 / r2) / (r2 - r1) + c.c3 * 2 / (r2 * (r2 - r1));
  }
  lincomb(x, {c.cx, c.c1 - ka - kb, ka, kb}, {&x, &ms, &m1, &m2});
}

}  // namespace

template <class T>
std::vector<T> dpm_singlestep(ModelCall<T>& m, const DpmConfig& cfg, int steps, double t_start,
                              double t_end, std::vector<T> x,
                              const std::function<void(int, int)>& progress) {
  const NoiseSchedule& ns = m.ns;
  const std::vector<int> orders = singlestep_orders(steps, cfg.order);
  const int k = int(orders.size());
  if (cfg.outer_grid) {
    const std::vector<double> g = make_grid(cfg.skip, ns, t_start, t_end, k);
    for (int i = 0; i < k; ++i) {
      const double r1 = orders[i] == 3 ? 1.0 / 3.0 : 0.5, r2 = 2.0 / 3.0;
      singlestep_update(m, x, g[i], g[i + 1], orders[i], r1, r2, cfg.taylor);
      if (progress) progress(i + 1, k);
    }
    return x;
  }
  const std::vector<double> g = make_grid(cfg.skip, ns, t_start, t_end, steps);
  int idx = 0;
  for (int i = 0; i < k; ++i) {
    const int o = orders[i];
    const double lam_s = ns.lambda(g[idx]), h = ns.lambda(g[idx + o]) - lam_s;
    const double r1 = o >= 2 ? (ns.lambda(g[idx + 1]) - lam_s) / h : 0.0;
    const double r2 = o == 3 ? (ns.lambda(g[idx + 2]) - lam_s) / h : 0.0;
    singlestep_update(m, x, g[idx], g[idx + o], o, r1, r2, cfg.taylor);
    idx += o;
    if (progress) progress(i + 1, k);
  }
  return x;
}

template std::vector<float> dpm_singlestep(ModelCall<float>&, const DpmConfig&, int, double, double,
                                           std::vector<float>,
                                           const std::function<void(int, int)>&);
template std::vector<double> dpm_singlestep(ModelCall<double>&, const DpmConfig&, int, double,
                                            double, std::vector<double>,
                                            const std::function<void(int, int)>&);

}  // namespace uvit::detail
