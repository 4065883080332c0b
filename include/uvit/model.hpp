// The U-ViT noise-prediction network (`uvit` and `uvit_t2i`): one Network of the registry.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/network.hpp"
#include "uvit/params.hpp"

namespace uvit {

// The official state_dict layout (names, shapes, order) of a network config.
ParamTable build_param_table(const NetConfig& cfg);
// Forward FLOPs per image (2 per multiply-add), counting every GEMM, attention and conv.
double forward_flops(const NetConfig& cfg);

class UViT final : public Network {
 public:
  // null_class: the label table's "no class" row (num_classes - 1 when the preset trains with
  // label dropout, dataset.cfg), or -1.
  UViT(const NetConfig& cfg, Backend& be, int null_class = -1);
  ~UViT() override;

  const NetConfig& config() const { return cfg_; }
  // The official initialisation (SPEC 4.4) from a counter-based RNG.
  void init_random(uint64_t seed) override;

  // x [B,C,S,S]; t [B] network time input; y [B] int32 class labels (class-conditional uvit) or
  // nullptr; context [B, num_clip_token, clip_dim] (uvit_t2i) or nullptr; out [B,C,S,S]. With
  // `train`, the activations needed by backward() are kept (all of them, or per-block inputs only
  // when use_checkpoint is set).
  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train = false) override;
  void backward(const float* dout) override;

  size_t arena_bytes() const override { return arena_bytes_; }
  double forward_flops() const override { return uvit::forward_flops(cfg_); }

 protected:
  void plan_batch(int B, bool train) override { plan(B, train); }

 private:
  struct Plan;
  void plan(int B, bool train);
  void block_forward(int k, const float* skip, bool keep);
  void block_backward(int k, const float* skip, float* dskip);
  void patch_forward(const float* x);  // image -> patch tokens (linear or conv_stack)
  void patch_backward();               // its parameter gradients

  NetConfig cfg_;
  std::unique_ptr<Plan> plan_;
  size_t arena_bytes_ = 0;
};

}  // namespace uvit
