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
#include "uvit/dist.hpp"
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
  // Data parallelism (docs/distributed.md): the logical width V (0: the number of ranks). The
  // batch is split into V slices of `batch / V`; a run's bits depend on V, never on how many
  // processes share the slices, so one process with dp_virtual = V reproduces V ranks exactly.
  int dp_virtual = 0;
  int zero = 0;  // 1: ZeRO-1, each rank keeps the AdamW moments of its shard only
};
// Reads "train", "optimizer", "lr_scheduler", "ema_rate", "seed", "grad_clip" and our
// "train.accum", "train.keep_snapshots", "train.dp_virtual", "train.zero" of a preset.
TrainSettings train_settings(const Config& c);

// The official 'customized' LambdaLR factor for optimizer update u (0-based): min(u / warmup, 1),
// so the first update runs at lr 0.
double warmup_factor(long update, long warmup);

struct StepStats {
  double loss = 0;       // mean epsilon-MSE of the update's batch(es)
  double lr = 0;         // learning rate used by the update
  double grad_norm = 0;  // before clipping
  double comm_s = 0;     // seconds in the data-parallel exchange (reduction, gathers)
};

class Trainer {
 public:
  // `comm`: the ranks this run is split over (nullptr: this process alone). Rank 0 writes the
  // checkpoints; every rank holds the same weights after every step.
  Trainer(Config cfg, Backend& be, std::shared_ptr<Dataset> data, std::string run_dir,
          Comm* comm = nullptr);
  ~Trainer();

  // Fresh run: official initialisation from the seed, EMA an exact copy.
  void init();
  // Continues the run in run_dir bit-identically from its checkpoint, or from the checkpoint in
  // folder `from` (a snapshot RUN/ckpts/STEP, or another run's); throws when there is nothing to
  // resume. Later saves go to run_dir.
  void resume(const std::string& from = "");
  StepStats step();
  // Writes nnet.safetensors, nnet_ema.safetensors and train_state.safetensors atomically, and a
  // snapshot under ckpts/STEP when `snapshot` (keeping the last keep_snapshots).
  void save(bool snapshot = false);

  long step_count() const { return step_; }
  // Several ranks: throws when any rank's weights or EMA differ from rank 0's (compared by hash;
  // the replicated update must keep them identical, docs/distributed.md).
  void check_replicas();
  const TrainSettings& settings() const { return s_; }
  TrainSettings& settings() { return s_; }
  Network& net() { return *net_; }
  // A network holding the EMA weights (for sampling).
  Network& ema_net() { return *ema_; }
  const Config& config() const { return cfg_; }
  Comm& comm() { return *comm_; }
  int dp_width() const { return V_; }

 private:
  float* reduce_gradients();  // the step's summed gradient, the same bits on every rank
  void reduce_shard();        // this rank's shard of it, into part_
  void gather_parts();        // red_ = every rank's part_, in rank order
  // ZeRO-1: the AdamW update of this rank's shard, then the parameters gathered.
  void zero_update(double lr);
  // AdamW over floats [off, off + len) of the parameter vector (p, g, m, v point at float off),
  // skipping the frozen parameters, which the official optimizers never see.
  void adamw_trained(float* p, const float* g, float* m, float* v, size_t off, size_t len,
                     double lr);
  void gather_moments(std::vector<float>& m, std::vector<float>& v);
  Config cfg_;
  Backend& be_;
  std::shared_ptr<Dataset> data_;
  std::string dir_;
  TrainSettings s_;
  std::unique_ptr<Objective> objective_;
  std::unique_ptr<Network> net_, ema_;
  std::unique_ptr<Loader> loader_;
  DeviceBuffer m_, v_;  // AdamW moments (ZeRO-1: of this rank's shard)
  DeviceBuffer dx_, dt_, dout_, dctx_, dy_;
  long step_ = 0;
  SingleComm single_;
  Comm* comm_ = nullptr;
  int V_ = 1, k_ = 1, micro_ = 0;  // logical ranks, of them on this process, micro-batch size
  size_t n_pad_ = 0, shard_ = 0;   // gradient length padded to a multiple of the ranks; a shard
  size_t moments_n_ = 0;           // floats in m_ and v_
  double last_norm_ = 0;
  DeviceBuffer acc_, red_, part_;  // per logical rank gradients, the reduced one, this shard
  std::vector<float> host_acc_, host_red_, host_part_;  // CUDA with host MPI: staging
};

}  // namespace uvit
