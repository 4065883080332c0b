// The LDM KL autoencoder on the CPU or a GPU: Stable Diffusion's kl-f8 (SPEC 13) and
// LightningDiT's VA-VAE f16d32 (docs/autoencoder.md). Encodes images to posterior moments, decodes
// latents to images; loads the official key layout (or safetensors, or diffusers names).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/rng.hpp"

namespace uvit {

class TensorReader;

// The official ddconfig (field names as in libs/autoencoder.py) plus embed_dim and scale_factor.
// The defaults are the SD kl-f8 configuration used by every latent U-ViT model.
struct AutoencoderConfig {
  bool double_z = true;
  int z_channels = 4, resolution = 256, in_channels = 3, out_ch = 3, ch = 128;
  std::vector<int> ch_mult = {1, 2, 4, 4};
  int num_res_blocks = 2;
  std::vector<int> attn_resolutions = {};
  double dropout = 0.0;  // inference ignores it; accepted for compatibility
  int embed_dim = 4;
  double scale_factor = 0.18215;
  // SVG's DinoDecoder (docs/svg.md): the LDM Decoder alone, fed the features directly: no encoder,
  // quant_conv or post_quant_conv (embed_dim = z_channels); decode only.
  bool decoder_only = false;

  int downsample_factor() const { return 1 << (int(ch_mult.size()) - 1); }
};

// {"ddconfig": {...}, "embed_dim": 4, "scale_factor": 0.18215, "decoder_only": false}; absent
// fields keep the SD defaults, unknown fields are errors. `what` names the source in error
// messages.
AutoencoderConfig parse_autoencoder_config(const std::string& json_text, const std::string& what);
AutoencoderConfig load_autoencoder_config(const std::string& path);

// Built-in configs: "sd_kl_f8" (the default, SPEC 13), "vavae_f16d32" (LightningDiT's VA-VAE:
// ch_mult (1,1,2,2,4), attention at 16x16, z_channels = embed_dim = 32, scale_factor 1) and
// "svg_decoder_z392" (SVG's decoder: the VA-VAE geometry with z_channels 392, decoder_only).
std::vector<std::string> autoencoder_config_names();
// A built-in name, else a JSON file; "" = sd_kl_f8. An unknown name that is not a file is an
// error listing the names.
AutoencoderConfig autoencoder_config_from(const std::string& name_or_path);

// Drops the tensors outside the autoencoder's four modules (encoder.*, decoder.*, quant_conv.*,
// post_quant_conv.*), as a VA-VAE checkpoint also holds loss.*, foundation_model.* and
// linear_proj.*. Returns "" when nothing was dropped, else one line naming the count and the
// prefixes, e.g. "skipped 3 tensors outside the autoencoder: foundation_model.* (1), loss.* (2)".
// With `decoder_only` only decoder.* is kept (SVG's checkpoint also holds the DINOv3 encoder.*).
std::string keep_autoencoder_tensors(NamedArrays& weights, bool decoder_only = false);

// Per-channel latent statistics (LightningDiT's latents_stats.pt: {"mean", "std"}, each
// [1, C, 1, 1]): the diffusion model sees (z - mean) / std * scale_factor.
struct LatentStats {
  std::vector<float> mean, std;
  int channels() const { return int(mean.size()); }
};
// What the decoder is fed for value z of latent channel c: z * std / scale_factor + mean
// (LightningDiT inference.py); without stats (empty), mean 0 and std 1. Autoencoder::decode and
// the live preview's cheap map (src/pipeline/preview.cpp) both un-normalise through it.
inline float latent_decoder_input(const LatentStats& s, double scale_factor, int c, float z) {
  return s.mean.empty() ? z / float(scale_factor)
                        : z * s.std[size_t(c)] / float(scale_factor) + s.mean[size_t(c)];
}
// .pt (torch.save of the dict) or .safetensors with tensors "mean" and "std" of shape [1, C, 1, 1]
// or [C]; `channels` > 0 is checked. SVG's dinov3_sp_stats.pt ("dinov3_sp_mean", "dinov3_sp_std"
// [1, 1, C']) is read too, sliced to the first `channels`. Every std must be positive and finite.
LatentStats load_latent_stats(const std::string& path, int channels = 0);
// .safetensors, "mean" and "std" as float32 [1, C, 1, 1] (atomic).
void save_latent_stats(const std::string& path, const LatentStats& stats);
// Moments [B, 2C, h, w] (mean, logvar) of z become those of (z - m) / s: mean' = (mean - m) / s,
// logvar' = logvar - 2 ln s, so a posterior sample of the result is the normalised sample.
void normalize_moments(Array& moments, const LatentStats& stats);

// One posterior sample of moments [2C, plane] (C means, then C log-variances): out[j] = scale *
// (mean_j + exp(0.5 * clamp(logvar_j, -30, 20)) * eps_j) in float32, eps_j = eps.normal(base + j),
// j < C * plane (the official DiagonalGaussianDistribution.sample() times the scale factor).
void sample_posterior(const float* moments, int64_t channels, int64_t plane, float scale,
                      const Philox& eps, uint64_t base, float* out);

// The official statistics (LightningDiT datasets/img_latent_dataset.py): one posterior sample
// z = mean + exp(0.5 * clamp(logvar, -30, 20)) * eps per latent, then the per-channel mean and
// the unbiased std over all latents and positions. Add moments [2C, h, w] one at a time.
class LatentStatsAccumulator {
 public:
  // eps of latent k comes from a Philox stream of `seed`, so a result does not depend on order.
  explicit LatentStatsAccumulator(uint64_t seed) : seed_(seed) {}
  void add(const Array& moments, uint64_t latent_index);
  int64_t count() const { return latents_; }
  LatentStats finish() const;

