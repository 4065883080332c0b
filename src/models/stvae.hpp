// LaVin-DiT's ST-VAE (AutoencoderKLSTVAE, a CogVideoX-style 3-D causal VAE; docs/stvae.md) for
// images, i.e. clips of one frame, as LaVin-DiT encodes every image, and for clips of T frames:
// at T = 1 each causal 3-D convolution is a 2-D convolution with its temporal taps summed (folded
// at load); at T > 1 it is one 2-D convolution over the taps' frames stacked on the channels. Both
// run on the 2-D Backend ops of the LDM autoencoder.
#pragma once
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/io.hpp"

namespace uvit {

// The official constructor arguments (lib/model/vae3d.py AutoencoderKLSTVAE; LaVin's defaults)
// plus the latent normalisation of inference.py: the DiT sees (z - shift_factor) * scaling_factor.
struct StvaeConfig {
  int in_channels = 3, out_channels = 3, latent_channels = 16, layers_per_block = 3;
  std::vector<int> block_out_channels = {128, 256, 256, 512};
  int temporal_compression_ratio = 4;  // clips only; no effect on one frame
  double shift_factor = 0.032470703125, scaling_factor = 1.08936170213;

  int levels() const { return int(block_out_channels.size()); }
  int downsample_factor() const { return 1 << (levels() - 1); }
  // The levels whose samplers also halve (double) time: the official compress_time is
  // i < log2(temporal_compression_ratio), and only the first levels() - 1 levels have samplers.
  int time_levels() const {
    int n = 0;
    while ((2 << n) <= temporal_compression_ratio) ++n;
    return std::min(n, levels() - 1);
  }
  // Clips of 1 + k * time_compression() frames encode to 1 + k latent frames, which decode back.
  int time_compression() const { return 1 << time_levels(); }
};

// The built-in "lavin_stvae", or a JSON file {"stvae": {field: value, ...}} with the fields above
// (absent ones keep LaVin's values; unknown ones are errors).
bool is_stvae_config(const std::string& name_or_path);
StvaeConfig stvae_config_from(const std::string& name_or_path);
StvaeConfig parse_stvae_config(const std::string& json_text, const std::string& what);

// Refuses a clip of `frames` frames to encode unless frames = 1 + k * time_compression(): the
// official encoder runs other counts too, but their latents do not decode back to as many frames
// (docs/stvae.md). `what` prefixes the error.
void stvae_check_frames(const StvaeConfig& cfg, int64_t frames, const std::string& what);

// Every parameter of the official state_dict (encoder.conv_in.conv.weight [128, 3, 3, 3, 3], ...)
// with its shape, in state_dict order.
std::vector<std::pair<std::string, std::vector<int64_t>>> stvae_param_shapes(
    const StvaeConfig& cfg);

class Stvae {
 public:
  // `weights`: the official names (stvae.pt's "state_dict"; a flat state_dict too). Tensors
  // outside encoder.* / decoder.* are dropped (skipped() names them); within them loading is
  // strict. Weights of any float type run in fp32 on a backend of its own on `device`. `clips`:
  // also keep every causal convolution's per-tap weights, which clips of T > 1 frames need (they
  // add 3x the folded weights' memory: 0.86 GB at LaVin's size). `use` other than both: the whole
  // file is checked, only that half's weights are read, and the other half's pass is an error.
  Stvae(const StvaeConfig& cfg, NamedArrays weights, const std::string& what,
        const std::string& device = "cpu", const std::string& precision = "", bool clips = false);
  static Stvae load(const std::string& path, const StvaeConfig& cfg = {},
                    const std::string& device = "cpu", const std::string& precision = "",
                    bool clips = false, AutoencoderUse use = AutoencoderUse::both);

  const StvaeConfig& config() const { return cfg_; }
  const std::string& skipped() const { return skipped_; }

  // images [B, in_channels, H, W] in [-1, 1] (H, W multiples of the downsample factor), each a
  // one-frame clip -> moments [B, 2 * latent_channels, H/f, W/f] (mean, then raw logvar); or
  // clips [B, in_channels, T, H, W] with T = 1 + k * time_compression() frames -> moments
  // [B, 2 * latent_channels, 1 + k, H/f, W/f].
  Array encode_moments(const Array& images) const;
  // LaVin latents z [B, latent_channels, h, w] -> images [B, out_channels, f*h, f*w]:
  // decoder(z / scaling_factor + shift_factor), unclamped; or z [B, latent_channels, t, h, w] ->
  // clips [B, out_channels, 1 + (t - 1) * time_compression(), f*h, f*w].
  Array decode(const Array& z) const;

 private:
  struct Tensor;
  struct Pool;
  Stvae(const StvaeConfig& cfg, TensorReader& file, const std::string& what,
        std::shared_ptr<Backend> be, bool clips, AutoencoderUse use);
  const float* p(const std::string& name) const;
  void conv(const std::string& name, const Tensor& x, Tensor& y, int stride, int pad_lt,
            int pad_rb) const;
  void conv_frames(const std::string& name, const Tensor& x, Tensor& y, int stride, int pad_lt,
                   int pad_rb) const;
  Tensor select_frames(const Tensor& x, const std::vector<int>& src) const;
  Tensor pool_time(const Tensor& x) const;
  Tensor upload(const Array& a, bool latents) const;
  void norm(const std::string& name, const Tensor& x, Tensor& y, const std::vector<Tensor>* zs,
            bool swish) const;
  void resblock(const std::string& name, Tensor& x, const std::vector<Tensor>* zs) const;
  Tensor run_encoder(Tensor x) const;
  Tensor run_decoder(Tensor z) const;
  Array download(const Tensor& t, bool clip) const;

  StvaeConfig cfg_;
  bool clips_ = false;
  AutoencoderUse use_ = AutoencoderUse::both;
  std::string skipped_;
  std::shared_ptr<Backend> be_;
  std::shared_ptr<float> params_;  // every (folded) weight, in be_'s memory
  std::shared_ptr<Pool> pool_;
  std::map<std::string, const float*> ptr_;
  // folded (2-D) shapes; with clips also "<conv>.time.weight" [O, kt * I, kh, kw] (stacked taps)
  std::map<std::string, std::vector<int64_t>> shapes_;
};

// Folds a causal 3-D convolution weight [O, I, kt, kh, kw] for a one-frame clip: the input's only
// frame is replicated kt - 1 times in front (docs/stvae.md), so every temporal tap sees it and the
// weight is sum_t w[:, :, t] [O, I, kh, kw], summed in double and rounded once.
std::vector<float> fold_causal_conv3d(const Array& w);

// The same weight for a clip: its taps stacked on the input channels, [O, kt * I, kh, kw] with
// out[o, j * I + i] = w[o, i, j], so that output frame t is one 2-D convolution of the input frames
// max(t - kt + 1 + j, 0), j = 0..kt-1, concatenated on the channels.
std::vector<float> stack_causal_conv3d(const Array& w);

}  // namespace uvit
