// Diffusion training: the official loop (SPEC 7.3, 16) with AdamW, warm-up, EMA, label dropout,
// optional clipping and accumulation, atomic checkpoints and bit-identical resume.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/network.hpp"
#include "uvit/objective.hpp"

namespace uvit {

struct TrainSettings {
  long steps = 0;  // total optimizer updates of the run
  int batch = 0;
  uint64_t seed = 0;
  double lr = 2e-4, beta1 = 0.99, beta2 = 0.999, eps = 1e-8, weight_decay = 0.03;
  long warmup = 0;
  double ema_rate = 0.9999;
  double grad_clip = 0;  // 0: off (official)
  int accum = 1;         // micro-batches per update (off by default, as official)
  long log_interval = 10, eval_interval = 5000, save_interval = 50000;
  int keep_snapshots = 3;
};
// Reads "train", "optimizer", "lr_scheduler", "ema_rate", "seed", "grad_clip" and our
// "train.accum", "train.keep_snapshots" of a preset.
TrainSettings train_settings(const Config& c);

// The official 'customized' LambdaLR factor for optimizer update u (0-based): min(u / warmup, 1),
// so the first update runs at lr 0.
double warmup_factor(long update, long warmup);

struct StepStats {
  double loss = 0;       // mean epsilon-MSE of the update's batch(es)
  double lr = 0;         // learning rate used by the update
  double grad_norm = 0;  // before clipping
};

class Trainer {
 public:
  Trainer(Config cfg, Backend& be, std::shared_ptr<Dataset> data, std::string run_dir);
  ~Trainer();

  // Fresh run: official initialisation from the seed, EMA an exact copy.
  void init();
  // Continues the run in run_dir bit-identically; throws when there is nothing to resume.
  void resume();
  StepStats step();
  // Writes nnet.safetensors, nnet_ema.safetensors and train_state.safetensors atomically, and a
  // snapshot under ckpts/STEP when `snapshot` (keeping the last keep_snapshots).
  void save(bool snapshot = false);

  long step_count() const { return step_; }
  const TrainSettings& settings() const { return s_; }
  TrainSettings& settings() { return s_; }
  Network& net() { return *net_; }
  // A network holding the EMA weights (for sampling).
  Network& ema_net() { return *ema_; }
  const Config& config() const { return cfg_; }

 private:
  Config cfg_;
  Backend& be_;
  std::shared_ptr<Dataset> data_;
  std::string dir_;
  TrainSettings s_;
  std::unique_ptr<Objective> objective_;
  std::unique_ptr<Network> net_, ema_;
  std::unique_ptr<Loader> loader_;
  DeviceBuffer m_, v_;  // AdamW moments
  DeviceBuffer dx_, dt_, dout_, dctx_, dy_;
  long step_ = 0;
};

}  // namespace uvit
