// `uvit lavin-sample`: LaVin-DiT's in-context generation (docs/lavin_dit.md): the example pairs'
// and the query's ST-VAE latents from a .npy, the answer latent out; with --autoencoder the ST-VAE
// (docs/stvae.md) takes images in and gives the answer image out, as inference.py does.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "models/stvae.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/lavin.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

namespace uvit::cli {

namespace {

// inference.py's vae.encode(x).sample(): mean + exp(logvar / 2) eps with logvar clamped to
// [-30, 20] (docs/stvae.md), eps from the seed's own stream (not the answer noise's).
std::vector<float> sample_posterior(const Array& moments, uint64_t seed) {
  const int64_t B = moments.shape[0], C = moments.shape[1] / 2,
                hw = moments.shape[2] * moments.shape[3];
  const int64_t n = C * hw;
  const std::vector<float> m = moments.to_f32();
  std::vector<float> z(size_t(B * n));
  const Philox eps(seed ^ 0x706f737465726fULL);
  for (int64_t b = 0; b < B; ++b)
    uvit::sample_posterior(m.data() + b * 2 * n, C, hw, 1.f, eps, uint64_t(b * n),
                           z.data() + b * n);
  return z;
}

}  // namespace

void add_lavin_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "lavin-sample", "LaVin-DiT: the answer latent for in-context example latents and a query");
  struct Opts {
    std::string config, weights, frames, noise, out, device = "cpu", precision;
    std::string autoencoder, autoencoder_config = "lavin_stvae", latents;
    int steps = 20;
    double cfg_scale = 1.5;
    uint64_t seed = 0;
    bool normalized = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config, "a lavin_dit preset, JSON file or run folder")
      ->required();
  cmd->add_option("--weights,-w", o->weights, ".safetensors or .pth")->required();
  cmd->add_option("--frames", o->frames,
                  "float32 [T_c, C, S, S] .npy: the example pairs' (input, target) latents, then "
                  "the query's last")
      ->required();
  cmd->add_option("--noise", o->noise, "float32 [C, S, S] .npy initial noise (default: --seed)");
  cmd->add_option("--seed", o->seed, "noise seed (Philox normal; default 0)")
      ->check(at_least(0));  // -1 is no random seed here: an unsigned option would wrap it
  cmd->add_option("--steps", o->steps, "time table points: 20, 30 or 40 (default 20)");
  cmd->add_option("--cfg-scale", o->cfg_scale,
                  "official cfg_scale: v_u + s (v_c - v_u), 1 = unguided (default 1.5)");
  cmd->add_flag("--normalized", o->normalized,
                "the frames are already normalised ((z - 0.032470703125) * 1.08936170213) and "
                "the answer stays normalised; default: raw ST-VAE latents in and out");
  cmd->add_option("--autoencoder", o->autoencoder,
                  "ST-VAE weights (stvae.pt): --frames holds images [T_c, 3, 8S, 8S] in [-1, 1], "
                  "encoded (a posterior sample from --seed) and normalised, and the answer is "
                  "decoded to an image (docs/stvae.md)");
  cmd->add_option("--autoencoder-config", o->autoencoder_config,
                  "with --autoencoder: lavin_stvae (default) or a JSON file {\"stvae\": {...}}");
  cmd->add_option("--latents", o->latents,
                  "with --autoencoder: also write the normalised frames [T_c, C, S, S] and answer "
                  "[1, C, S, S] the network saw, as F (frames) and F with .answer.npy");
  cmd->add_option("--out,-o", o->out,
                  "output .npy [1, C, S, S] (with --autoencoder: the image, .npy [1, 3, 8S, 8S] "
                  "or .png)")
      ->required();
  add_device_options(cmd, o->device, o->precision);
  cmd->callback([o] {
    Config c = load_config(o->config);
    const NetSpec& n = c.spec;
    UVIT_CHECK(n.name == "lavin_dit", "lavin-sample: config ", c.config_name, " is a ", n.name,
               " network, not lavin_dit");
    lavin_time_table(o->steps);  // the one-line error before any loading
    UVIT_CHECK(std::isfinite(o->cfg_scale), "--cfg-scale must be finite");
    const bool images = !o->autoencoder.empty();
    UVIT_CHECK(images || o->latents.empty(), "--latents needs --autoencoder");
    UVIT_CHECK(!images || !o->normalized, "--normalized applies to latent frames, not images");
    if (images)
      check_output("--out", o->out, {".npy", ".png"});
    else
      check_output("--out", o->out, {".npy"});
    if (!o->latents.empty()) check_output("--latents", o->latents, {".npy"});
    check_not_input("--out", o->out, {{"input --frames", o->frames}, {"input --noise", o->noise}});
    const std::string answer = o->latents.empty() ? "" : o->latents + ".answer.npy";
    for (const std::string& l : {o->latents, answer})
      check_not_input(
          "--latents", l,
          {{"input --frames", o->frames}, {"input --noise", o->noise}, {"output --out", o->out}});
    // The ST-VAE's encoder half encodes the frames and goes before the network loads; its decoder
    // half loads after sampling, once the network is gone (docs/memory.md, "The decode's peak").
    std::unique_ptr<Stvae> ae;
    StvaeConfig ae_cfg;
    if (images) {
      ae_cfg = stvae_config_from(o->autoencoder_config);
      ae = std::make_unique<Stvae>(Stvae::load(o->autoencoder, ae_cfg, o->device, o->precision,
                                               false, AutoencoderUse::encode));
      UVIT_CHECK(ae_cfg.latent_channels == n.in_chans, o->autoencoder_config, ": ",
                 ae_cfg.latent_channels, " latent channels, the network takes ", n.in_chans);
    }
    const int64_t f = images ? ae_cfg.downsample_factor() : 1;
    Array fr = load_npy(o->frames);
    const int64_t want_c = images ? ae_cfg.in_channels : n.in_chans;
    UVIT_CHECK(fr.shape.size() == 4 && fr.shape[0] >= 2 && fr.shape[1] == want_c &&
                   fr.shape[2] == f * n.img_size && fr.shape[3] == f * n.width(),
               o->frames, ": shape ", shape_str(fr.shape), ", expected [T_c >= 2, ", want_c, ", ",
               f * n.img_size, ", ", f * n.width(), "]");
    std::vector<float> frames =
                           images ? sample_posterior(ae->encode_moments(fr), o->seed) : fr.to_f32(),
                       noise(n.in_numel());
    ae.reset();
    if (!o->noise.empty()) {
      Array z = load_npy(o->noise);
      const std::vector<int64_t> want = {n.in_chans, n.img_size, n.width()};
      UVIT_CHECK(z.shape == want, o->noise, ": shape ", shape_str(z.shape), ", expected ",
                 shape_str(want));
      noise = z.to_f32();
    } else {
      Philox(o->seed).fill_normal(noise.data(), noise.size());
    }
    if (!o->normalized) lavin_normalize_latents(frames);
    const int64_t T = fr.shape[0];
    auto be = make_backend(o->device, o->precision);
    auto net = make_network(c, *be);
    net->load_file(o->weights);
    std::vector<float> x = lavin_sample(*net, frames, noise, o->steps, o->cfg_scale);
    net.reset();
    const auto latent_array = [&](const std::vector<float>& v, int64_t b) {
      Array a(DType::F32, {b, n.in_chans, n.img_size, n.width()});
      std::memcpy(a.data.data(), v.data(), v.size() * 4);
      return a;
    };
    if (!images) {
      if (!o->normalized) lavin_denormalize_latents(x);
      make_parent_dir(o->out);
      save_npy(o->out, latent_array(x, 1));
      return;
    }
    if (!o->latents.empty()) {
      make_parent_dir(o->latents);
      save_npy(o->latents, latent_array(frames, T));
      save_npy(answer, latent_array(x, 1));
    }
    const Array img =  // denormalises, as inference.py
        Stvae::load(o->autoencoder, ae_cfg, o->device, o->precision, false, AutoencoderUse::decode)
            .decode(latent_array(x, 1));
    make_parent_dir(o->out);
    if (o->out.size() > 4 && o->out.substr(o->out.size() - 4) == ".png") {
      const std::vector<float> v = img.to_f32();
      const Image im = to_image(v.data(), int(img.shape[1]), int(img.shape[2]), int(img.shape[3]));
      write_png(o->out, im);
    } else {
      save_npy(o->out, img);
    }
  });
}

}  // namespace uvit::cli
