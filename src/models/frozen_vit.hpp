// What the frozen (inference-only, fp32) ViT image encoders share: the pre-norm block stack
// written with the layers:: pieces, the patch embedding as im2col + GEMM, and their parameters
// kept in one backend buffer laid out by a ParamTable of official state_dict names.
// Users: DINOv3 (dinov3.cpp) and SVG's residual torchvision ViT (svg_encoder.cpp);
// docs/svg_encoder.md.
#pragma once
#include <string>
#include <vector>

#include "models/layers.hpp"
#include "uvit/backend.hpp"
#include "uvit/params.hpp"

namespace uvit::vit {

// x += attn(norm1(x)); x += mlp(norm2(x)). LayerScale, where a model has it, is folded into
// attn.proj / mlp.fc2 at load time (the weights are frozen).
struct Block {
  layers::Norm norm1, norm2;
  layers::Attention attn;
  layers::Mlp mlp;
};

// The attention of a block: `heads` heads of qkv.in / heads features, scale head_dim^-1/2.
layers::Attention attention(const layers::Linear& qkv, const layers::Linear& proj, int heads);

// Scratch floats blocks_fwd needs for B sequences of N tokens.
size_t blocks_scratch_floats(const Block& b, int B, int N);
// x [B*N, D] (backend memory) through every block, in place.
void blocks_fwd(const layers::Weights& W, const std::vector<Block>& blocks, float* x,
                float* scratch, int B, int N);

// img [B, C, S, S] -> out [B*L, D] = conv(kernel = stride = p) as im2col into cols [B*L, C p p]
// and one GEMM with the conv weight [D, C, p, p] and bias.
void patch_embed(const layers::Weights& W, const layers::Linear& proj, const float* img,
                 float* cols, float* out, int B, int C, int S, int p);

// A frozen model's parameters: a load reads them into host memory (then folds), which upload()
// moves to the backend. On the CPU that host memory is the backend buffer itself, so the weights
// exist once; elsewhere a host copy is read, uploaded and freed.
class FrozenParams {
 public:
  FrozenParams(Backend& be, ParamTable table, const std::string& what);
  const ParamTable& table() const { return table_; }
  // Every tensor of the table from r (its directory checked against the table first: nothing
  // else, every name and shape), each read straight into its place; `what` names the source in
  // errors.
  void load_host(TensorReader& r, const std::string& what);
  float* host(const std::string& name) { return host_base() + table_.at(name).offset; }
  void upload();  // host copy -> backend (after the folds); the host copy is then gone
  const float* dev() const { return dev_.f32(); }
  layers::Weights weights() const { return layers::Weights{be_, dev(), dev(), nullptr}; }

 private:
  float* host_base() { return in_place_ ? dev_.f32() : host_.data(); }
  Backend& be_;
  ParamTable table_;
  bool in_place_;  // the backend buffer is host memory: loads read into it
  std::vector<float> host_;
  DeviceBuffer dev_;
};

// y[r, :] *= s[r] for the rows of a [rows, cols] weight and its bias: LayerScale folded into the
// linear before it (gamma (W x + b) = (gamma W) x + gamma b).
void scale_rows(float* w, float* b, const float* s, int rows, int cols);

}  // namespace uvit::vit
