// The denoiser interface every backbone implements (U-ViT, DiT, Skip-DiT, ...), and the registry
// that builds one from a config's "nnet" section. Nothing outside src/models names a concrete
// network class or its constructor fields: the trainer, the samplers and the CLI see a Network and
// its NetSpec. docs/architecture.md shows how to add a backbone.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/params.hpp"
#include "uvit/quant.hpp"

namespace uvit {

struct Config;
class ParamStage;  // network.cpp: moves parameters one tensor at a time

// What the rest of the engine needs to know about a network: its input, output and conditioning.
struct NetSpec {
  std::string name;                // registry name ("uvit", "uvit_t2i", "dit", "skip_dit")
  int in_chans = 0, img_size = 0;  // img_size: the side, or the height of a non-square input
  int img_w = 0;        // the width when it differs from the height (FiTv2's grids); 0: square
  int out_chans = 0;    // in_chans, or 2 in_chans when the network also predicts a variance
  int num_classes = 0;  // rows of the label table, the null class included; 0: no labels
  int null_class = -1;  // the label that means "no class" (guidance, label dropout); -1: none
  int context_tokens = 0, context_dim = 0;  // text conditioning [B, tokens, dim]; 0: none
  // Channels classifier-free guidance combines (DiT: 3, as its forward_with_cfg); the rest come
  // from the conditional pass. 0: every eps channel.
  int guidance_channels = 0;
  // How power-cos guidance (sample.cfg_power) reads the time: MDT's schedule of the noise
  // fraction; FiTv2's forward_with_cfg, of min(t, 1) of the network time (full guidance at the
  // flow's noise end); or none (refused: FiTv1's sampler has no scale_pow). docs/fit.md.
  enum class PowerCos { Mdt, Fit, None };
  PowerCos power_cos = PowerCos::Mdt;

  bool class_conditional() const { return num_classes > 0; }
  bool text_conditional() const { return context_tokens > 0; }
  bool learned_sigma() const { return out_chans == 2 * in_chans; }
  // Classes a user may ask for: the table's rows without the null class.
  int real_classes() const { return null_class >= 0 ? num_classes - 1 : num_classes; }
  int width() const { return img_w > 0 ? img_w : img_size; }
  bool square() const { return width() == img_size; }
  size_t in_numel() const { return size_t(in_chans) * img_size * width(); }
  size_t out_numel() const { return size_t(out_chans) * img_size * width(); }
  size_t context_numel() const { return size_t(context_tokens) * context_dim; }
};

// A network over backend memory with its parameters in one flat fp32 buffer laid out by its
// ParamTable (official state_dict names and order). The parameter plumbing lives here once.
class Network {
 public:
  virtual ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const NetSpec& spec() const { return spec_; }
  const ParamTable& table() const { return table_; }
  Backend& backend() { return be_; }
  // Flat fp32 parameters, backend memory. Taking the mutable pointer marks the act copy stale:
  // the next forward refreshes it (bf16 backends keep GEMM weights in bf16).
  float* params() {
    ensure_params();
    act_stale_ = true;
    return params_;
  }
  const float* params() const {
    ensure_params();
    return params_;
  }
  float* grads();  // allocated on first use, zeroed then; refused for quantised weights
  size_t num_params() const { return table_.total(); }
  void zero_grad();
  // train.zero=2 (src/train/grad_pages.hpp): the gradient in memory the caller owns (num_params()
  // floats of backend memory, zero, outliving this network's use), zeroed by `zero` instead of a
  // fill.
  void use_grads(float* g, std::function<void()> zero);

  // Loads a state_dict (strict: every name and shape must match; `what` names the source).
  // Quantised tensors are refused (training needs fp32 weights).
  void load(const NamedArrays& sd, const std::string& what);
  // .safetensors or .pth, each tensor read straight into the parameter buffer (dtype converted
  // in place). A quantised safetensors (quant.hpp) keeps its GEMM weights as integers on the CPU
  // (dequantised one layer at a time in forward) and is dequantised once on other backends.
  void load_file(const std::string& path);
  // The same from a reader already open (open_weights), whose metadata the caller has read:
  // train --init checks, records and loads through one reader (docs/benchmarks.md, "uvit train
  // --init W: opens of the weights file").
  void load_reader(TensorReader& r);
  // fp32 export; quantised weights come out dequantised.
  NamedArrays export_weights(DType dtype = DType::F32) const;
  // The same tensors streamed to a safetensors file (fp32), one at a time: no copy of the whole
  // model is made (the trainer's checkpoints; docs/benchmarks.md, "Peak memory of big models").
  void save_weights(const std::string& path,
                    const std::map<std::string, std::string>& metadata) const;
  // The quantised weights kept by load_file (CPU), or nullptr.
  const QuantWeights* quantized() const { return quant_.get(); }
  // The official initialisation of the family, from a counter-based RNG keyed on the seed.
  virtual void init_random(uint64_t seed) = 0;
  // Fills one tensor: e.numel floats at p, which arrive zeroed; i is e's index in the table
  // (write_params).
  using ParamFill = std::function<void(size_t i, const ParamEntry& e, float* p)>;

