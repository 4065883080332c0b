#include "cli/sampling_options.hpp"

#include <cstdio>

#include "cli/autoencoder_cli.hpp"
#include "cli/commands.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/pipeline.hpp"

namespace uvit::cli {

Config SamplingOptions::load() const {
  Config cfg = load_config(config);
  for (const auto& a : set) apply_override(cfg, a);
  check_not_lavin(cfg);
  return cfg;
}

void SamplingOptions::resolve_seed(uint64_t drawn, bool print) {
  if (sampling.seed >= 0) return;
  sampling.seed = int64_t(drawn);
  if (print && !quiet) std::fprintf(stderr, "seed %lld\n", (long long)sampling.seed);
}

GenerationRequest SamplingOptions::request() const {
  GenerationRequest r = sampling;  // sampler: A1111 spellings too ("DPM++ 2M"): canonical_sampler
  r.guidance_channels = guidance_channels_from(guidance_channels, "--guidance-channels");
  return r;
}

GenerateOptions SamplingOptions::generate_options(const Config& cfg) const {
  UVIT_CHECK(sampling.seed >= 0, "--seed -1 (random) is for uvit sample; give a fixed seed here");
  return resolve_generation(cfg, request(), flag_name);
}

std::string flag_name(const char* field) {
  const std::string f = field;
  if (f == "guidance_w") return "--guidance";
  if (f == "classes") return "--class";
  if (f == "prompts") return "--prompt";
  std::string flag = "--" + f;
  for (char& c : flag)
    if (c == '_') c = '-';
  return flag;
}

void SamplingOptions::check_autoencoder_applies(const Config& cfg) const {
  if (cfg.json.contains("z_shape")) return;
  for (const auto& [flag, value] :
       {std::pair<const char*, const std::string&>{"--autoencoder", autoencoder},
        {"--autoencoder-config", autoencoder_config},
        {"--latent-stats", latent_stats}})
    UVIT_CHECK(value.empty(), flag, " ", value, ": config ", cfg.config_name,
               " is a pixel model (its network draws the images, there are no latents to decode): ",
               flag, " applies to latent models only; leave it out");
}

void add_sampling_options(CLI::App* cmd, SamplingOptions& o, const char* device_help) {
  cmd->add_option("--config,-c", o.config, "preset name, JSON file or training run folder")
      ->required();
  cmd->add_option("--weights,-w", o.weights,
                  "weights (.safetensors or .pth; a run's RUN/nnet_ema.safetensors)")
      ->required();
  cmd->add_option("--sampler", o.sampling.sampler,
                  "euler-maruyama, euler-ode, dpm-solver, dpm-solver++, dpm-solver++2m, ddpm or "
                  "ddim; flow presets: euler, heun, euler_maruyama or dopri5; or A1111's names "
                  "(Euler, Euler a, DPM++ 2M, DDIM; docs/c_api.md) (default: the preset's)");
  cmd->add_option("--steps", o.sampling.steps, "sampler steps (default: the preset's)")
      ->check(at_least(1));
  auto* s = cmd->add_option("--cfg-scale", o.sampling.cfg_scale,
                            "guidance scale s in eps_c + s (eps_c - eps_u), U-ViT's convention; 0 "
                            "= none (default: the preset's)")
                ->check(at_least(0));
  auto* w = cmd->add_option("--guidance", o.sampling.guidance_w,
                            "guidance w in eps_u + w (eps_c - eps_u), DiT's and diffusers' "
                            "convention (w = s + 1; 1 = none; default: the preset's)")
                ->check(at_least(1));
  s->excludes(w);
  cmd->add_option("--guidance-channels", o.guidance_channels,
                  "output channels guidance combines: all (the input channels) or N, the first "
                  "N (default: the network's; DiT: 3)");
  cmd->add_option("--cfg-power", o.sampling.cfg_power,
                  "MDT's power-cos guidance: the scale times (1 - cos((1 - tau)^P pi)) / 2, tau "
                  "the time toward noise in [0, 1] (ADM: step/1000; docs/mdt_diffusion.md; "
                  "FiTv2: tau = min(t, 1) of the flow time, docs/fit.md); 0 = constant (default: "
                  "the preset's sample.cfg_power)")
      ->check(at_least(0));
  cmd->add_option("--shift", o.sampling.shift,
                  "flow presets: time shift s, t' = s t / (1 + (s - 1) t) (default: the "
                  "preset's; 1 = none)")
      ->check(positive());
  cmd->add_option("--cfg-interval", o.sampling.cfg_interval,
                  "flow presets: no guidance while t < t0, t0 in [0, 1] (default: the preset's)")
      ->check(at_least(0));
  cmd->add_option(
         "--zero-init-steps", o.sampling.zero_init_steps,
         "flow presets, euler/heun: the first N steps have velocity 0 (SVG's cfg_star-N-0; "
         "default: the preset's sample.zero_init_steps, else 0)")
      ->check(at_least(0));
  cmd->add_option("--atol", o.sampling.atol,
                  "flow presets, dopri5: absolute tolerance (default 1e-6)")
      ->check(positive());
  cmd->add_option("--rtol", o.sampling.rtol,
                  "flow presets, dopri5: relative tolerance (default 1e-3)")
      ->check(positive());
  cmd->add_option("--skip-cache", o.sampling.skip_cache,
                  "skip_dit: run the whole network every N calls and only its first and last 4 "
                  "blocks in between (Skip-DiT's Skip-Cache; default off)")
      ->check(at_least(1));
  cmd->add_option("--seed", o.sampling.seed,
                  "random seed (default 0; uvit sample: -1 = a random one, printed)")
      ->check(at_least(-1));
  cmd->add_option("--batch", o.sampling.batch, "samples per network batch (default: the preset's)")
      ->check(at_least(1));
  cmd->add_option("--set", o.set, "override a config field: section.key=value (repeatable)");
  cmd->add_flag("--quiet,-q", o.quiet, "print only results and errors");
  add_device_options(cmd, o.device, o.precision, device_help);
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
