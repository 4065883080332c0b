// The pieces the two CLIP towers share (docs/clip_score.md): the flat parameter layout keyed by
// Hugging Face names, the key matching and validation of a checkpoint (any wrapper prefix before
// "text_model." / "vision_model."), and the pre-norm transformer stack (LayerNorm -> multi-head
// self-attention -> residual, LayerNorm -> fc1 -> quick-GELU/GELU -> fc2 -> residual), causal for
// the text tower and bidirectional for the image tower. Inference only, fp32, over the Backend.
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::clip {

// The optional fields of one section of an HF CLIP config, each type-checked with a one-line error
// naming `what` (the file); an absent field leaves the default.
struct ConfigFields {
  // A CLIPConfig's tower section `key` ("text_config", "vision_config") when present, else the
  // whole object (a tower's own config).
  static const nlohmann::json& section(const nlohmann::json& j0, const char* key,
                                       const std::string& what);
  const nlohmann::json& j;
  const std::string& what;
  void get(const char* k, int& v) const;
  void get(const char* k, double& v) const;
  void get(const char* k, std::string& v) const;
  // Refuses a field not in `known`: "`what`: unknown `kind` field 'k'".
  void only(std::initializer_list<const char*> known, const char* kind) const;
};

// The fields both towers' configs share: the transformer's sizes, projection_dim (a CLIPConfig's
// top level, then the tower's own), hidden_act and layer_norm_eps.
template <class TowerConfig>
void get_tower_fields(const ConfigFields& f, const ConfigFields& top, TowerConfig& c) {
  f.get("hidden_size", c.hidden_size);
  f.get("intermediate_size", c.intermediate_size);
  f.get("num_hidden_layers", c.num_hidden_layers);
  f.get("num_attention_heads", c.num_attention_heads);
  top.get("projection_dim", c.projection_dim);  // CLIPConfig's, when present
  f.get("projection_dim", c.projection_dim);
  f.get("hidden_act", c.hidden_act);
  f.get("layer_norm_eps", c.layer_norm_eps);
}

// A tower's config from a CLIPConfig (its section `key`) or the tower's own config: `own(f, c)`
// reads the tower's own fields, then the shared ones follow and c.validate(what) checks them.
template <class TowerConfig, class Own>
TowerConfig read_tower_config(const nlohmann::json& j0, const char* key, const std::string& what,
                              Own own) {
  const nlohmann::json& j = ConfigFields::section(j0, key, what);
  TowerConfig c;
  const ConfigFields f{j, what}, top{j0, what};
  own(f, c);
  get_tower_fields(f, top, c);
  c.validate(what);
  return c;
}

// Their checks after the sizes: the heads divide the width ("vision hidden_size" with `tower`
// "vision "), a supported activation, a positive epsilon.
template <class TowerConfig>
void check_tower_fields(const TowerConfig& c, const std::string& what, const char* tower) {
  UVIT_CHECK(c.hidden_size % c.num_attention_heads == 0, what, ": ", tower, "hidden_size ",
             c.hidden_size, " is not divisible by num_attention_heads ", c.num_attention_heads);
  UVIT_CHECK(c.hidden_act == "quick_gelu" || c.hidden_act == "gelu", what, ": hidden_act '",
             c.hidden_act, "' is not supported (quick_gelu or gelu)");
  UVIT_CHECK(c.layer_norm_eps > 0, what, ": layer_norm_eps must be positive");
}

struct Slot {
  size_t offset = 0;
  std::vector<int64_t> shape;
  bool optional = false;  // may be absent from a checkpoint (the text projection)
};

// Where every HF tensor lands in one flat fp32 buffer. Names are full HF names
// ("vision_model.encoder.layers.0.mlp.fc1.weight", "visual_projection.weight").
class Layout {
 public:
  // `tower`: "text_model." or "vision_model."; `kind`: "text-model" or "vision-model" (errors).
  Layout(std::string tower, std::string kind) : tower_(std::move(tower)), kind_(std::move(kind)) {}
  // Reserves a tensor; an empty name reserves unnamed room (the stacked q/k/v).
  size_t take(const std::string& name, std::vector<int64_t> shape, bool optional = false);
  // Names a part of room reserved earlier.
  void alias(const std::string& name, size_t offset, std::vector<int64_t> shape);
  // Names outside the tower ("visual_projection.weight") that a checkpoint may hold at its top
  // level or after a wrapper prefix.
  void add_top_level(const std::string& name) { top_.push_back(name); }
  size_t total() const { return total_; }
  const std::map<std::string, Slot>& slots() const { return slots_; }

  // The slot a checkpoint key goes to: nullptr for keys of other parts (the other tower,
  // logit_scale, position_ids); throws a one-line error for an unexpected tower key or a wrong
  // shape. `layers` is named in the error for unexpected keys.
  const Slot* match(const std::string& key, const std::vector<int64_t>& shape,
                    const std::string& what, int layers, std::string* name) const;
  // Throws for the first required slot not in `done`.
  void check_complete(const std::map<std::string, bool>& done, const std::string& what) const;

 private:
  std::string tower_, kind_;
  std::vector<std::string> top_;
  std::map<std::string, Slot> slots_;
  size_t total_ = 0;
};

// Offsets of one transformer layer's weights; q, k, v are stacked into one [3H, H] weight (and
// [3H] bias) so that one GEMM computes them.
struct LayerOffsets {
  size_t ln1_w, ln1_b, qkv_w, qkv_b, out_w, out_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w, fc2_b;
};
// Adds `n` layers under `prefix` ("text_model.encoder.layers.").
std::vector<LayerOffsets> add_layers(Layout& lay, const std::string& prefix, int n, int64_t H,
                                     int64_t I);

struct StackDims {
  int hidden = 0, intermediate = 0, heads = 0;
  float eps = 1e-5f;
  bool quick_gelu = true;  // else exact GELU
  bool causal = false;
};
// The stack of a tower config (causal: the text tower).
template <class TowerConfig>
StackDims stack_dims(const TowerConfig& c, bool causal) {
  return {c.hidden_size,           c.intermediate_size,          c.num_attention_heads,
          float(c.layer_norm_eps), c.hidden_act == "quick_gelu", causal};
}
// Refuses a backend without fp32 activations; `tower` ("clip text") starts the message.
void require_fp32(const Backend& be, const char* tower);
// Scratch for the stack at M = B * L rows: h [M, H], qkv [M, 3H], att [M, H], f [M, I] floats.
size_t stack_scratch_floats(const StackDims& d, size_t M);
// x [B, L, H] (backend memory) through every layer, in place.
void stack_forward(Backend& be, const float* P, const std::vector<LayerOffsets>& layers,
                   const StackDims& d, float* x, float* scratch, int B, int L);

// Loads every tensor of r that `lay` matches into `params` (backend memory), converted to fp32:
// the directory is checked first (names, shapes, dtypes, nothing required missing), then each
// tensor is read straight into its place (through one tensor's host buffer off the CPU). Returns
// the slots that were loaded.
std::map<std::string, bool> load_into(Backend& be, float* params, const Layout& lay,
                                      TensorReader& r, const std::string& what, int layers);

}  // namespace uvit::clip
