// The U-ViT noise-prediction network (`uvit` and `uvit_t2i`), written once against the Backend.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/params.hpp"

namespace uvit {

// The official state_dict layout (names, shapes, order) of a network config.
ParamTable build_param_table(const NetConfig& cfg);
// Forward FLOPs per image (2 per multiply-add), counting every GEMM, attention and conv.
double forward_flops(const NetConfig& cfg);

class UViT {
 public:
  UViT(const NetConfig& cfg, Backend& be);
  ~UViT();
  UViT(const UViT&) = delete;
  UViT& operator=(const UViT&) = delete;

  const NetConfig& config() const { return cfg_; }
  const ParamTable& table() const { return table_; }
  Backend& backend() { return be_; }
  // Flat fp32 parameters, backend memory. Taking the mutable pointer marks the act copy stale:
  // the next forward refreshes it (bf16 backends keep GEMM weights in bf16).
  float* params() {
    act_stale_ = true;
    return params_;
  }
  const float* params() const { return params_; }
  float* grads();                      // allocated on first use
  size_t num_params() const { return table_.total(); }

  // Loads a state_dict (strict: every name and shape must match; `what` names the source).
  void load(const NamedArrays& sd, const std::string& what);
  void load_file(const std::string& path);  // .safetensors or .pth
  NamedArrays export_weights(DType dtype = DType::F32) const;
  // The official initialisation (SPEC 4.4) from a counter-based RNG.
  void init_random(uint64_t seed);

  // All pointers are backend memory. x [B,C,S,S]; t [B] network time input; y [B] int32 class
  // labels (class-conditional uvit) or nullptr; context [B, num_clip_token, clip_dim] (uvit_t2i)
  // or nullptr; out [B,C,S,S]. With `train`, the activations needed by backward() are kept
  // (all of them, or per-block inputs only when use_checkpoint is set).
  void forward(const float* x, const float* t, const int32_t* y, const float* context, float* out,
               int B, bool train = false);
  // Accumulates d(sum(out * dout))/d(params) into grads(); needs the preceding forward(train=true).
  void backward(const float* dout);
  void zero_grad();

  // Bytes of activation memory planned for the last forward.
  size_t arena_bytes() const { return arena_bytes_; }

 private:
  struct Plan;
  void plan(int B, bool train);
  void block_forward(int k, const float* skip, bool keep);
  void block_backward(int k, const float* skip, float* dskip);

  NetConfig cfg_;
  Backend& be_;
  ParamTable table_;
  float* params_ = nullptr;
  float* act_params_ = nullptr;  // act copy of params_ (== params_ when act is fp32)
  bool act_stale_ = true;
  float* grads_ = nullptr;
  void sync_act_params();
  std::unique_ptr<Plan> plan_;
  size_t arena_bytes_ = 0;
};

}  // namespace uvit
