// `uvit autoencoder encode|decode`: a KL autoencoder (SD kl-f8, VA-VAE f16d32, ...) on .npy arrays;
// LaVin-DiT's ST-VAE also on clips [B, C, T, H, W] (docs/stvae.md).
#include <chrono>
#include <cstdio>
#include <functional>

#include "cli/autoencoder_cli.hpp"
#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "models/stvae.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

namespace {

struct AeOpts {
  std::string config, weights, in, out, device = "cpu", precision, latent_stats;
  int batch = 8;
  bool quiet = false;
};

void add_common(CLI::App* c, AeOpts& o, const char* in_help, const char* out_help) {
  c->add_option("--config,-c,--autoencoder-config", o.config, kAutoencoderConfigHelp);
  c->add_option("--weights,-w", o.weights,
                "autoencoder_kl.pth, a VA-VAE .pt (other modules skipped) or .safetensors")
      ->required();
  c->add_option("--in,-i", o.in, in_help)->required();
  c->add_option("--out,-o", o.out, out_help)->required();
  c->add_option("--batch", o.batch, "items per forward pass (bounds memory; default 8)")
      ->check(at_least(1));
  c->add_flag("--quiet,-q", o.quiet, "print only errors");
  add_encoder_device(c, o.device, o.precision, "the autoencoder");
}

// Runs fn over the input in batches of --batch and writes the result (atomic). `clips`: the
// model also takes [B, C, T, H, W].
void process(const AeOpts& o, bool encode, int in_channels, bool clips, const Array& in,
             const std::function<Array(const Array&)>& fn) {
  const size_t rank = in.shape.size();
  UVIT_CHECK((rank == 4 || (clips && rank == 5)) && in.shape[0] > 0, o.in, ": shape ",
             shape_str(in.shape), encode ? ", expected images [B, " : ", expected latents [B, ",
             in_channels, encode ? ", H, W]" : ", h, w]",
             !clips   ? ""
             : encode ? cat(" or clips [B, ", in_channels, ", T, H, W]")
                      : cat(" or [B, ", in_channels, ", t, h, w]"));
  const auto t0 = std::chrono::steady_clock::now();
  Progress bar(encode ? "encode" : "decode", long(in.shape[0]), o.quiet);
  SteadyRate steady;
  const Array out = map_batches(
      in, o.batch,
      [&](const Array& part) {
        try {
          return fn(part);
        } catch (const Error& e) {
          fail(o.in, ": ", e.what());
        }
      },
      [&](int64_t done, int64_t) {
        bar.update(long(done));
        steady.update(long(done));
      });
  bar.finish();
  make_parent_dir(o.out);
  save_npy(o.out, out);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.quiet) {  // a single batch has no rate after the first one: print none rather than 0
    char rate[64] = "";
    if (steady.per_second() > 0)
      std::snprintf(rate, sizeof rate, " (after the first batch: %.2f items/s)",
                    steady.per_second());
    std::fprintf(stderr, "%s %s -> %s %s in %.2f s%s\n", encode ? "encoded" : "decoded",
                 shape_str(in.shape).c_str(), shape_str(out.shape).c_str(), o.out.c_str(), s, rate);
  }
}

void run(const AeOpts& o, bool encode) {
  check_output("--out", o.out, {".npy"});
  check_not_input("--out", o.out, {{"input --in", o.in}});
  if (is_stvae_config(o.config)) {  // LaVin-DiT's ST-VAE, images as one-frame clips
    UVIT_CHECK(o.latent_stats.empty(), "--latent-stats: the ST-VAE's latents are normalised by ",
               "its shift and scaling factors (docs/stvae.md), not by latent statistics");
    const StvaeConfig cfg = stvae_config_from(o.config);
    // Clips of T > 1 frames need the per-tap weights: the input's header decides, read after the
    // weights file opened (its errors first, as for the other autoencoders) and before the slow
    // load (a T that encode refuses fails fast).
    open_weights(o.weights);
    const std::vector<int64_t> shape = read_npy_header(o.in).shape;
    const bool clips = shape.size() == 5 && shape[2] > 1;
    if (clips && encode) stvae_check_frames(cfg, shape[2], o.in);
    const Stvae ae = Stvae::load(o.weights, cfg, o.device, o.precision, clips,
                                 encode ? AutoencoderUse::encode : AutoencoderUse::decode);
    print_skipped(ae, o.weights, o.quiet);
    return process(o, encode, encode ? cfg.in_channels : cfg.latent_channels, true, load_npy(o.in),
                   [&](const Array& x) { return encode ? ae.encode_moments(x) : ae.decode(x); });
  }
  const AutoencoderConfig cfg = autoencoder_config_from(o.config);
  const LatentStats stats =
      o.latent_stats.empty() ? LatentStats{} : load_latent_stats(o.latent_stats, cfg.embed_dim);
  // One half of the file is read: the encoder's tensors for encode, the decoder's for decode.
  Autoencoder ae = Autoencoder::load(o.weights, cfg, o.device, o.precision,
                                     encode ? AutoencoderUse::encode : AutoencoderUse::decode);
  print_skipped(ae, o.weights, o.quiet);
  if (!o.latent_stats.empty()) ae.set_latent_stats(stats);
  process(o, encode, encode ? cfg.in_channels : cfg.embed_dim, false, load_npy(o.in),
          [&](const Array& x) { return encode ? ae.encode_moments(x) : ae.decode(x); });
}

}  // namespace

void add_autoencoder(CLI::App& app) {
  auto* cmd = app.add_subcommand("autoencoder",
                                 "KL autoencoder (SD kl-f8, VA-VAE f16d32, LaVin-DiT's ST-VAE, or "
                                 "a JSON config): encode/decode");
  cmd->require_subcommand(1);
  auto enc = std::make_shared<AeOpts>(), dec = std::make_shared<AeOpts>();
  auto* e = cmd->add_subcommand("encode",
                                "images [B,3,H,W] float32 in [-1,1] -> moments [B,2C,H/f,W/f] "
                                "(mean, then raw logvar; C = embed_dim, f = 2^(levels-1)); the "
                                "ST-VAE also takes clips [B,3,T,H,W] with T = 1 + 4k frames -> "
                                "[B,2C,1+k,H/f,W/f]");
  add_common(e, *enc, "images .npy", "moments .npy");
  e->callback([enc] { run(*enc, true); });
  auto* d = cmd->add_subcommand("decode",
                                "latents z [B,C,h,w] -> images [B,3,f*h,f*w] "
                                "(decoder(post_quant_conv(z * std / scale + mean))); the ST-VAE "
                                "also takes [B,C,t,h,w] -> clips [B,3,1+4(t-1),f*h,f*w]");
  add_common(d, *dec, "latents .npy", "images .npy (float32, unclamped)");
  d->add_option("--latent-stats", dec->latent_stats, kLatentStatsHelp);
  d->callback([dec] { run(*dec, false); });
}

}  // namespace uvit::cli