  // All pointers are backend memory. x [B, in_chans, S, S]; t [B] the network's time input; y [B]
  // int32 labels (class-conditional networks) or nullptr; context [B, tokens, dim] (text networks)
  // or nullptr; out [B, out_chans, S, S]. With `train`, what backward() needs is kept.
  virtual void forward(const float* x, const float* t, const int32_t* y, const float* context,
                       float* out, int B, bool train = false) = 0;
  // Accumulates d(sum(out * dout))/d(params) into grads(); needs the preceding forward(train).
  // The gradient of a frozen tensor (ParamEntry::frozen) is unspecified: the layers skip the big
  // ones (every linear's weight-gradient GEMM and bias sum, label tables), small ones may still be
  // written. The input gradients through them are always computed.
  virtual void backward(const float* dout) = 0;
  // The overlap of the data-parallel exchange with backward (docs/distributed.md, "Overlap"):
  // backward() calls `f` with [lo, hi) of the flat gradient as soon as it writes no more of it
  // (each transformer block's tensors after that block's backward, the deep blocks first):
  // disjoint ranges, in the same order every time. What it announces nothing for is final when
  // backward() returns. An empty `f` turns the calls off.
  using GradsReady = std::function<void(size_t lo, size_t hi)>;
  void on_grads_ready(GradsReady f) { grads_ready_ = std::move(f); }
  // Freezes every tensor for which `f` holds (train.finetune partial, docs/cli.md "Partial
  // fine-tuning"): from the next backward on, as above.
  void freeze_if(const std::function<bool(const ParamEntry&)>& f) { table_.freeze_if(f); }

  // Allocates, untouched, the buffers a forward of B samples holds (with `train`, what its
  // backward needs, and the gradients, zeroed at first use): inside a MemPlan the run's whole need
  // is counted before anything is initialised (docs/memory.md, "Refused up front"). The next
  // forward at (B, train) allocates nothing. `packed`: for batches of set_valid_sizes (FiT): the
  // largest packed batch the network takes, so that no packed batch of B allocates after it.
  void reserve(int B, bool train, bool packed = false);

  // Bytes of activation memory planned for the last forward.
  virtual size_t arena_bytes() const = 0;
  // Forward FLOPs per image (2 per multiply-add), every GEMM, attention and conv counted.
  virtual double forward_flops() const = 0;

  // Skip-Cache (Skip-DiT's inference shortcut): every `every`-th inference call runs the whole
  // network, the others reuse the deep features it cached; `every` <= 1 turns it off. Starting it
  // (again) empties the cache, so call it before each sampling run. Networks without it refuse.
  virtual void set_skip_cache(int every);

  // Masked training (MDT, docs/mdt.md): how many passes a training step runs over its batch (the
  // same data, times and labels; each pass's loss adds to the step's): 1, or 2 for MDT with a
  // mask_ratio (the plain pass, then the masked one).
  virtual int train_passes() const { return 1; }
  // Selects the pass of the next forward(train=true); `first` (the micro-batch's first sample in
  // the run's sample stream) keys the pass's own draws from Philox(seed).
  virtual void set_train_pass(int pass, uint64_t seed, uint64_t first);

  // Variable-size batches (FiTv2's packed training, docs/fit.md): sizes[b] = {height, width} of
  // the valid top-left region of sample b's [in_chans, S, W] image, multiples of the patch size;
  // the rest is padding, which the network ignores and leaves zero in its output. Applies to the
  // next forward (and its backward) only. Networks without packing refuse (packs_sizes() false).
  virtual bool packs_sizes() const { return false; }
  virtual void set_valid_sizes(const std::vector<std::array<int, 2>>& sizes);

