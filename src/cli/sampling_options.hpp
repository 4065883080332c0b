// The options `uvit sample` and `uvit eval` share: the preset and weights, the sampler settings,
// and where the network and the latent decoder run.
#pragma once
#include <CLI/CLI.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/generate.hpp"
#include "uvit/pipeline.hpp"

namespace uvit::cli {

struct SamplingOptions {
  std::string config, weights, device = "cpu", precision, autoencoder, autoencoder_config,
                               latent_stats;
  // The sampler settings the options fill in place (--sampler, --steps, --cfg-scale = cfg_scale,
  // U-ViT's s; --guidance = guidance_w, s + 1; the flow options, --seed, --batch, --skip-cache):
  // GenerationRequest's defaults are the "unset, the preset's" of the options.
  GenerationRequest sampling;
  std::string guidance_channels;  // "all" or N; "": the network's
  std::vector<std::string> set;
  bool quiet = false;

  // --seed -1: keeps `drawn` (random_seed(): under mpirun rank 0's on every rank, so that all
  // sample from one seed) and, where `print`, prints "seed N" (unless --quiet).
  void resolve_seed(uint64_t drawn, bool print);
  // The preset with the --set overrides applied.
  Config load() const;
  // `sampling` with --guidance-channels (n, classes, prompts and outputs left to the caller);
  // fails on a bad --guidance-channels.
  GenerationRequest request() const;
  // The generator's settings with the preset's defaults resolved (so that what is recorded, in
  // PNG metadata or a run manifest, is what ran); progress and first_index are left to the caller.
  GenerateOptions generate_options(const Config& cfg) const;
  // Fails when an autoencoder option is given for a pixel model (no `z_shape`), which would drop
  // it without a word (a missing file included), naming the option.
  void check_autoencoder_applies(const Config& cfg) const;
};

// GenerationRequest's fields as the options name them ("cfg_scale" -> "--cfg-scale", "guidance_w"
// -> "--guidance"), for resolve_generation's messages.
std::string flag_name(const char* field);

// Declares --config, --weights, --sampler, --steps, --cfg-scale / --guidance (one of them),
// --guidance-channels, --cfg-power, the flow options --shift, --cfg-interval, --atol, --rtol,
// --seed, --batch, --set, --quiet, --device (help: what runs on it), --precision, --autoencoder,
// --autoencoder-config and --latent-stats.
void add_sampling_options(CLI::App* cmd, SamplingOptions& o, const char* device_help);

}  // namespace uvit::cli