 private:
  uint64_t seed_;
  int64_t latents_ = 0;
  std::vector<double> n_, mean_, m2_;  // per channel: count, mean, sum of squared deviations
};

// Every parameter of the official state_dict with its shape, in state_dict order (248 for SD).
std::vector<std::pair<std::string, std::vector<int64_t>>> autoencoder_param_shapes(
    const AutoencoderConfig& cfg);

// A diffusers AutoencoderKL state_dict (stabilityai/sd-vae-ft-ema, sd-vae-ft-mse:
// encoder.down_blocks.i.resnets.j..., mid_block.attentions.0.{to_q|query}..., decoder.up_blocks in
// reverse level order) is renamed in place to the official names above, its attention Linear
// weights [C, C] reshaped to 1x1 convs [C, C, 1, 1]. Returns whether any name was renamed (false,
// nothing changed, for the official layout). Names without a counterpart are left as they are,
// for the strict check to report. `levels` is the config's len(ch_mult).
bool autoencoder_from_diffusers(NamedArrays& weights, int levels);

// Strict check of a state_dict against the config: every expected name with its shape and a float
// dtype, no other or repeated name; a one-line error naming `what` and the first offender.
void check_autoencoder_weights(const NamedArrays& weights, const AutoencoderConfig& cfg,
                               const std::string& what);
// The same check against any expected (name, shape) list; `builtin` lists the built-in configs
// in the "missing" error.
void check_weight_shapes(const NamedArrays& weights,
                         const std::vector<std::pair<std::string, std::vector<int64_t>>>& expected,
                         const std::string& what, const std::string& builtin);

// Which half a loaded autoencoder runs: the other half's weights are checked but never read, so
// a decode-only load holds the decoder's (SD kl-f8: 198 of 335 MB; docs/memory.md).
enum class AutoencoderUse { both, encode, decode };

class Autoencoder {
 public:
  // Strict (check_autoencoder_weights), after renaming a diffusers layout
  // (autoencoder_from_diffusers). Weights of any float type are uploaded as fp32 to a backend of
  // its own on `device` ("cpu" or "cuda") with `precision` (encoder_precision: "fp32", or "tf32" on
  // CUDA; "" = the device's default, tf32 on CUDA).
  Autoencoder(const AutoencoderConfig& cfg, NamedArrays weights, const std::string& what,
              const std::string& device = "cpu", const std::string& precision = "");
  // `use` other than both: encode_moments or decode (the one not loaded) is an error.
  static Autoencoder load(const std::string& weights_path, const AutoencoderConfig& cfg = {},
                          const std::string& device = "cpu", const std::string& precision = "",
                          AutoencoderUse use = AutoencoderUse::both);

  const AutoencoderConfig& config() const { return cfg_; }
  // What loading dropped (keep_autoencoder_tensors), "" if nothing; the CLI prints it.
  const std::string& skipped() const { return skipped_; }
  // decode() then un-normalises: z = z_norm * std / scale_factor + mean (LightningDiT
  // inference.py); without stats, mean 0 and std 1. Channels must be embed_dim.
  void set_latent_stats(const LatentStats& stats);
  const LatentStats& latent_stats() const { return stats_; }  // empty: none
  // What decode() feeds the decoder for value z of latent channel c: z * std / scale_factor + mean.
  float decoder_input(int c, float z) const {
    return latent_decoder_input(stats_, cfg_.scale_factor, c, z);
  }

