// Diffusion training: the official loop (SPEC 7.3, 16) with AdamW, warm-up, EMA, label dropout,
// optional clipping and accumulation, atomic checkpoints and bit-identical resume.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/network.hpp"
#include "uvit/objective.hpp"

namespace uvit {

class GradOverlap;  // src/train/grad_overlap.hpp
class GradPages;    // src/train/grad_pages.hpp

struct TrainSettings {
  long steps = 0;  // total optimizer updates of the run
  int batch = 0;
  uint64_t seed = 0;
  // optimizer.name: "adamw" (the official U-ViT/DiT one) or "adan" (MDT's; docs/mdt_diffusion.md,
  // whose defaults lr 1e-3, betas (0.98, 0.92, 0.99), weight_decay 0 apply when a key is absent).
  std::string optimizer = "adamw";
  double lr = 2e-4, beta1 = 0.99, beta2 = 0.999, eps = 1e-8, weight_decay = 0.03;
  double beta3 = 0.99;       // Adan only
  double max_grad_norm = 0;  // Adan's own clipping: g *= min(max / (|g| + eps), 1); 0: off
  bool no_prox = false;      // Adan: p *= 1 - lr wd before the step instead of p /= 1 + lr wd
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
  // 1: ZeRO-1, each rank keeps the AdamW moments of its shard only; 2: ZeRO-2, also only its
  // shard of the reduced gradient (docs/distributed.md)
  int zero = 0;
  // train.overlap: exchange each gradient range the network's backward announces final on a
  // communication thread while backward goes on (docs/distributed.md, "Overlap"); the same bits.
  // Off by default: no faster on the 2-vCPU machine it was measured on (docs/benchmarks.md).
  bool overlap = false;
  // Fine-tuning (docs/cli.md "Fine-tuning"): train.init_weights, a checkpoint the network and its
  // EMA start from at step 0 ("" = the seed's initialisation); train.ignore_keys, substrings of
  // official parameter names that keep the seed's initialisation instead; train.finetune "partial":
  // only the parameters ignore_keys names are trained (FiT's pretrain_ckpt / ignore_keys /
  // finetune).
  std::string init_weights;
  std::vector<std::string> ignore_keys;
  bool partial = false;
};
// Reads "train", "optimizer" (name, lr, betas, eps, weight_decay; Adan: max_grad_norm, no_prox),
// "lr_scheduler", "ema_rate", "seed", "grad_clip" and our
// "train.accum", "train.keep_snapshots", "train.dp_virtual", "train.zero", "train.overlap",
// "train.init_weights",
// "train.ignore_keys", "train.finetune" of a preset.
TrainSettings train_settings(const Config& c);

// The factor a gradient of global norm `norm` is scaled by before the update: torch's
// clip_grad_norm_ with grad_clip (AdamW), or Adan's clamp(max_grad_norm / (norm + eps), max=1)
// computed in fp32 as adan.py does; 1 when clipping is off.
double grad_clip_factor(const TrainSettings& s, double norm);
// The data-parallel width V of a job of `ranks` processes (train.dp_virtual, else the ranks);
// refuses a V the ranks do not divide and a batch that does not split into V slices of train.accum
// micro-batches. Depends on the settings and the rank count only: `uvit train` checks it before
// any rank-specific work, so every rank of a job meets the same refusal.
int data_parallel_width(const TrainSettings& s, int ranks);

// The official 'customized' LambdaLR factor for optimizer update u (0-based): min(u / warmup, 1),
// so the first update runs at lr 0.
double warmup_factor(long update, long warmup);

struct StepStats {
  double loss = 0;       // mean epsilon-MSE of the update's batch(es)
  double lr = 0;         // learning rate used by the update
  double grad_norm = 0;  // before clipping
  // Seconds the step spent in the data-parallel exchange after backward (reduction, gathers; with
  // train.overlap, waiting for the communication thread's rest): the exchange's exposed time.
  double comm_s = 0;
};

// A sampling this process draws from the EMA network between steps (uvit train's sample grids):
// generate(ema_net(), cfg, opt, n). Its buffers are part of the Trainer's memory plan.
struct EmaSampling {
  int n = 0;
  GenerateOptions opt;
};

// A batch the data loader could not build (a damaged image found when drawn). Trainer::step
// throws it before the step changes any weight, so save() then writes the last completed step.
struct DataError : Error {
  using Error::Error;
};

class Trainer {
 public:
  // `comm`: the ranks this run is split over (nullptr: this process alone). Rank 0 writes the
  // checkpoints; every rank holds the same weights after every step. `sampling`: what this
  // process samples between steps, planned with the run's buffers (docs/memory.md).
  Trainer(Config cfg, Backend& be, std::shared_ptr<Dataset> data, std::string run_dir,
          Comm* comm = nullptr, const EmaSampling* sampling = nullptr);
  ~Trainer();

