// `uvit lavin-sample`: LaVin-DiT's in-context generation on latents (docs/lavin_dit.md): the
// example pairs' and the query's ST-VAE latents from a .npy, the answer latent out (the ST-VAE
// that encodes and decodes the images is separate).
#include <cstring>

#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/lavin.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

namespace uvit::cli {

void add_lavin_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "lavin-sample", "LaVin-DiT: the answer latent for in-context example latents and a query");
  struct Opts {
    std::string config, weights, frames, noise, out, device = "cpu", precision;
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
  cmd->add_option("--seed", o->seed, "noise seed (Philox normal; default 0)");
  cmd->add_option("--steps", o->steps, "time table points: 20, 30 or 40 (default 20)");
  cmd->add_option("--cfg-scale", o->cfg_scale,
                  "official cfg_scale: v_u + s (v_c - v_u), 1 = unguided (default 1.5)");
  cmd->add_flag("--normalized", o->normalized,
                "the frames are already normalised ((z - 0.032470703125) * 1.08936170213) and "
                "the answer stays normalised; default: raw ST-VAE latents in and out");
  cmd->add_option("--out,-o", o->out, "output .npy [1, C, S, S]")->required();
  cmd->add_option("--device", o->device, "cpu or cuda (default cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--precision", o->precision, kPrecisionHelp);
  cmd->callback([o] {
    check_output("--out", o->out, {".npy"});
    Config c = load_config(o->config);
    const NetSpec& n = c.spec;
    UVIT_CHECK(n.name == "lavin_dit", "lavin-sample: config ", c.config_name, " is a ", n.name,
               " network, not lavin_dit");
    lavin_time_table(o->steps);  // the one-line error before any loading
    UVIT_CHECK(std::isfinite(o->cfg_scale), "--cfg-scale must be finite");
    Array fr = load_npy(o->frames);
    UVIT_CHECK(fr.shape.size() == 4 && fr.shape[0] >= 2 && fr.shape[1] == n.in_chans &&
                   fr.shape[2] == n.img_size && fr.shape[3] == n.width(),
               o->frames, ": shape ", shape_str(fr.shape), ", expected [T_c >= 2, ", n.in_chans,
               ", ", n.img_size, ", ", n.width(), "]");
    std::vector<float> frames = fr.to_f32(), noise(n.in_numel());
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
    auto be = make_backend(o->device, o->precision);
    auto net = make_network(c, *be);
    net->load_file(o->weights);
    std::vector<float> x = lavin_sample(*net, frames, noise, o->steps, o->cfg_scale);
    if (!o->normalized) lavin_denormalize_latents(x);
    Array out(DType::F32, {1, n.in_chans, n.img_size, n.width()});
    std::memcpy(out.data.data(), x.data(), x.size() * 4);
    make_parent_dir(o->out);
    save_npy(o->out, out);
  });
}

}  // namespace uvit::cli