  // images [B, in_channels, H, W] in [-1, 1] (H, W multiples of the downsample factor) ->
  // moments [B, 2*embed_dim, H/f, W/f]: quant_conv(encoder(x)) (channels: mean, then logvar).
  Array encode_moments(const Array& images) const;
  // z [B, embed_dim, h, w] -> images [B, out_ch, h*f, w*f]:
  // decoder(post_quant_conv(z * std / scale + mean)) (mean 0, std 1 without latent stats).
  Array decode(const Array& z) const;
  // The 64-bit hash of the weights loaded (src/dist/weights_hash.hpp): the ranks of a job compare
  // it.
  uint64_t weights_hash() const;

 private:
  struct Tensor;
  // What the public constructor and load() do: r's tensors read into place (src/models).
  Autoencoder(const AutoencoderConfig& cfg, TensorReader& r, const std::string& what,
              std::shared_ptr<Backend> be, AutoencoderUse use);
  const float* p(const std::string& name) const;
  void conv(const std::string& name, const Tensor& x, Tensor& y, int k, int stride, int pad_lt,
            int pad_rb) const;
  void group_norm_swish(const std::string& name, const Tensor& x, Tensor& y, bool swish) const;
  void resblock(const std::string& name, Tensor& x) const;
  void attnblock(const std::string& name, Tensor& x) const;
  Tensor run_encoder(Tensor x) const;
  Tensor run_decoder(Tensor z) const;

  Array download(const Tensor& t) const;
  AutoencoderConfig cfg_;
  std::string skipped_;
  LatentStats stats_;  // empty: mean 0, std 1
  AutoencoderUse use_ = AutoencoderUse::both;
  std::shared_ptr<Backend> be_;
  std::shared_ptr<float> params_;  // every weight, in be_'s memory (freed through be_)
  struct Pool;
  std::shared_ptr<Pool> pool_;  // activation buffers, kept from one pass to the next
  std::map<std::string, const float*> ptr_;
  std::map<std::string, std::vector<int64_t>> shapes_;
};

// Applies fn to slices of at most `chunk` items along dim 0 and concatenates the results, so memory
// stays bounded (the official eval decodes in chunks of 50). progress(done, total) after each.
Array map_batches(const Array& in, int chunk, const std::function<Array(const Array&)>& fn,
                  const std::function<void(int64_t, int64_t)>& progress = {});

// Latent sampling (SPEC 12.5): n latents [C, h, w] -> n images [out_ch, h*f, w*f] (float, not
// clamped), decoded `chunk` at a time; progress(done, n) after each chunk.
std::vector<float> decode_latents(const Autoencoder& ae, const std::vector<float>& z, int n, int c,
                                  int h, int w, int chunk,
                                  const std::function<void(int64_t, int64_t)>& progress = {});

// The autoencoder that decodes a latent preset's samples: weights `path`; architecture from
// `config` (a name or JSON, autoencoder_config_from), else the preset's "autoencoder.config",
// else Stable Diffusion kl-f8; scale_factor from the preset's "autoencoder" section (the latents
// were scaled by it, SPEC 12.5), which wins over the config's; latent statistics from
// `latent_stats`, else the preset's "autoencoder.latent_stats" (none: mean 0, std 1). The
// config's embed_dim must be the preset's latent channels (z_shape[0]). It decodes only
// (AutoencoderUse::decode: the encoder's weights are not read).
// load_preset_autoencoder's architecture and statistics without the weights (the live preview's
// map needs no more): preset_latent_stats is empty when neither names a file.
AutoencoderConfig preset_autoencoder_config(const nlohmann::json& preset,
                                            const std::string& config);
LatentStats preset_latent_stats(const nlohmann::json& preset, const std::string& latent_stats,
                                int channels);
Autoencoder load_preset_autoencoder(const nlohmann::json& preset, const std::string& path,
                                    const std::string& config, const std::string& latent_stats = "",
                                    const std::string& device = "cpu",
                                    const std::string& precision = "");

// One official ImageNet feature file ({idx}.npy): the bytes np.save writes for the object array
// (moments float32 [2 * embed_dim, h, w], numpy.int64 label); read back by the imagenet*_features
// dataset.
std::vector<uint8_t> encode_feature_record(const Array& moments, int64_t label);

}  // namespace uvit