  // Fresh run: official initialisation from the seed, then (train.init_weights) the checkpoint's
  // values for every parameter train.ignore_keys does not name; the EMA an exact copy. Throws
  // naming the file and tensor when it does not fit the network, or when it is quantised.
  void init();
  // The metadata of the train.init_weights file init() read (its checkpoint entry, for the run's
  // record: the file is opened once for the load); empty without one.
  const std::map<std::string, std::string>& init_metadata() const { return init_metadata_; }
  // The metadata of the train_state.safetensors resume() loaded, read through the reader it loaded
  // with: its step and save_id name the save the weights are of; empty before a resume.
  const std::map<std::string, std::string>& resumed_metadata() const { return resumed_metadata_; }
  // Continues the run in run_dir bit-identically from its checkpoint, or from the checkpoint in
  // folder `from` (a snapshot RUN/ckpts/STEP, or another run's); throws when there is nothing to
  // resume. Later saves go to run_dir.
  void resume(const std::string& from = "");
  // Takes the next step's batches from the loader now, before step() (which then uses them), so
  // that every rank knows whether its batches could be built before any rank enters the step's
  // collectives. Returns the first batch's error ("" when all were built); the weights, moments
  // and step count stay those of the last completed step either way.
  std::string stage_batches();
  // One optimizer step; without stage_batches, a batch the loader cannot build throws DataError.
  StepStats step();
  // Writes nnet.safetensors, nnet_ema.safetensors and train_state.safetensors atomically, and a
  // snapshot under ckpts/STEP when `snapshot` (keeping the last keep_snapshots).
  void save(bool snapshot = false);

  long step_count() const { return step_; }
  // Bytes of one checkpoint's three files (the weights, the EMA and the optimizer state; headers
  // left out): the room a save needs beside the run's files while it writes (docs/cli.md "Resume").
  size_t checkpoint_bytes();
  // Several ranks: throws when any rank's weights or EMA differ from rank 0's (compared by hash;
  // the replicated update must keep them identical, docs/distributed.md).
  void check_replicas();
  // A 64-bit hash of the weights and the EMA (this rank's replicas; src/dist/weights_hash.hpp).
  uint64_t weights_hash();
  const TrainSettings& settings() const { return s_; }
  TrainSettings& settings() { return s_; }
  Network& net() { return *net_; }
  // A network holding the EMA weights (for sampling).
  Network& ema_net() { return *ema_; }
  const Config& config() const { return cfg_; }
  Comm& comm() { return *comm_; }
  int dp_width() const { return V_; }
  // How the gradient exchange runs (the run's log): "overlapped with backward", "in backward,
  // range by range" (train.zero=2 without the overlap) or "after backward", and why (train.overlap
  // false, accumulation, ...); "" for a single rank.
  const std::string& exchange_mode() const { return exchange_mode_; }
  // What runs (log.jsonl's start row): the ZeRO level (0 for a single rank; 2 falls back to 1
  // where it cannot apply) and whether the exchange overlaps backward.
  int zero_level() const { return zero_level_; }
  bool overlapped() const { return overlapped_; }
  // Floats in each optimizer state buffer of this rank: the trained ones of its part.
  size_t state_floats() const { return moments_n_; }

