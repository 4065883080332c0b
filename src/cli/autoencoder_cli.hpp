// What the commands that load an autoencoder share: the help of --autoencoder-config and
// --latent-stats, and the note about checkpoint tensors that loading skipped.
#pragma once
#include <cstdio>
#include <string>

#include "uvit/autoencoder.hpp"

namespace uvit::cli {

inline constexpr const char* kAutoencoderConfigHelp =
    "autoencoder architecture: sd_kl_f8 (default) or vavae_f16d32 (LightningDiT's VA-VAE), or a "
    "JSON {\"ddconfig\": {...}, \"embed_dim\", \"scale_factor\"}; `autoencoder encode|decode` "
    "also take lavin_stvae (LaVin-DiT's ST-VAE) or a JSON {\"stvae\": {...}}";
inline constexpr const char* kLatentStatsHelp =
    "per-channel latent mean/std (LightningDiT's latents_stats.pt, or .safetensors with 'mean' and "
    "'std' [1,C,1,1])";

// One line on stderr when the checkpoint held tensors outside the autoencoder (a VA-VAE's loss.*,
// foundation_model.*, linear_proj.*).
// (An Autoencoder or an Stvae.)
template <class Model>
void print_skipped(const Model& ae, const std::string& weights, bool quiet) {
  if (!quiet && !ae.skipped().empty())
    std::fprintf(stderr, "%s: %s\n", weights.c_str(), ae.skipped().c_str());
}

}  // namespace uvit::cli
