// CLIP's image tower (HF CLIPVisionModel + visual_projection, the ViT-L/14 of
// openai/clip-vit-large-patch14 by default), CLIPImageProcessor's preprocessing, and CLIPScore
// (docs/clip_score.md).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/image.hpp"

namespace uvit {

class TensorReader;

// Hugging Face CLIPVisionConfig fields (+ CLIPConfig's projection_dim); defaults: ViT-L/14.
struct ClipVisionConfig {
  int hidden_size = 1024;
  int intermediate_size = 4096;
  int num_hidden_layers = 24;
  int num_attention_heads = 16;
  int num_channels = 3;
  int image_size = 224;
  int patch_size = 14;
  int projection_dim = 768;
  std::string hidden_act = "quick_gelu";  // or "gelu"
  double layer_norm_eps = 1e-5;

  int grid() const { return image_size / patch_size; }
  int positions() const { return grid() * grid() + 1; }  // patches + the class token
  // A CLIPConfig's "vision_config" (and top-level projection_dim) or a CLIPVisionConfig.
  static ClipVisionConfig from_json(const nlohmann::json& j, const std::string& what = "config");
  static ClipVisionConfig load(const std::string& path);  // "": the defaults (ViT-L/14)
  void validate(const std::string& what) const;
};

// Names and shapes of every tensor the image tower reads, in the HF layout
// ("vision_model.embeddings.class_embedding", ..., "visual_projection.weight").
std::vector<std::pair<std::string, std::vector<int64_t>>> clip_vision_param_shapes(
    const ClipVisionConfig& cfg);

class ClipVisionModel {
 public:
  ClipVisionModel(const ClipVisionConfig& cfg, Backend& be);
  ~ClipVisionModel();
  ClipVisionModel(const ClipVisionModel&) = delete;
  ClipVisionModel& operator=(const ClipVisionModel&) = delete;

  const ClipVisionConfig& config() const { return cfg_; }
  // HF keys "vision_model.*" and "visual_projection.weight", after any wrapper prefix; other
  // keys (the text tower, logit_scale, position_ids) are ignored. Any float dtype.
  void load(const NamedArrays& sd, const std::string& what);
  void load_file(const std::string& path);              // .safetensors or torch .bin/.pth
  void load(TensorReader& r, const std::string& what);  // both read through it
  // The same key and shape checks as load() on names and shapes only (nothing is allocated):
  // a ViT-L/14 checkpoint's key set can be validated without its 1.2 GB of weights.
  static void check_keys(const ClipVisionConfig& cfg,
                         const std::vector<std::pair<std::string, std::vector<int64_t>>>& keys,
                         const std::string& what);
  size_t num_params() const { return total_; }
  // The 64-bit hash of the weights loaded (src/dist/weights_hash.hpp).
  uint64_t weights_hash() const;

  // pixels [B, C, S, S] (host, preprocessed as clip_preprocess) -> image embeddings
  // [B, projection_dim] (HF CLIPModel.get_image_features) on the host; with `pooled`, also the
  // post-LayerNorm class token [B, hidden] (CLIPVisionModel's pooler_output).
  std::vector<float> forward(const float* pixels, int B, std::vector<float>* pooled = nullptr);

 private:
  struct Weights;
  ClipVisionConfig cfg_;
  Backend& be_;
  DeviceBuffer params_;
  size_t total_ = 0;
  std::unique_ptr<Weights> w_;
};

// CLIPImageProcessor (openai/clip-vit-large-patch14's preprocessor_config): gray -> RGB,
// PIL BICUBIC resize of the shorter side to `size` (the longer side int(size * long / short),
// antialiased when shrinking, uint8 result), centre crop size x size (top = (h - size) / 2,
// floored), x / 255, (x - mean) / std per channel -> [3, size, size] float32 appended to `out`.
void clip_preprocess(const Image& im, int size, std::vector<float>& out);
constexpr float kClipMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kClipStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

// CLIPScore of each pair: 100 * max(cos(image_i, text_i), 0) (torchmetrics' scale; Hessel et
// al. use 2.5 instead of 100). Embeddings [n, d] each.
std::vector<double> clip_scores(const float* image_emb, const float* text_emb, long n, int d);

// Both towers and the tokenizer: images and prompts -> per-pair CLIPScore.
class ClipScorer {
 public:
  // `weights`: a CLIPModel checkpoint (both towers + projections); `config`: an HF CLIPConfig JSON
  // ("" = ViT-L/14); `vocab`: as clip_vocab_path.
  ClipScorer(const std::string& weights, const std::string& config, const std::string& vocab,
             Backend& be);
  // Image embeddings of uint8 HWC images (any sizes; C = 1 or 3), `batch` at a time.
  std::vector<float> image_embeddings(const std::vector<Image>& images, int batch = 16);
  // Text embeddings of prompts (one each), `batch` prompts per forward pass; with `contexts`,
  // also the text tower's last hidden states [n, 77, hidden] (the text-to-image conditioning,
  // as clip_encode_prompts) are appended there.
  std::vector<float> text_embeddings(const std::vector<std::string>& prompts, int batch = 64,
                                     std::vector<float>* contexts = nullptr);
  int dim() const { return vision_.config().projection_dim; }
  ClipTextModel& text() { return text_; }
  const ClipTokenizer& tokenizer() const { return tok_; }
  // Both towers' weights (src/dist/weights_hash.hpp): the ranks of a job compare it.
  uint64_t weights_hash() const;

 private:
  ClipTokenizer tok_;
  ClipVisionModel vision_;
  ClipTextModel text_;
};

}  // namespace uvit