 private:
  float* reduce_gradients();   // the step's summed gradient, the same bits on every rank
  float* slice_grads();        // this process's k slice gradients, P floats apart
  size_t own_len() const;      // floats of this rank's shard of the parameter vector
  float* own(float* v) const;  // where this rank's shard of a P-float vector starts
  // This rank's shard of the ordered sum of the slice gradients g into dst (own_len() floats;
  // may be own(g), in place).
  void reduce_shard(float* g, float* dst);
  // In place: v (P floats) holds this rank's shard; afterwards every rank's.
  void share_shards(float* v);
  // ZeRO-1: the AdamW update of this rank's shard, then the parameters gathered.
  void zero_update(double lr);
  // train.finetune partial: zeroes the gradient outside the trained ranges in g, which holds
  // floats [off, off + len) of the gradient vector, so that the clipping norm leaves the frozen
  // parameters out (torch's clip_grad_norm_ skips parameters without a gradient).
  void zero_frozen(float* g, size_t off, size_t len);
  // train.init_weights into the network (init()).
  void load_init_weights();
  // The optimizer over floats [off, off + len) of the parameter vector (p, g point at float off),
  // skipping the frozen parameters, which the official optimizers never see. With ema (the EMA
  // parameters at float off), the EMA update of [off, off + len) too, fused with AdamW's pass.
  void update_trained(float* p, const float* g, size_t off, size_t len, double lr,
                      float* ema = nullptr);
  // The trained floats of the parameter vector below float `flat`.
  size_t packed(size_t flat) const;
  // f(lo, hi, at) for each trained range [lo, hi) within [off, off + len), in order; `at` is
  // where lo's state lies in the packed state buffers.
  template <class F>
  void for_trained(size_t off, size_t len, F&& f) const;
  // The optimizer state as saved: (name, buffer) in file order (AdamW: exp_avg, exp_avg_sq; Adan:
  // also exp_avg_diff and the previous gradient).
  std::vector<std::pair<std::string, DeviceBuffer*>> state_buffers();
  // State buffer i streamed to rank 0's `sink` (4 MB at a time; collective under ZeRO-1, where
  // the other ranks call it with nullptr and rank 0 receives their shards piece by piece).
  void stream_state(size_t i, const ByteSink* sink);
  void save_state(const std::string& path, const std::map<std::string, std::string>& meta);
  // One checkpoint folder: nnet, nnet_ema, then train_state (which marks it complete), each with
  // metadata save_id `id` (src/train/save_commit.hpp).
  void write_state(const std::string& dir, const LoaderState& ls, const std::string& id);
  // The save_id of the state now (the weights, EMA, step and loader position `ls`), 16 hex digits.
  std::string save_id(const LoaderState& ls);
  Config cfg_;
  Backend& be_;
  std::shared_ptr<Dataset> data_;
  std::string dir_;
  TrainSettings s_;
  std::map<std::string, std::string> init_metadata_;
  std::map<std::string, std::string> resumed_metadata_;
  std::unique_ptr<Objective> objective_;
  std::unique_ptr<Network> net_, ema_;
  std::unique_ptr<Loader> loader_;
  // AdamW / Adan moments of the trained floats of this rank's part (all, or the ZeRO-1 shard),
  // packed in flat order: floats [mom_lo_, ...) of the parameter vector, frozen ones left out.
  DeviceBuffer m_, v_;
  DeviceBuffer d_, gp_;  // Adan: average gradient difference, previous gradient
  DeviceBuffer dx_, dt_, dout_, dctx_, dy_;
  long step_ = 0;
  LoaderState done_;  // the loader's state after the last completed step: what save() records
  std::vector<Batch>
      staged_;  // stage_batches(): the next step's batches, in the order it takes them
  SingleComm single_;
  Comm* comm_ = nullptr;
  int V_ = 1, k_ = 1, micro_ = 0;  // logical ranks, of them on this process, micro-batch size
  size_t shard_ = 0;               // floats of a rank's shard (a multiple of 16; the last short)
  size_t moments_n_ = 0;           // floats in each optimizer state buffer
  size_t mom_lo_ = 0;    // the flat offset where this rank's part starts (ZeRO-1: its shard's)
  size_t mom_base_ = 0;  // packed(mom_lo_)
  int zero_level_ = 0;   // 1 or 2: ZeRO over several ranks (sharded state, part_), 0: none
  bool sharded() const { return zero_level_ >= 1; }
  bool overlapped_ = false;
  double last_norm_ = 0;
  // The float ranges the optimizer updates: the network's trained parameters, with
  // train.finetune partial only those train.ignore_keys names (frozen in the network's table).
  std::vector<std::pair<size_t, size_t>> trained_;
  std::vector<size_t> packed_at_;  // trained floats before range i of trained_ (and in all)
  DeviceBuffer acc_;   // the slice gradients, when this process adds several (slices, accum)
  DeviceBuffer part_;  // ZeRO-1: the reduced gradient of this rank's shard (shard_ floats)
  std::vector<float> host_acc_;  // CUDA with host MPI: the slice gradients' staging
  // train.overlap: the communication thread (nullptr: the exchange runs after backward), and
  // whether the network's announcements go to it (the step's last backward only).
  // (train.zero=2 uses it too, exchanging on the main thread unless the exchange overlaps.)
  // pages_ (ZeRO-2: the network's gradient) comes first: the thread ends before it goes.
  std::unique_ptr<GradPages> pages_;
  std::unique_ptr<GradOverlap> overlap_;
  bool overlap_armed_ = false;
  std::string exchange_mode_;
  // The exchange of gradient floats [lo, hi) (the communication thread's job): reduced into this
  // rank's shard, then (without ZeRO-1) gathered.
  void exchange_range(size_t lo, size_t hi);
};

}  // namespace uvit
