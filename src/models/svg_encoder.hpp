// SVG's encoder (shiml20/SVG DinoDecoder.encode): frozen DINOv3 patch tokens (B, 384, L) and a
// residual torchvision ViT with a 2-layer head (B, 8, L), rescaled by match_distribution to the
// DINO features' statistics, concatenated to (B, 392, S/16, S/16). Inference only, fp32, over the
// Backend. Facts, and how the batch-dependent statistics are handled: docs/svg_encoder.md.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "models/dinov3.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/params.hpp"

namespace uvit {

// create_small_vit_s: torchvision VisionTransformer arguments and the head's output width.
struct SvgResidualConfig {
  int image_size = 256, patch_size = 16, num_layers = 6, num_heads = 8, hidden_dim = 384,
      mlp_dim = 1536, output_dim = 8;
  int grid() const { return image_size / patch_size; }
  void validate(const std::string& what) const;
};

struct SvgEncoderConfig {
  Dinov3Config dinov3;
  SvgResidualConfig residual;
  bool use_outnorm = true;  // extra_vit_config.use_outnorm: match_distribution on
  int channels() const { return dinov3.embed_dim + residual.output_dim; }
  // {"dinov3": {...}, "residual": {...}, "use_outnorm": bool}; absent fields keep the official
  // values (dinov3_vits16plus, the example config's residual branch).
  static SvgEncoderConfig from_json(const nlohmann::json& j, const std::string& what);
  static SvgEncoderConfig load(const std::string& path);  // "" -> the official config
  void validate(const std::string& what) const;
};

// The residual branch's tensors as the SVG autoencoder checkpoint names them ("extra_vit." +
// torchvision's VisionTransformer names), in state_dict order.
ParamTable svg_residual_param_table(const SvgResidualConfig& cfg);

class SvgEncoder {
 public:
  SvgEncoder(const SvgEncoderConfig& cfg, Backend& be);
  ~SvgEncoder();
  const SvgEncoderConfig& config() const { return cfg_; }
  // `svg`: the SVG autoencoder checkpoint's state_dict (its "extra_vit.*" tensors are read, the
  // rest is ignored). `dinov3`: the official DINOv3 state_dict, or nullptr to take the DINOv3
  // weights from the checkpoint's "encoder.*" tensors (the frozen copy DinoDecoder saves).
  void load(const NamedArrays& svg, const std::string& svg_what, const NamedArrays* dinov3,
            const std::string& dinov3_what);
  // The same from readers (each tensor read straight into its place), and from files (`dinov3`
  // "": the checkpoint's "encoder.*").
  void load(TensorReader& svg, TensorReader* dinov3, const std::string& dinov3_what);
  void load_files(const std::string& svg, const std::string& dinov3);
  // x [B, 3, S, S] in [-1, 1] (S = residual.image_size) -> [B, C, S/16, S/16]; match_distribution's
  // statistics are taken over consecutive groups of `group` images (the official code: the whole
  // batch, group = B; 1 makes each image's features independent of its batch).
  Array encode(const Array& x, int group) const;

 private:
  struct Impl;
  SvgEncoderConfig cfg_;
  Backend& be_;
  std::unique_ptr<Impl> impl_;
};

// DinoDecoder's match_distribution on host features f [g, Ch + Cv, L]: channels [0, Ch) are the
// DINO features h, the rest v is rescaled in place to (v - mean_v) / (std_v + 1e-6) * std_h +
// mean_h, where mean_* is the global mean and std_* the mean over channels of each channel's
// unbiased std over (g, L). Accumulated in double.
void match_distribution(float* f, int Ch, int Cv, int g, int L);

}  // namespace uvit
