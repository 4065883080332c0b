// The flow-matching objective (SiT's Transport.training_losses with a velocity model on the linear
// path, LightningDiT's logit-normal time and cosine loss; docs/flow.md "Training").
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/log.hpp"

namespace uvit {

bool is_flow(const Config& c) { return c.json.value("schedule", std::string()) == "flow"; }

Transport transport_of(const Config& c) {
  Transport t;
  if (!c.json.contains("transport")) return t;
  const nlohmann::json& j = c.json["transport"];
  UVIT_CHECK(j.is_object(), "config ", c.config_name, ": transport must be an object");
  for (const auto& [k, v] : j.items())
    UVIT_CHECK(k == "time_dist" || k == "cos_loss" || k == "train_shift", "config ", c.config_name,
               ": transport.", k, " is not a known field (time_dist, cos_loss, train_shift)");
  if (j.contains("time_dist")) {
    const nlohmann::json& d = j["time_dist"];
    UVIT_CHECK(d.is_string() && (d == "uniform" || d == "logit_normal"), "config ", c.config_name,
               ": transport.time_dist must be \"uniform\" or \"logit_normal\", got ", d.dump());
    t.logit_normal = d == "logit_normal";
  }
  if (j.contains("cos_loss")) {
    UVIT_CHECK(j["cos_loss"].is_boolean(), "config ", c.config_name,
               ": transport.cos_loss must be true or false, got ", j["cos_loss"].dump());
    t.cos_loss = j["cos_loss"].get<bool>();
  }
  if (j.contains("train_shift")) {
    const nlohmann::json& s = j["train_shift"];
    UVIT_CHECK(s.is_number() && std::isfinite(s.get<double>()) && s.get<double>() > 0, "config ",
               c.config_name, ": transport.train_shift must be a positive number, got ", s.dump());
    t.train_shift = s.get<double>();
  }
  return t;
}

double inverse_normal_cdf(double p) {
  if (p <= 0) return -std::numeric_limits<double>::infinity();
  if (p >= 1) return std::numeric_limits<double>::infinity();
  // Acklam's rational approximation (relative error 1.15e-9), then one Halley step on erfc,
  // which brings it to double precision.
  static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,  -2.759285104469687e+02,
                             1.383577518672690e+02,  -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                             6.680131188771972e+01, -1.328068155288572e+01};
  static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                             -2.549732539343734e+00, 4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                             3.754408661907416e+00};
  const double lo = 0.02425;
  double x;
  if (p < lo || p > 1 - lo) {
    const double q = std::sqrt(-2 * std::log(p < lo ? p : 1 - p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
    if (p > 1 - lo) x = -x;
  } else {
    const double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  // Phi(x) - p, from the tail that p is in (no cancellation near 1).
  const double e = p < 0.5 ? 0.5 * std::erfc(-x / std::sqrt(2.0)) - p
                           : (1 - p) - 0.5 * std::erfc(x / std::sqrt(2.0));
  const double u = e * std::sqrt(2 * M_PI) * std::exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

namespace {
// Velocity MSE on the linear path: target u = x1 - x0 (data minus noise), loss mean_flat((v-u)^2)
// averaged over the batch, plus with cos_loss mean_flat(1 - cos_sim(v, u, dim=1)) (cosine over the
// channels of each pixel, torch >= 2.0's cosine_similarity: each norm clamped at eps = 1e-8).
class FlowMatching final : public Objective {
 public:
  FlowMatching(Transport tr, int channels) : tr_(tr), channels_(channels) {}

  TrainDraw draw(double u) const override {
    double t = u;  // t ~ U[0, 1) (train_eps 0 for a velocity model on the linear path)
    if (tr_.logit_normal) t = u <= 0 ? 0.0 : 1 / (1 + std::exp(-inverse_normal_cdf(u)));
    // SVG's RectifiedFlow.forward: t = apply_shift(rand, shift), toward noise for shift < 1.
    if (tr_.train_shift != 1) t = shift_time(t, tr_.train_shift);
    TrainDraw d;
    d.mean = t;
    d.std = 1 - t;
    d.net_time = float(t);
    return d;
  }

  double loss(const float* out, const float* eps, const float* x0, const TrainDraw*, int B,
              size_t in_numel, size_t out_numel, int accum, float* dout) const override {
    UVIT_CHECK(in_numel == out_numel,
               "the flow objective needs a network that predicts only the velocity (learn_sigma "
               "false)");
    const size_t numel = size_t(B) * in_numel;
    const double g = 2.0 / double(numel) / accum;
    double mse = 0;
    for (size_t k = 0; k < numel; ++k) {
      const double d = double(out[k]) - (double(x0[k]) - double(eps[k]));
      mse += d * d;
      dout[k] = float(g * d);
    }
    double loss = mse / double(numel);
    if (tr_.cos_loss) loss += cosine(out, eps, x0, B, in_numel, accum, dout);
    return loss;
  }

  double loss_masked(const float* out, const float* eps, const float* x0, const TrainDraw*, int B,
                     int C, int H, int W, const std::array<int, 2>* sizes, int accum,
                     float* dout) const override {
    UVIT_CHECK(!tr_.cos_loss, "transport.cos_loss: not available with variable-size batches");
    const size_t item = size_t(C) * H * W;
    std::fill(dout, dout + size_t(B) * item, 0.f);
    double loss = 0;
    for (int b = 0; b < B; ++b) {
      const int h = sizes[b][0], w = sizes[b][1];
      UVIT_CHECK(h > 0 && h <= H && w > 0 && w <= W, "sample ", b, ": valid size ", h, " x ", w,
                 " outside the ", H, " x ", W, " image");
      const double n = double(C) * h * w, g = 2.0 / (n * B) / accum;
      double mse = 0;
      for (int c = 0; c < C; ++c)
        for (int y = 0; y < h; ++y)
          for (int x = 0; x < w; ++x) {
            const size_t k = size_t(b) * item + (size_t(c) * H + y) * W + x;
            const double d = double(out[k]) - (double(x0[k]) - double(eps[k]));
            mse += d * d;
            dout[k] = float(g * d);
          }
      loss += mse / n;
    }
    return loss / B;
  }

 private:
  // Adds the cosine term's gradient to dout and returns the term.
  double cosine(const float* v, const float* eps, const float* x0, int B, size_t in_numel,
                int accum, float* dout) const {
    constexpr double kEps = 1e-8;
    const int C = channels_;
    const size_t hw = in_numel / size_t(C);
    const double w = 1.0 / (double(hw) * B);  // mean over pixels, then over the batch
    double sum = 0;
    for (int b = 0; b < B; ++b)
      for (size_t p = 0; p < hw; ++p) {
        const size_t base = size_t(b) * in_numel + p;
        double vv = 0, uu = 0, vu = 0;
        for (int c = 0; c < C; ++c) {
          const size_t k = base + size_t(c) * hw;
          const double vk = v[k], uk = double(x0[k]) - double(eps[k]);
          vv += vk * vk, uu += uk * uk, vu += vk * uk;
        }
        const double nv_raw = std::sqrt(vv), nv = std::max(nv_raw, kEps),
                     nu = std::max(std::sqrt(uu), kEps);
        const double cs = vu / (nv * nu);
        sum += 1 - cs;
        // d(1 - cos)/dv_c = -(u_c / (|v| |u|) - cos · v_c / |v|^2); a clamped norm is a constant.
        const double radial = nv_raw > kEps ? cs / (nv * nv) : 0.0;
        for (int c = 0; c < C; ++c) {
          const size_t k = base + size_t(c) * hw;
          const double uk = double(x0[k]) - double(eps[k]);
          dout[k] += float(-w / accum * (uk / (nv * nu) - radial * double(v[k])));
        }
      }
    return sum * w;
  }

  Transport tr_;
  int channels_;
};
}  // namespace

std::unique_ptr<Objective> make_flow_objective(const Config& cfg) {
  UVIT_CHECK(cfg.spec.out_chans == cfg.spec.in_chans, "config ", cfg.config_name,
             ": the flow objective needs a network that predicts only the velocity (learn_sigma "
             "false)");
  const Transport tr = transport_of(cfg);
  // One channel makes the per-pixel cosine a sign: no gradient but a 1/eps spike at the start.
  if (tr.cos_loss && cfg.spec.in_chans == 1)
    log(LogLevel::Warn, "config " + cfg.config_name +
                            ": transport.cos_loss on 1-channel images adds no gradient (the cosine "
                            "over one channel is a sign) and a 1e8 spike at step 1; docs/flow.md");
  return std::make_unique<FlowMatching>(tr, cfg.spec.in_chans);
}

}  // namespace uvit
