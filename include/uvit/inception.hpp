// The FID Inception network (SPEC 17): the TF "2015-12-05" Inception-v3 port that pytorch-fid uses,
// in torchvision's Inception3 key layout with 1008 classes, with the FID-specific pool branches
// (average pools that exclude padding; a max pool in Mixed_7c). BatchNorm (eps 1e-3) is folded into
// the convolutions at load. NCHW fp32 on a Backend (its memory holds the weights and activations).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "uvit/array.hpp"

namespace uvit {

// Where pytorch-fid publishes the weights (named in the error when they are missing).
inline constexpr const char* kInceptionWeightsName = "pt_inception-2015-12-05-6726825d.pth";
inline constexpr const char* kInceptionWeightsUrl =
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
    "pt_inception-2015-12-05-6726825d.pth";

// The weights path: `explicit_path` if non-empty, else $UVIT_INCEPTION; throws a one-line
// uvit::Error saying where to download them when neither is set or the file does not exist.
std::string inception_weights_path(const std::string& explicit_path);

class Backend;
class TensorReader;

// The input pipeline in front of the network (docs/evaluation.md "The TF graph's input pipeline").
// PytorchFid: uint8 / 255, torch's bilinear resize to 299 (half-pixel centres), 2x - 1 (the
// default; pytorch-fid's). Tf: the uint8 values as float [0, 255], TF 1.x's legacy bilinear resize
// (no half-pixel centres), (y - 128) * 0.0078125: the ADM evaluator's TF graph from ExpandDims:0.
enum class InceptionInput { PytorchFid, Tf };
// "pytorch-fid" or "tf", as the CLI's --inception-input and the records spell them.
const char* inception_input_name(InceptionInput in);
// The inverse; a one-line uvit::Error naming `what` for anything else.
InceptionInput parse_inception_input(const std::string& s, const std::string& what);

class FidInception {
 public:
  static constexpr int kDims = 2048;     // pool3 features
  static constexpr int kClasses = 1008;  // fc outputs
  static constexpr int kSize = 299;      // network input size
  // sFID's spatial features (docs/evaluation.md "sFID"): the ADM evaluator's `mixed_6/conv:0`
  // (TF graph) = Mixed_6d.branch1x1 after its BatchNorm and ReLU here, its first 7 channels of
  // 17x17, flattened in TF's NHWC order (h, w, c) as the evaluator reshapes them: 2023 values.
  static constexpr int kSpatialChannels = 7;
  static constexpr int kSpatialSide = 17;
  static constexpr int kSpatialDims = kSpatialChannels * kSpatialSide * kSpatialSide;

  // From a state_dict (torchvision Inception3 names; AuxLogits.* and num_batches_tracked ignored),
  // on an internal CPU backend, or on `be` (kept by reference: it must outlive the network), which
  // must be fp32 (a one-line uvit::Error otherwise). Weights are uploaded once.
  explicit FidInception(const NamedArrays& state_dict, const std::string& name = "inception");
  FidInception(const NamedArrays& state_dict, Backend& be, const std::string& name = "inception");
  // The same from a weights file's reader, each tensor read once into its folded place (load()).
  FidInception(TensorReader& r, Backend* be);
  ~FidInception();
  FidInception(FidInception&&) noexcept;
  static FidInception load(const std::string& path);
  static FidInception load(const std::string& path, Backend& be);
  // Random weights in the torchvision layout, scaled as tests/reference/inception_torch.py
  // randomizes them (He-normal convs, BatchNorm near identity), for tests and benchmarks.
  static NamedArrays random_state_dict(uint64_t seed);

  // The input pipeline (PytorchFid unless set); not thread-safe against a running forward.
  void set_input(InceptionInput in);
  InceptionInput input() const;

  // x: [B, 3, H, W] (any H, W >= 1) in [0, 1] for the PytorchFid input, resized to 299x299
  // bilinearly (align_corners false) and mapped to [-1, 1] as pytorch-fid does; in [0, 255] for
  // the Tf input, resized by TF1's legacy bilinear and mapped by (y - 128) / 128 as the TF graph.
  // The images are uploaded as they are and resized and normalised on the backend; the network runs
  // a chunk of images per layer call: one on the CPU, 32 on a device, or $UVIT_INCEPTION_BATCH
  // (read at construction; a positive count, for tests of the batched path on the CPU). Features do
  // not depend on the chunking beyond rounding. pool3 and logits are host memory. pool3: [B, 2048].
  // logits (may be nullptr): [B, 1008] = pool3 * fc.weight^T WITHOUT the fc bias (the Inception
  // Score's logits, as in the original IS code and torch-fidelity's "logits_unbiased"). spatial
  // (may be nullptr): [B, kSpatialDims], sFID's features.
  void forward(const float* x, int B, int H, int W, float* pool3, float* logits = nullptr,
               float* spatial = nullptr) const;
  // uint8 images [B, H, W, C] (C = 1 or 3; gray is replicated to RGB), divided by 255 first (the
  // Tf input: not divided) and handed to forward in chunks (pass many images per call to use a
  // device's batching).
  void forward_u8(const uint8_t* hwc, int B, int H, int W, int C, float* pool3,
                  float* logits = nullptr, float* spatial = nullptr) const;

  // The 64-bit hash of the weights loaded (src/dist/weights_hash.hpp): the ranks of a job compare
  // it.
  uint64_t weights_hash() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

namespace nn {
// torch F.interpolate(mode="bilinear", align_corners=False) with an output size (no antialias),
// computed in fp32 as PyTorch's CPU kernel does.
void resize_bilinear(const float* x, float* y, int planes, int H, int W, int out_h, int out_w);
// TF 1.x's legacy ResizeBilinear (align_corners=False, no half-pixel centres), the FID TF graph's
// resize: src = dst * (in / out) in fp32, top = tl + (tr - tl) * x_lerp, likewise bottom, out =
// top + (bottom - top) * y_lerp, each operation rounded to fp32 (docs/evaluation.md).
void resize_bilinear_tf1(const float* x, float* y, int planes, int H, int W, int out_h, int out_w);
}  // namespace nn

}  // namespace uvit
