// CLIP ViT-L/14 text side (SPEC 14): the BPE tokenizer and the text transformer whose last hidden
// state conditions the text-to-image U-ViT, as Hugging Face's CLIPTokenizer / CLIPTextModel compute
// them inside the official FrozenCLIPEmbedder.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"

namespace uvit {

class TensorReader;

// ---- tokenizer ---------------------------------------------------------------------------------

// Whitespace runs (str.isspace) -> one space, stripped, then Python's str.lower(). (ftfy.fix_text
// is not applied: it changes only mis-decoded or non-NFC text.) Invalid UTF-8 throws uvit::Error.
std::string clip_clean_text(const std::string& utf8);
// CLIP's pre-tokenisation of cleaned text: the matches of
// <|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
std::vector<std::string> clip_pretokenize(const std::string& cleaned);

// The vocabulary to load: `given` when not empty, else $UVIT_CLIP_VOCAB, else the repository's
// data/clip/bpe_simple_vocab_16e6.txt.gz when it exists; an error saying how to give one when
// there is none.
std::string clip_vocab_path(const std::string& given);

class ClipTokenizer {
 public:
  static constexpr int kContextLength = 77;

  // The original merges list (bpe_simple_vocab_16e6.txt.gz, or the same text uncompressed).
  static ClipTokenizer from_bpe_file(const std::string& path);
  // Hugging Face tokenizer files.
  static ClipTokenizer from_hf(const std::string& vocab_json, const std::string& merges_txt);
  // By path: a .gz/.txt merges list, a vocab.json (merges.txt beside it) or a directory holding
  // vocab.json + merges.txt or bpe_simple_vocab_16e6.txt.gz.
  static ClipTokenizer load(const std::string& path);

  // BPE ids of the cleaned text, no start/end tokens, no truncation.
  std::vector<int> encode(const std::string& text) const;
  // The model input: start, at most length-2 ids, end, then end-token padding to `length`.
  std::vector<int> tokenize(const std::string& text, int length = kContextLength) const;
  // The vocabulary entry of an id (byte-level unicode form, e.g. "photo</w>").
  const std::string& token(int id) const;
  int start_id() const { return start_; }
  int end_id() const { return end_; }
  int vocab_size() const { return int(tokens_.size()); }
  // The 64-bit hash of the vocabulary and merges loaded (src/dist/weights_hash.hpp): the ranks of
  // a job compare it, whatever form the files had (a merges list, HF files, a directory).
  uint64_t hash() const;

 private:
  ClipTokenizer() = default;
  void build(std::vector<std::string> tokens,
             const std::vector<std::pair<std::string, std::string>>& merges,
             const std::string& what);
  std::vector<int> bpe(const std::string& word) const;

  std::vector<std::string> tokens_;                 // id -> string
  std::map<std::string, int> ids_;                  // string -> id
  // (left id, right id) -> (rank, merged id): text/bpe_merge.hpp's BpeMerges.
  std::unordered_map<uint64_t, std::pair<int, int>> merges_;
  int byte_id_[256] = {};                           // byte -> id of its unicode symbol
  int start_ = 0, end_ = 0;
};

// ---- text transformer --------------------------------------------------------------------------

// Hugging Face CLIPTextConfig fields; the defaults are ViT-L/14's text model.
struct ClipTextConfig {
  int vocab_size = 49408;
  int hidden_size = 768;
  int intermediate_size = 3072;
  int num_hidden_layers = 12;
  int num_attention_heads = 12;
  int max_position_embeddings = 77;
  std::string hidden_act = "quick_gelu";  // or "gelu"
  double layer_norm_eps = 1e-5;
  int projection_dim = 768;  // text_projection.weight [projection_dim, hidden_size] (CLIPScore)

  // Reads the fields above (others are ignored; a CLIPConfig's "text_config" is used when present,
  // and its top-level projection_dim).
  static ClipTextConfig from_json(const nlohmann::json& j, const std::string& what = "config");
  static ClipTextConfig load(const std::string& path);  // "": the defaults (ViT-L/14)
  void validate(const std::string& what) const;
};

class ClipTextModel {
 public:
  ClipTextModel(const ClipTextConfig& cfg, Backend& be);
  ~ClipTextModel();
  ClipTextModel(const ClipTextModel&) = delete;
  ClipTextModel& operator=(const ClipTextModel&) = delete;

  const ClipTextConfig& config() const { return cfg_; }
  // HF CLIPTextModel keys ("text_model.*") and, when present, a CLIPModel's
  // "text_projection.weight"; other keys (vision tower, position_ids) are ignored. Every
  // text-model weight must be present with its shape. Any float dtype.
  void load(const NamedArrays& sd, const std::string& what);
  void load_file(const std::string& path);              // .safetensors or torch .bin/.pth
  void load(TensorReader& r, const std::string& what);  // both read through it
  size_t num_params() const { return total_; }
  // The 64-bit hash of the weights loaded (src/dist/weights_hash.hpp): the ranks of a job compare
  // it.
  uint64_t weights_hash() const;

  // ids [B, L] (L <= max_position_embeddings) -> the final LayerNorm's output [B, L, hidden] on
  // the host. Attention is causal; no padding mask (as FrozenCLIPEmbedder calls it).
  std::vector<float> forward(const std::vector<int>& ids, int B, int L);

  // Whether the checkpoint had text_projection.weight (CLIPModel files do).
  bool has_projection() const;
  // HF CLIPModel.get_text_features from forward()'s output: the row of each sequence's end token
  // (the first position of its largest id, as HF pools) times text_projection -> [B,
  // projection_dim] on the host.
  std::vector<float> project_pooled(const std::vector<float>& hidden, const std::vector<int>& ids,
                                    int B, int L);

 private:
  struct Weights;
  ClipTextConfig cfg_;
  Backend& be_;
  float* params_ = nullptr;
  size_t total_ = 0;
  std::unique_ptr<Weights> w_;
};

// Prompts -> contexts [N, 77, hidden] (float32, host), the official FrozenCLIPEmbedder output.
std::vector<float> clip_encode_prompts(const ClipTokenizer& tok, ClipTextModel& model,
                                       const std::vector<std::string>& prompts);

}  // namespace uvit
