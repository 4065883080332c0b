#include "cli/sampling_options.hpp"

#include <cstdlib>

#include "cli/autoencoder_cli.hpp"
#include "cli/commands.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"

namespace uvit::cli {

Config SamplingOptions::load() const {
  Config cfg = load_config(config);
  for (const auto& a : set) apply_override(cfg, a);
  return cfg;
}

GenerateOptions SamplingOptions::generate_options(const Config& cfg) const {
  GenerateOptions g;
  g.sampler = sampler;
  g.steps = steps;
  g.cfg_scale = guidance >= 0 ? guidance - 1 : scale;
  g.seed = uint64_t(seed);
  g.mini_batch = batch;
  g.skip_cache = skip_cache;
  g.shift = shift;
  g.cfg_interval = cfg_interval;
  g.atol = atol;
  g.rtol = rtol;
  if (guidance_channels == "all") {
    g.guidance_channels = cfg.spec.in_chans;
  } else if (!guidance_channels.empty()) {
    char* end = nullptr;
    const long n = std::strtol(guidance_channels.c_str(), &end, 10);
    UVIT_CHECK(*end == '\0' && n >= 1 && n <= 1 << 20,
               "--guidance-channels must be 'all' or a "
               "positive integer, got '",
               guidance_channels, "'");
    g.guidance_channels = int(n);
  }
  return with_preset_defaults(cfg, g);
}

std::map<std::string, std::string> extra_sampling_settings(const Config& cfg,
                                                           const GenerateOptions& g) {
  std::map<std::string, std::string> m;
  const NetSpec& ns = cfg.spec;
  if (g.guidance_channels != (ns.guidance_channels > 0 ? ns.guidance_channels : ns.in_chans))
    m["guidance_channels"] = std::to_string(g.guidance_channels);
  if (!is_flow(cfg)) return m;
  m["shift"] = cat(g.shift);
  m["cfg_interval"] = cat(g.cfg_interval);
  if (g.sampler == "dopri5") m["atol"] = cat(g.atol), m["rtol"] = cat(g.rtol);
  return m;
}

void add_sampling_options(CLI::App* cmd, SamplingOptions& o, const char* device_help) {
  cmd->add_option("--config,-c", o.config, "preset name, JSON file or training run folder")
      ->required();
  cmd->add_option("--weights,-w", o.weights,
                  "weights (.safetensors or .pth; a run's RUN/nnet_ema.safetensors)")
      ->required();
  cmd->add_option("--sampler", o.sampler,
                  "euler-maruyama, euler-ode, dpm-solver, dpm-solver++, dpm-solver++2m, ddpm or "
                  "ddim; flow presets: euler, heun, euler_maruyama or dopri5 (default: the "
                  "preset's)");
  cmd->add_option("--steps", o.steps, "sampler steps (default: the preset's)")->check(at_least(1));
  auto* s = cmd->add_option("--cfg-scale", o.scale,
                            "guidance scale s in eps_c + s (eps_c - eps_u), U-ViT's convention; 0 "
                            "= none (default: the preset's)")
                ->check(at_least(0));
  auto* w = cmd->add_option("--guidance", o.guidance,
                            "guidance w in eps_u + w (eps_c - eps_u), DiT's and diffusers' "
                            "convention (w = s + 1; 1 = none)")
                ->check(at_least(1));
  s->excludes(w);
  cmd->add_option("--guidance-channels", o.guidance_channels,
                  "output channels guidance combines: all (the input channels) or N, the first "
                  "N (default: the network's; DiT: 3)");
  cmd->add_option("--shift", o.shift,
                  "flow presets: time shift s, t' = s t / (1 + (s - 1) t) (default: the "
                  "preset's; 1 = none)")
      ->check(positive());
  cmd->add_option("--cfg-interval", o.cfg_interval,
                  "flow presets: no guidance while t < t0, t0 in [0, 1] (default: the preset's)")
      ->check(at_least(0));
  cmd->add_option("--atol", o.atol, "flow presets, dopri5: absolute tolerance (default 1e-6)")
      ->check(positive());
  cmd->add_option("--rtol", o.rtol, "flow presets, dopri5: relative tolerance (default 1e-3)")
      ->check(positive());
  cmd->add_option("--skip-cache", o.skip_cache,
                  "skip_dit: run the whole network every N calls and only its first and last 4 "
                  "blocks in between (Skip-DiT's Skip-Cache; default off)")
      ->check(at_least(1));
  cmd->add_option("--seed", o.seed, "random seed (default 0)")->check(at_least(0));
  cmd->add_option("--batch", o.batch, "samples per network batch (default: the preset's)")
      ->check(at_least(1));
  cmd->add_option("--set", o.set, "override a config field: section.key=value (repeatable)");
  cmd->add_flag("--quiet,-q", o.quiet, "print only results and errors");
  cmd->add_option("--device", o.device, std::string(device_help) + " (default cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--precision", o.precision, kPrecisionHelp);
  cmd->add_option("--autoencoder", o.autoencoder,
                  "latent models: the autoencoder weights that decode the samples "
                  "(autoencoder_kl.pth, a VA-VAE .pt, or .safetensors)");
  cmd->add_option("--autoencoder-config", o.autoencoder_config,
                  std::string(kAutoencoderConfigHelp) +
                      " (default: the preset's autoencoder.config; scale_factor: the preset's)");
  cmd->add_option("--latent-stats", o.latent_stats,
                  std::string("latent models: ") + kLatentStatsHelp +
                      "; decoded as z * std / scale_factor + mean (default: the preset's "
                      "autoencoder.latent_stats, else none)");
}

}  // namespace uvit::cli
