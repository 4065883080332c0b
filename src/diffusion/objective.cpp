// Training objectives: the noise-prediction MSE of U-ViT's schedules (SPEC 7.3) and DiT's ADM
// hybrid loss (docs/dit.md), optionally min-SNR weighted (docs/mdt_diffusion.md).
#include "uvit/objective.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "uvit/adm.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"

namespace uvit {

double min_snr_weight(const TrainDraw& d, double gamma) {
  if (gamma <= 0) return 1.0;
  const double r = d.mean / d.std, snr = r * r;  // +inf at std 0: weight 0
  return snr <= gamma ? 1.0 : gamma / snr;
}

namespace {
// eps-MSE over every element: loss = mean w_b (out - eps)^2, gradient 2 w_b (out - eps) / numel,
// w_b the sample's min-SNR weight (1 without train.min_snr_gamma: the plain MSE, bit for bit).
class EpsMse final : public Objective {
 public:
  EpsMse(NoiseSchedule ns, double gamma) : ns_(std::move(ns)), gamma_(gamma) {}

  TrainDraw draw(double u) const override {
    TrainDraw d;
    NoiseSchedule::Coeffs co;
    if (ns_.kind() == ScheduleKind::LinearVP) {
      co = ns_.train_coeffs(u);  // t ~ U[0, 1), network time 999 t
      d.net_time = float(ns_.net_time(u));
    } else {
      const int n = std::min(ns_.total_n(), 1 + int(u * ns_.total_n()));  // n ~ U{1..N}
      co = ns_.train_coeffs_discrete(n);
      d.net_time = float(n);
      d.index = n;
    }
    d.mean = co.mean;
    d.std = co.std;
    return d;
  }

  double loss(const float* out, const float* eps, const float*, const TrainDraw* draws, int B,
              size_t in_numel, size_t out_numel, int accum, float* dout) const override {
    UVIT_CHECK(in_numel == out_numel,
               "the eps-MSE objective needs a network without a variance "
               "output");
    const size_t numel = size_t(B) * in_numel;
    const float g = 2.f / float(numel) / float(accum);
    double loss = 0;
    for (int b = 0; b < B; ++b) {
      const double w = min_snr_weight(draws[b], gamma_);
      const float gb = g * float(w);
      for (size_t k = size_t(b) * in_numel; k < size_t(b + 1) * in_numel; ++k) {
        const float d = out[k] - eps[k];
        loss += w * (double(d) * d);
        dout[k] = gb * d;
      }
    }
    return loss / double(numel);
  }

 private:
  NoiseSchedule ns_;
  double gamma_;
};
// DiT's training_losses (LossType.MSE): t ~ U{0..N-1}, eps-MSE plus, with a learned variance, the
// variational bound term with the mean frozen (KL in bits; the decoder NLL at t = 0). FiTv1's
// masked copy of it (packed batches, docs/fit.md "FiTv1") is the same loss over each sample's
// valid region.
class AdmHybrid final : public Objective {
 public:
  AdmHybrid(int channels, bool sigma, double gamma)
      : d_(AdmDiffusion::dit("")), channels_(channels), sigma_(sigma), gamma_(gamma) {}

  TrainDraw draw(double u) const override {
    const int N = d_.num_timesteps();
    TrainDraw d;
    d.index = std::min(N - 1, int(u * N));
    const auto co = d_.q_sample_coeffs(d.index);
    d.mean = co.mean;
    d.std = co.std;
    d.net_time = float(d_.network_time(d.index));
    return d;
  }

  double loss(const float* out, const float* eps, const float* x0, const TrainDraw* draws, int B,
              size_t in_numel, size_t out_numel, int accum, float* dout) const override {
    const bool sigma = out_numel == 2 * in_numel;
    UVIT_CHECK(sigma || out_numel == in_numel, "the ADM objective needs C or 2 C output channels");
    return hybrid(out, eps, x0, draws, B, int64_t(in_numel) / channels_, sigma, accum, dout,
                  nullptr, 0);
  }

  // out and dout [B, C or 2 C (the preset's learn_sigma), H, W].
  double loss_masked(const float* out, const float* eps, const float* x0, const TrainDraw* draws,
                     int B, int C, int H, int W, const std::array<int, 2>* sizes, int accum,
                     float* dout) const override {
    UVIT_CHECK(C == channels_, "the ADM objective: ", C, " channels, the preset has ", channels_);
    return hybrid(out, eps, x0, draws, B, int64_t(H) * W, sigma_, accum, dout, sizes, W);
  }

 private:
  double hybrid(const float* out, const float* eps, const float* x0, const TrainDraw* draws, int B,
                int64_t hw, bool sigma, int accum, float* dout, const std::array<int, 2>* sizes,
                int64_t W) const {
    std::vector<int> t(B);
    for (int b = 0; b < B; ++b) t[b] = draws[b].index;
    const auto terms =
        d_.hybrid_loss(t.data(), x0, eps, out, sigma, B, channels_, hw, dout, sizes, W);
    const size_t per = size_t(sigma ? 2 : 1) * channels_ * hw, n = size_t(B) * per;
    for (size_t k = 0; k < n; ++k) dout[k] /= float(accum);
    if (gamma_ <= 0) return terms.loss;
    // MDT: loss_b = w_b mse_b + vb_b; the eps channels carry the MSE term's gradient alone.
    double loss = 0;
    const size_t in = size_t(channels_) * hw;
    for (int b = 0; b < B; ++b) {
      const double w = min_snr_weight(draws[b], gamma_);
      loss += w * terms.mse[size_t(b)] + (sigma ? terms.vb[size_t(b)] : 0.0);
      float* e = dout + size_t(b) * per;
      for (size_t k = 0; k < in; ++k) e[k] *= float(w);
    }
    return loss / B;
  }

  AdmDiffusion d_;
  int channels_;
  bool sigma_;  // the preset's network predicts a variance too (learn_sigma)
  double gamma_;
};
}  // namespace

double Objective::loss_masked(const float*, const float*, const float*, const TrainDraw*, int, int,
                              int, int, const std::array<int, 2>*, int, float*) const {
  fail(
      "variable-size batches need the flow or the ADM objective (\"schedule\": \"flow\" or "
      "\"adm\"; docs/fit.md)");
}

std::unique_ptr<Objective> make_objective(const Config& cfg) {
  const nlohmann::json tr = cfg.json.value("train", nlohmann::json::object());
  const double gamma = tr.value("min_snr_gamma", 0.0);
  UVIT_CHECK(std::isfinite(gamma) && gamma >= 0, "config ", cfg.config_name,
             ": train.min_snr_gamma must be positive, got ", gamma);
  if (is_adm(cfg))
    return std::make_unique<AdmHybrid>(cfg.spec.in_chans, cfg.spec.learned_sigma(), gamma);
  if (is_flow(cfg)) {
    UVIT_CHECK(gamma == 0, "config ", cfg.config_name,
               ": train.min_snr_gamma weights an eps-prediction loss; a flow preset trains a "
               "velocity (remove it)");
    return make_flow_objective(cfg);
  }
  return std::make_unique<EpsMse>(schedule_for(cfg), gamma);
}

}  // namespace uvit
