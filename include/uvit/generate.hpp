// Sampling images from a network: initial noise, the sampler, classifier-free guidance and the
// network-time mapping wired together as the official eval scripts do (SPEC 8, 12).
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/network.hpp"

namespace uvit {

// The schedule a preset trains and samples with: "schedule" = "continuous_vp", "discrete_sd" or
// "adm" (DiT's linear betas; its ddpm/ddim samplers are ADM's, the others run on this schedule).
NoiseSchedule schedule_for(const Config& c);
bool is_adm(const Config& c);
// Real classes of a class-conditional preset (num_classes minus the null class when the dataset
// uses guidance), 0 for unconditional and text models.
int real_classes(const Config& c);
// The null class used for guidance (num_classes - 1), or -1 when the preset has none.
int null_class(const Config& c);

struct GenerateOptions {
  std::string sampler;    // "" = the preset's official sampler
  int steps = 0;          // 0 = the preset's sample_steps (or the sampler default)
  double cfg_scale = -1;  // < 0 = the preset's sample.scale when sample.cfg, else 0 (no guidance)
  uint64_t seed = 0;
  int mini_batch = 0;  // 0 = sample.mini_batch_size (capped at the request)
  // Index of the first sample within a larger run: sample i draws the noise of sample
  // first_index + i, so a run split into pieces (uvit eval's chunks) equals the whole run.
  uint64_t first_index = 0;
  std::function<void(int done, int total)> progress;  // after each network evaluation
  // Called once every buffer of the run is allocated and its sum checked against the memory the
  // process can have, before the first step: the place for slow set-up the check should precede
  // (bench initialises the weights there; docs/memory.md, "Refused up front").
  std::function<void()> on_buffers_checked;
  // Host bytes the caller will hold for the samples besides generate()'s result (the pipeline's
  // images): counted with the result in the check (docs/memory.md, "Host memory").
  size_t host_bytes = 0;
  // The initial x_T [n, C, H, W] instead of drawing it (later noise still comes from the seed).
  std::vector<float> noise;
  // Skip-Cache every N network calls (skip_dit only; 0 or 1: off).
  int skip_cache = 0;
  // Channels guidance combines (<= 0: NetSpec::guidance_channels, all if that is 0).
  int guidance_channels = 0;
  // MDT's power-cos guidance: the scale times power_cos_scale(tau, cfg_power) at each step; 0 =
  // constant guidance; < 0 = the preset's sample.cfg_power (default 0). docs/mdt_diffusion.md.
  double cfg_power = -1;
  // Flow presets only (docs/flow.md); each <= 0 (cfg_interval: < 0) means the preset's.
  double shift = 0;           // time shift s of the grid (sample.shift, default 1: none)
  double cfg_interval = -1;   // no guidance while t < t0 (sample.cfg_interval, default 0)
  double atol = 0, rtol = 0;  // dopri5 tolerances (sample.atol / rtol, default 1e-6 / 1e-3)
  // euler / heun: steps with velocity 0 at the start (SVG's cfg_star-N-0; sample.zero_init_steps,
  // default 0); < 0 = the preset's.
  int zero_init_steps = -1;
  // Live preview (docs/samplers.md "Preview"): after every preview_interval-th network evaluation
  // of a mini-batch (and its last), the model's current prediction of the clean samples, x0 [B, C,
  // H, W] in generate()'s output space, of the B samples from index `first` of the request. Unset:
  // nothing is computed. It only reads: the samples are the same with or without it.
  std::function<void(const float* x0, int B, int first, int done, int total)> preview;
  int preview_interval = 1;
};

// `opt` with the preset's defaults filled in: sampler (the official one for sample.algorithm),
// steps (sample.sample_steps, else the sampler's default), guidance scale (sample.scale when
// sample.cfg, else 0), guidance channels, the power-cos power and, for flow presets, shift, cfg
// interval and tolerances. Throws uvit::Error for an unknown sampler name or a value out of range.
GenerateOptions with_preset_defaults(const Config& cfg, GenerateOptions opt);

class Denoiser;  // the network as the samplers see it (src/diffusion/generate.cpp)

// The buffers generate(net, cfg, opt, n) holds while it samples, allocated untouched: the
// sampler's mini-batch (inputs, outputs, times, labels, contexts; twice under guidance) and the
// network's activations for it (Network::reserve, Skip-Cache's copy included). Made inside a
// MemPlan they count towards its need (docs/memory.md, "Refused up front"): generate() makes them
// before its first step, the Trainer for its sample grid, so that a run that cannot draw its grid
// is refused before step 1. `opt`: with the preset's defaults (with_preset_defaults).
class SamplingBuffers {
 public:
  SamplingBuffers(Network& net, const Config& cfg, const GenerateOptions& opt, int n);
  ~SamplingBuffers();
  int mini_batch() const { return mb_; }
  // Host bytes held with them, for MemPlan::count_host: the n samples generate() returns and
  // opt.host_bytes.
  size_t host_bytes() const { return host_bytes_; }
  Denoiser& model() { return *model_; }
  // Whether they were made for these options and n: what generate() reads of them to size its
  // buffers (mini-batch, guidance, Skip-Cache, host bytes).
  bool made_for(const GenerateOptions& opt, int n) const;
  // How many this process has made: one per generate() or Pipeline::generate (tests check it).
  static int64_t made() { return made_.load(); }

 private:
  // What made_for compares: n and the options the constructor reads.
  using Key = std::tuple<int, int, double, int, double, int, size_t>;
  static Key key(const GenerateOptions& opt, int n);
  int mb_;
  size_t host_bytes_;
  Key made_for_;
  std::unique_ptr<Denoiser> model_;
  static std::atomic<int64_t> made_;
};

// Generates labels.size() samples (or `n` unconditional ones) in [-1, 1] (un-clamped), [N,C,H,W].
// Sample i's initial noise depends only on (seed, i), so results do not depend on mini-batching.
// contexts / null_context for text models: [N, L, clip_dim] and [L, clip_dim].
std::vector<float> generate(Network& net, const Config& cfg, const GenerateOptions& opt, int n,
                            const std::vector<int>& labels = {},
                            const std::vector<float>& contexts = {},
                            const std::vector<float>& null_context = {});

}  // namespace uvit