 protected:
  Network(NetSpec spec, ParamTable table, Backend& be);
  // Writes every parameter one tensor at a time (init_random): straight into the parameter buffer
  // on the CPU (host memory), elsewhere through a host buffer of one tensor uploaded after each,
  // so no host copy of the whole model exists.
  void write_params(const ParamFill& fill);
  // The act copy of the parameters, refreshed when stale (== params_ when act is fp32).
  const float* act_params();
  void check_inputs(const int32_t* y, const float* context, int B) const;
  // Announces (on_grads_ready) the tensors whose names start with `prefix`, one contiguous run
  // of the table (a block's "blocks.3."); a no-op when nobody listens.
  void grads_ready(const std::string& prefix) const;
  void grads_ready(size_t lo, size_t hi) const {  // floats [lo, hi) of the flat gradient
    if (grads_ready_ && hi > lo) grads_ready_(lo, hi);
  }
  // The family's activation plan for (B, train), as forward makes it (reserve()).
  virtual void plan_batch(int B, bool train) = 0;
  // The same for the largest packed batch (packs_sizes() networks).
  virtual void plan_packed_batch(int B, bool train);
  // Called after every load: checks the tensors a network rebuilds itself (MDT's
  // relative_position_index buffers) against what was read.
  virtual void check_loaded() {}

  NetSpec spec_;
  ParamTable table_;
  Backend& be_;
  float* params_ = nullptr;
  float* act_params_ = nullptr;
  float* grads_ = nullptr;
  std::unique_ptr<QuantWeights> quant_;

 private:
  // The parameters are zeroed on first use unless a load or init wrote them first: a quantised
  // load never touches its GEMM weights' part of the buffer, so those pages are never resident.
  void ensure_params() const;
  void load_quantized(TensorReader& r, const QuantFormat& f, ParamStage& stage);
  // Tensor e's fp32 values (dequantised when quantised) in host memory: in place on the CPU, else
  // in stage's buffer.
  const float* host_values(const ParamEntry& e, ParamStage& stage) const;
  GradsReady grads_ready_;
  std::function<void()> zero_grads_;  // use_grads: the gradient is the caller's
  bool act_stale_ = true;
  mutable bool params_set_ = false;
  bool grads_set_ = false;      // grads_ zeroed (reserve() allocates it untouched)
  std::string quantized_from_;  // "PATH (int8)" once a quantised file was loaded
};

// One backbone family of the registry (src/models/registry.cpp lists them).
struct NetworkFamily {
  std::string name;
  // Validates doc["nnet"] (the whole preset is given, for settings such as dataset.cfg that
  // decide the conditioning) and describes the network; throws uvit::Error naming the field.
  std::function<NetSpec(const nlohmann::json& doc)> spec;
  // The parameter table without allocating anything (convert --config, info).
  std::function<ParamTable(const nlohmann::json& nnet)> table;
  std::function<double(const nlohmann::json& nnet)> flops;  // forward FLOPs per image
  std::function<std::unique_ptr<Network>(const nlohmann::json& doc, Backend& be)> create;
  // The nnet section with every constructor argument filled in (info, run config.json).
  std::function<nlohmann::json(const nlohmann::json& nnet)> full_config;
};

// The family of a registry name; throws uvit::Error listing the names when there is none.
const NetworkFamily& network_family(const std::string& name);
std::vector<std::string> network_names();

// A network for a loaded config (parameters zero until init_random or load).
std::unique_ptr<Network> make_network(const Config& cfg, Backend& be);
ParamTable network_param_table(const Config& cfg);
// The preset whose weights these are, or "": an fp32 file's by every tensor's name and shape, a
// quantised one's as convert --quantize recorded it (`uvit info` names it; a failed load_file
// adds it to its error).
std::string weights_preset(const std::vector<TensorInfo>& tensors,
                           const std::map<std::string, std::string>& meta);
double network_forward_flops(const Config& cfg);

// A failed Network::load_file of another preset's weights: the load's own error (`load_error`),
// then whose file it is and how to take it. what() says it as the CLI does ("--config P takes
// it"); a front end that sets the config otherwise (the C API's uvit_ctx_params.config) words the
// same message with said_as.
struct OtherPresetWeights : Error {
  OtherPresetWeights(std::string load_error, std::string preset, std::string evidence);
  // The message with `setting` (how the caller gives the config `preset`) in place of --config.
  std::string said_as(const std::string& setting) const;
  std::string load_error, preset, evidence;
};

}  // namespace uvit
