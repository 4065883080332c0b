// The options `uvit sample` and `uvit eval` share: the preset and weights, the sampler settings,
// and where the network and the latent decoder run.
#pragma once
#include <CLI/CLI.hpp>
#include <map>
#include <string>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/generate.hpp"
#include "uvit/pipeline.hpp"

namespace uvit::cli {

struct SamplingOptions {
  std::string config, weights, sampler, device = "cpu", precision, autoencoder, autoencoder_config,
                                        latent_stats;
  int steps = 0, batch = 0, skip_cache = 0;
  double scale = -1;     // U-ViT's s: eps_c + s (eps_c - eps_u); 0 = off
  double guidance = -1;  // DiT's / diffusers' w: eps_u + w (eps_c - eps_u) = s + 1; 1 = off
  double shift = 0, cfg_interval = -1, atol = 0, rtol = 0;  // flow presets; unset: the preset's
  int zero_init_steps = -1;                                 // flow presets; unset: the preset's
  std::string guidance_channels;                            // "all" or N; "": the network's
  double cfg_power = -1;  // MDT's power-cos guidance; unset: the preset's
  long seed = 0;
  std::vector<std::string> set;
  bool quiet = false;

  // --seed -1: draws a random seed in [0, 2^32), prints "seed N" (unless --quiet) and keeps it.
  void resolve_seed();
  // The preset with the --set overrides applied.
  Config load() const;
  // The sampler settings as a pipeline request (n, classes, prompts and outputs left to the
  // caller); fails on a bad --guidance-channels.
  GenerationRequest request() const;
  // The generator's settings with the preset's defaults resolved (so that what is recorded, in
  // PNG metadata or a run manifest, is what ran); progress and first_index are left to the caller.
  GenerateOptions generate_options(const Config& cfg) const;
};

// Declares --config, --weights, --sampler, --steps, --cfg-scale / --guidance (one of them),
// --guidance-channels, --cfg-power, the flow options --shift, --cfg-interval, --atol, --rtol,
// --seed, --batch, --set, --quiet, --device (help: what runs on it), --precision, --autoencoder,
// --autoencoder-config and --latent-stats.
void add_sampling_options(CLI::App* cmd, SamplingOptions& o, const char* device_help);

}  // namespace uvit::cli
