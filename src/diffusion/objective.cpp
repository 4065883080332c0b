// Training objectives: the noise-prediction MSE of U-ViT's schedules (SPEC 7.3) and DiT's ADM
// hybrid loss (docs/dit.md).
#include "uvit/objective.hpp"

#include <algorithm>
#include <vector>

#include "uvit/adm.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"

namespace uvit {

namespace {
// eps-MSE over every element: loss = mean (out - eps)^2, gradient 2 (out - eps) / numel.
class EpsMse final : public Objective {
 public:
  explicit EpsMse(NoiseSchedule ns) : ns_(std::move(ns)) {}

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

  double loss(const float* out, const float* eps, const float*, const TrainDraw*, int B,
              size_t in_numel, size_t out_numel, int accum, float* dout) const override {
    UVIT_CHECK(in_numel == out_numel,
               "the eps-MSE objective needs a network without a variance "
               "output");
    const size_t numel = size_t(B) * in_numel;
    const float g = 2.f / float(numel) / float(accum);
    double loss = 0;
    for (size_t k = 0; k < numel; ++k) {
      const float d = out[k] - eps[k];
      loss += double(d) * d;
      dout[k] = g * d;
    }
    return loss / double(numel);
  }

 private:
  NoiseSchedule ns_;
};
// DiT's training_losses (LossType.MSE): t ~ U{0..N-1}, eps-MSE plus, with a learned variance, the
// variational bound term with the mean frozen (KL in bits; the decoder NLL at t = 0).
class AdmHybrid final : public Objective {
 public:
  AdmHybrid(int channels) : d_(AdmDiffusion::dit("")), channels_(channels) {}

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
    std::vector<int> t(B);
    for (int b = 0; b < B; ++b) t[b] = draws[b].index;
    const int64_t hw = int64_t(in_numel) / channels_;
    const auto terms = d_.hybrid_loss(t.data(), x0, eps, out, sigma, B, channels_, hw, dout);
    const size_t n = size_t(B) * out_numel;
    for (size_t k = 0; k < n; ++k) dout[k] /= float(accum);
    return terms.loss;
  }

 private:
  AdmDiffusion d_;
  int channels_;
};
}  // namespace

std::unique_ptr<Objective> make_objective(const Config& cfg) {
  if (is_adm(cfg)) return std::make_unique<AdmHybrid>(cfg.spec.in_chans);
  if (is_flow(cfg)) return make_flow_objective(cfg);
  return std::make_unique<EpsMse>(schedule_for(cfg));
}

}  // namespace uvit
