// LaVin-DiT's in-context sampling (DerrickWang005/LaVin-DiT inference.py, docs/lavin_dit.md): the
// answer latent integrated by Euler from noise (t = 0) to data (t = 1) on the official hard-coded
// time table, with classifier-free guidance on every channel whose unconditional pass sees the
// frames [zero frame, query frame].
#pragma once
#include <vector>

#include "uvit/network.hpp"

namespace uvit {

// ST-VAE latent normalisation: z' = (z - kLavinLatentShift) * kLavinLatentScale after encoding,
// the inverse before decoding.
constexpr double kLavinLatentShift = 0.032470703125;
constexpr double kLavinLatentScale = 1.08936170213;
void lavin_normalize_latents(std::vector<float>& z);
void lavin_denormalize_latents(std::vector<float>& z);

// The official time table of `points` points (20, 30 or 40; --timesteps), float32 values as
// torch.tensor holds them. Other counts are a one-line error naming the valid ones.
std::vector<double> lavin_time_table(int points);

// One answer latent [C, S, S] from the noise [C, S, S], under the conditioning frames
// [T_c, C, S, S] (the examples' input/target latents, then the query latent last). cfg_scale is
// the official one: v = v_u + cfg_scale (v_c - v_u) (1: no unconditional pass).
std::vector<float> lavin_sample(Network& net, const std::vector<float>& frames,
                                std::vector<float> noise, int points, double cfg_scale);

}  // namespace uvit
