// Per-channel latent statistics (LightningDiT's latents_stats.pt): reading, writing, computing them
// over extracted moments as the official script does, and normalising moments by them.
#include <algorithm>
#include <cmath>

#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/rng.hpp"

namespace uvit {

namespace {

// Philox stream of the posterior samples behind the statistics (any fixed value; the official
// script draws from torch's unseeded global generator).
constexpr uint64_t kStatsStream = 0x57a75;

std::vector<float> stats_vector(const NamedArrays& all, const char* key, int channels,
                                const std::string& path) {
  std::string found;
  for (const auto& [name, a] : all) {
    if (name == key) {
      const auto& s = a.shape;
      const int64_t c = s.size() == 4 ? s[1] : s.size() == 1 ? s[0] : -1;
      UVIT_CHECK(c > 0 && (s.size() == 1 || (s[0] == 1 && s[2] == 1 && s[3] == 1)) &&
                     (channels <= 0 || c == channels),
                 path, ": latent stats '", key, "' has shape ", shape_str(s), ", expected [1, ",
                 channels > 0 ? std::to_string(channels) : std::string("C"), ", 1, 1]");
      return a.to_f32();
    }
    if (name == std::string("dinov3_sp_") + key) {
      // SVG's dinov3_sp_stats.pt: per-token statistics [1, 1, C'] of the DINOv3 (+ residual)
      // features, of which the official scripts take [:, :, :z_channels] (docs/svg.md).
      const auto& s = a.shape;
      UVIT_CHECK(s.size() == 3 && s[0] == 1 && s[1] == 1 && s[2] > 0 && s[2] >= channels, path,
                 ": SVG feature stats '", name, "' has shape ", shape_str(s),
                 ", expected [1, 1, C]",
                 channels > 0 ? cat(" with C >= ", channels) : std::string());
      std::vector<float> v = a.to_f32();
      if (channels > 0) v.resize(size_t(channels));
      return v;
    }
    found += (found.empty() ? "" : ", ") + name;
  }
  fail(path, ": latent stats need tensors 'mean' and 'std' [1, C, 1, 1], found ",
       found.empty() ? std::string("none") : found,
       " (SVG's file: 'dinov3_sp_mean' and 'dinov3_sp_std' [1, 1, C])");
}

}  // namespace

LatentStats load_latent_stats(const std::string& path, int channels) {
  const NamedArrays all = load_weights(path);
  LatentStats s;
  s.mean = stats_vector(all, "mean", channels, path);
  s.std = stats_vector(all, "std", channels, path);
  UVIT_CHECK(s.mean.size() == s.std.size(), path, ": latent stats 'mean' has ", s.mean.size(),
             " channels, 'std' ", s.std.size());
  for (size_t c = 0; c < s.std.size(); ++c)
    UVIT_CHECK(std::isfinite(s.mean[c]) && std::isfinite(s.std[c]) && s.std[c] > 0, path,
               ": latent stats channel ", c, " has mean ", s.mean[c], ", std ", s.std[c],
               " (std must be positive and finite)");
  return s;
}

void save_latent_stats(const std::string& path, const LatentStats& s) {
  const int64_t c = s.channels();
  save_safetensors(path, {{"mean", Array::from_f32({1, c, 1, 1}, s.mean.data())},
                          {"std", Array::from_f32({1, c, 1, 1}, s.std.data())}});
}

void normalize_moments(Array& moments, const LatentStats& st) {
  const auto& sh = moments.shape;
  const int64_t c = st.channels();
  UVIT_CHECK(moments.dtype == DType::F32 && sh.size() == 4 && sh[1] == 2 * c, "moments ",
             shape_str(sh), " do not match latent stats of ", c, " channels (expected [B, ", 2 * c,
             ", h, w])");
  const int64_t plane = sh[2] * sh[3];
  float* m = moments.as<float>();
  for (int64_t b = 0; b < sh[0]; ++b)
    for (int64_t k = 0; k < c; ++k) {
      float* mean = m + (b * 2 * c + k) * plane;
      float* logvar = mean + c * plane;
      const float inv = 1.f / st.std[size_t(k)], shift = -2.f * std::log(st.std[size_t(k)]);
      for (int64_t j = 0; j < plane; ++j) {
        mean[j] = (mean[j] - st.mean[size_t(k)]) * inv;
        logvar[j] += shift;
      }
    }
}

void sample_posterior(const float* m, int64_t c, int64_t plane, float scale, const Philox& eps,
                      uint64_t base, float* out) {
  const int64_t n = c * plane;
  for (int64_t j = 0; j < n; ++j) {
    const float logvar = std::min(std::max(m[n + j], -30.f), 20.f);
    out[j] = scale * (m[j] + std::exp(0.5f * logvar) * eps.normal(base + uint64_t(j)));
  }
}

void LatentStatsAccumulator::add(const Array& moments, uint64_t latent_index) {
  const auto& sh = moments.shape;
  UVIT_CHECK(sh.size() == 3 && sh[0] > 0 && sh[0] % 2 == 0,
             "latent stats: moments must be [2C, h, w], got ", shape_str(sh));
  const size_t c = size_t(sh[0] / 2), plane = size_t(sh[1] * sh[2]);
  if (mean_.empty()) n_.assign(c, 0), mean_.assign(c, 0), m2_.assign(c, 0);
  UVIT_CHECK(mean_.size() == c, "latent stats: moments of ", 2 * c, " channels after ",
             2 * mean_.size());
  const std::vector<float> m = moments.to_f32();
  const Philox eps(seed_, kStatsStream);
  const uint64_t base = latent_index * uint64_t(c * plane);
  std::vector<float> zs(c * plane);
  sample_posterior(m.data(), int64_t(c), int64_t(plane), 1.f, eps, base, zs.data());
  for (size_t k = 0; k < c; ++k) {
    // This latent's channel statistics, then Chan et al.'s merge into the running ones.
    double s = 0, s2 = 0;
    const float* z = zs.data() + k * plane;
    for (size_t j = 0; j < plane; ++j) s += double(z[j]);
    const double mu = s / double(plane);
    for (size_t j = 0; j < plane; ++j) s2 += (double(z[j]) - mu) * (double(z[j]) - mu);
    const double n = n_[k] + double(plane), d = mu - mean_[k];
    m2_[k] += s2 + d * d * n_[k] * double(plane) / n;
    mean_[k] += d * double(plane) / n;
    n_[k] = n;
  }
  ++latents_;
}

LatentStats LatentStatsAccumulator::finish() const {
  UVIT_CHECK(!mean_.empty() && n_[0] > 1, "latent stats: need at least two latent values");
  LatentStats s;
  for (size_t k = 0; k < mean_.size(); ++k) {
    s.mean.push_back(float(mean_[k]));
    s.std.push_back(float(std::sqrt(m2_[k] / (n_[k] - 1))));  // torch.std: unbiased
  }
  return s;
}

}  // namespace uvit
