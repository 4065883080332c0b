// LaVin-DiT's ST-VAE (AutoencoderKLSTVAE, a CogVideoX-style 3-D causal VAE; docs/stvae.md) for
// images, i.e. clips of one frame, as LaVin-DiT encodes every image: at T = 1 each causal 3-D
// convolution is a 2-D convolution with its temporal taps summed (folded at load), so the passes
// run on the 2-D Backend ops of the LDM autoencoder.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"

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
};

// The built-in "lavin_stvae", or a JSON file {"stvae": {field: value, ...}} with the fields above
// (absent ones keep LaVin's values; unknown ones are errors).
bool is_stvae_config(const std::string& name_or_path);
StvaeConfig stvae_config_from(const std::string& name_or_path);
StvaeConfig parse_stvae_config(const std::string& json_text, const std::string& what);

// Every parameter of the official state_dict (encoder.conv_in.conv.weight [128, 3, 3, 3, 3], ...)
// with its shape, in state_dict order.
std::vector<std::pair<std::string, std::vector<int64_t>>> stvae_param_shapes(
    const StvaeConfig& cfg);

class Stvae {
 public:
  // `weights`: the official names (stvae.pt's "state_dict"; a flat state_dict too). Tensors
  // outside encoder.* / decoder.* are dropped (skipped() names them); within them loading is
  // strict. Weights of any float type run in fp32 on a backend of its own on `device`.
  Stvae(const StvaeConfig& cfg, NamedArrays weights, const std::string& what,
        const std::string& device = "cpu", const std::string& precision = "");
  static Stvae load(const std::string& path, const StvaeConfig& cfg = {},
                    const std::string& device = "cpu", const std::string& precision = "");

  const StvaeConfig& config() const { return cfg_; }
  const std::string& skipped() const { return skipped_; }

  // images [B, in_channels, H, W] in [-1, 1] (H, W multiples of the downsample factor), each a
  // one-frame clip -> moments [B, 2 * latent_channels, H/f, W/f] (mean, then raw logvar).
  Array encode_moments(const Array& images) const;
  // LaVin latents z [B, latent_channels, h, w] -> images [B, out_channels, f*h, f*w]:
  // decoder(z / scaling_factor + shift_factor), unclamped.
  Array decode(const Array& z) const;

 private:
  struct Tensor;
  struct Pool;
  Stvae(const StvaeConfig& cfg, NamedArrays weights, const std::string& what,
        std::shared_ptr<Backend> be);
  const float* p(const std::string& name) const;
  void conv(const std::string& name, const Tensor& x, Tensor& y, int stride, int pad_lt,
            int pad_rb) const;
  void norm(const std::string& name, const Tensor& x, Tensor& y, const std::vector<Tensor>* zs,
            bool swish) const;
  void resblock(const std::string& name, Tensor& x, const std::vector<Tensor>* zs) const;
  Tensor run_encoder(Tensor x) const;
  Tensor run_decoder(Tensor z) const;
  Array download(const Tensor& t) const;

  StvaeConfig cfg_;
  std::string skipped_;
  std::shared_ptr<Backend> be_;
  std::shared_ptr<float> params_;  // every (folded) weight, in be_'s memory
  std::shared_ptr<Pool> pool_;
  std::map<std::string, const float*> ptr_;
  std::map<std::string, std::vector<int64_t>> shapes_;  // folded (2-D) shapes
};

// Folds a causal 3-D convolution weight [O, I, kt, kh, kw] for a one-frame clip: the input's only
// frame is replicated kt - 1 times in front (docs/stvae.md), so every temporal tap sees it and the
// weight is sum_t w[:, :, t] [O, I, kh, kw], summed in double and rounded once.
std::vector<float> fold_causal_conv3d(const Array& w);

}  // namespace uvit
