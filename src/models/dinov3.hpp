// DINOv3 ViT (facebookresearch/dinov3 DinoVisionTransformer), forward only, fp32, over the
// Backend: patch conv -> [cls, storage tokens, patches] -> pre-norm blocks (LayerNorm, attention
// with axial RoPE on the patch tokens and a masked k bias, LayerScale, SwiGLU) -> LayerNorm ->
// x_norm_patchtokens. Defaults: dinov3_vits16plus. Facts: docs/svg_encoder.md.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "uvit/backend.hpp"
#include "uvit/params.hpp"

namespace uvit {

struct Dinov3Config {
  int patch_size = 16, embed_dim = 384, depth = 12, num_heads = 6, n_storage_tokens = 4;
  double ffn_ratio = 6.0, pos_embed_rope_base = 100.0;
  // SwiGLUFFN's hidden width: d = int(int(embed_dim * ffn_ratio) * 2 / 3), rounded up to 8.
  int swiglu_hidden() const;
  int head_dim() const { return embed_dim / num_heads; }
  // Official constructor names; absent fields keep the vits16plus values.
  static Dinov3Config from_json(const nlohmann::json& j, const std::string& what);
  void validate(const std::string& what) const;
};

// The official state_dict (names, shapes, order), buffers rope_embed.periods and
// blocks.i.attn.qkv.bias_mask included.
ParamTable dinov3_param_table(const Dinov3Config& cfg);

class Dinov3 {
 public:
  Dinov3(const Dinov3Config& cfg, Backend& be);
  ~Dinov3();
  const Dinov3Config& config() const { return cfg_; }
  // A strict state_dict by official names (missing, extra or misshapen tensors are errors), its
  // directory checked first and each tensor then read into its place; `what` names it in errors.
  void load(TensorReader& r, const std::string& what);
  void load(const NamedArrays& sd, const std::string& what);
  void load_file(const std::string& path);
  // img [B, 3, S, S] (backend memory, ImageNet-normalised) -> out [B, (S/p)^2, D] (backend
  // memory): forward_features(img)["x_norm_patchtokens"].
  void patch_tokens(const float* img, int B, int S, float* out);
  // The same from and to host memory.
  std::vector<float> patch_tokens(const std::vector<float>& pixels, int B, int S);

 private:
  struct Impl;
  Dinov3Config cfg_;
  Backend& be_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace uvit
