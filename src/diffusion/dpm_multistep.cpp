// Multistep DPM-Solver / DPM-Solver++ (2M, 3M), following the official DPM-Solver (SPEC 9.4); the
// U-ViT pp copy's multistep path is broken and is not what this reproduces.
#include "sampler_common.hpp"

namespace uvit::detail {
namespace {

// Update from the last history time to t using the given order and the model history
// (oldest first; the last entry belongs to the current x).
template <class T>
void multistep_update(const ModelCall<T>& m, std::vector<T>& x,
                      const std::vector<std::vector<T>>& hist_m, const std::vector<double>& hist_t,
                      double t, int order, bool taylor) {
  const NoiseSchedule& ns = m.ns;
  const size_t n = hist_t.size();
  const double t0 = hist_t[n - 1], lam0 = ns.lambda(t0), h = ns.lambda(t) - lam0;
  const StepCoeffs c =
      step_coeffs(m.data_prediction, h, ns.alpha(t0), ns.sigma(t0), ns.alpha(t), ns.sigma(t));
  const std::vector<T>& m0 = hist_m[n - 1];
  if (order == 1) {
    lincomb(x, {c.cx, c.c1}, {&x, &m0});
    return;
  }
  const std::vector<T>& mm1 = hist_m[n - 2];
  const double r0 = (lam0 - ns.lambda(hist_t[n - 2])) / h;
  if (order == 2) {
    // D1_0 = (M_0 - M_-1)/r0 enters as 0.5·c1·D1_0 (dpmsolver) or c2·D1_0 (taylor).
    const double k = (taylor ? c.c2 : 0.5 * c.c1) / r0;
    lincomb(x, {c.cx, c.c1 + k, -k}, {&x, &m0, &mm1});
    return;
  }
  UVIT_CHECK(order == 3, "DPM-Solver: multistep order ", order, " is not supported");
  const std::vector<T>& mm2 = hist_m[n - 3];
  const double r1 = (ns.lambda(hist_t[n - 2]) - ns.lambda(hist_t[n - 3])) / h;
  std::vector<T> d10, d11, d1, d2;
  lincomb(d10, {1 / r0, -1 / r0}, {&m0, &mm1});
  lincomb(d11, {1 / r1, -1 / r1}, {&mm1, &mm2});
  const double w = r0 / (r0 + r1);
  lincomb(d1, {1 + w, -w}, {&d10, &d11});
  lincomb(d2, {1 / (r0 + r1), -1 / (r0 + r1)}, {&d10, &d11});
  lincomb(x, {c.cx, c.c1, c.c2, c.c3}, {&x, &m0, &d1, &d2});
}

}  // namespace

template <class T>
std::vector<T> dpm_multistep(ModelCall<T>& m, const DpmConfig& cfg, int steps, double t_start,
                             double t_end, std::vector<T> x,
                             const std::function<void(int, int)>& progress) {
  const int order = cfg.order;
  UVIT_CHECK(order >= 1 && order <= 3, "multistep DPM-Solver: order ", order,
             " is not supported (valid: 1, 2, 3)");
  UVIT_CHECK(steps >= order, "multistep DPM-Solver: steps = ", steps, " must be >= order ", order);
  const std::vector<double> g = make_grid(cfg.skip, m.ns, t_start, t_end, steps);
  std::vector<double> hist_t{g[0]};
  std::vector<std::vector<T>> hist_m(1);
  m(x, g[0], hist_m[0]);
  for (int step = 1; step <= steps; ++step) {
    // Warm-up with lower orders; lower_order_final only for steps < 10 (official code, not the
    // docstring's 15).
    int o = std::min(order, step);
    if (step >= order && cfg.lower_order_final && steps < 10) o = std::min(order, steps + 1 - step);
    multistep_update(m, x, hist_m, hist_t, g[step], o, cfg.taylor);
    if (hist_t.size() == size_t(order)) {  // FIFO: drop the oldest
      hist_t.erase(hist_t.begin());
      hist_m.erase(hist_m.begin());
    }
    hist_t.push_back(g[step]);
    hist_m.emplace_back();
    if (step < steps) m(x, g[step], hist_m.back());  // no evaluation after the final step
    if (progress) progress(step, steps);
  }
  return x;
}

template std::vector<float> dpm_multistep(ModelCall<float>&, const DpmConfig&, int, double, double,
                                          std::vector<float>, const std::function<void(int, int)>&);
template std::vector<double> dpm_multistep(ModelCall<double>&, const DpmConfig&, int, double,
                                           double, std::vector<double>,
                                           const std::function<void(int, int)>&);

}  // namespace uvit::detail
