// The training objective of a diffusion process: how a batch is noised and what the loss is. The
// trainer is written once over it; each process (U-ViT's continuous VP and discrete SD schedules,
// DiT's ADM process) supplies its own.
#pragma once
#include <array>
#include <cstddef>
#include <memory>

#include "uvit/config.hpp"

namespace uvit {

// One training sample's time: x_t = mean·x0 + std·eps, and the network's time input.
struct TrainDraw {
  double mean = 1, std = 0;
  float net_time = 0;
  int index = 0;  // the discrete step where the process has one (ADM's n in 0..N-1)
};

class Objective {
 public:
  virtual ~Objective() = default;
  // The time of one sample from u ~ U[0, 1).
  virtual TrainDraw draw(double u) const = 0;
  // The loss of a batch of B samples and its gradient. out [B, out_numel] is the network output,
  // eps / x0 [B, in_numel] the noise and the data. Returns the mean loss;
  // writes dloss/dout / accum (micro-batches per update) into dout [B, out_numel].
  virtual double loss(const float* out, const float* eps, const float* x0, const TrainDraw* draws,
                      int B, size_t in_numel, size_t out_numel, int accum, float* dout) const = 0;
  // The loss of a variable-size batch (FiT's packed training, docs/fit.md): eps, x0 [B, C, H, W],
  // out, dout [B, C_out, H, W] (C_out = 2 C for ADM with a learned variance); only the top-left
  // sizes[b] = {height, width} of sample b counts. Each sample's loss is the mean over its valid
  // elements (the official mean_flat(((v - u) mask)^2) N / valid; ADM's mse and vb terms · N /
  // valid), the result their batch mean; dout is zero outside the valid regions. The flow and
  // ADM objectives have it; U-ViT's eps-MSE refuses.
  virtual double loss_masked(const float* out, const float* eps, const float* x0,
                             const TrainDraw* draws, int B, int C, int H, int W,
                             const std::array<int, 2>* sizes, int accum, float* dout) const;
};

// The objective of a preset's process ("schedule": continuous_vp, discrete_sd, adm, flow), with
// train.min_snr_gamma weighting its eps-MSE term (not flow's; docs/mdt_diffusion.md).
std::unique_ptr<Objective> make_objective(const Config& cfg);

// min-SNR-gamma (MDT's gaussian_diffusion.py training_losses): the eps-MSE of a sample drawn at
// snr = mean^2 / std^2 (= abar / (1 - abar)) is weighted min(snr, gamma) / snr; 1 when gamma <= 0.
double min_snr_weight(const TrainDraw& d, double gamma);

}  // namespace uvit
