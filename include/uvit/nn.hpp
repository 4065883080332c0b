// CPU inference layers on NCHW fp32 tensors: the CPU backend's convolutional kernels
// (Backend::conv2d, group_norm, ...) for the autoencoder (SPEC 13) and the FID Inception (SPEC 17).
#pragma once
#include <cstddef>

#include "uvit/backend.hpp"

namespace uvit::nn {

using Conv2dShape = uvit::Conv2dShape;  // (uvit/backend.hpp)

// Which implementation runs a convolution. Auto (measured fastest, docs/autoencoder.md): a GEMM for
// unpadded stride-1 1x1 kernels, else oneDNN's primitive on plain nchw. UVIT_CONV_IMPL=
// im2col|plain|blocked|winograd forces one. OneDnn lets oneDNN pick blocked layouts (reorders in
// and out); Winograd is oneDNN's F(4x4,3x3) (AVX-512; falls back to plain where unsupported).
// OneDnnBands is OneDnn on bands of output rows with the weights reordered per call: the same
// order of sums at any thread count, without keeping reordered weights or a whole reordered
// activation (the autoencoder's decoder; docs/autoencoder.md).
enum class ConvImpl { Auto, OneDnn, OneDnnPlain, Im2col, Winograd, OneDnnBands };

// While alive, Auto means `impl` for the convolutions this thread runs (UVIT_CONV_IMPL still wins).
// The FID Inception holds one for OneDnn (blocked): its sums then keep one order at every thread
// count, so its features keep their bits (docs/cli.md "Reproducibility"; cost in
// docs/benchmarks.md).
class ConvImplScope {
 public:
  explicit ConvImplScope(ConvImpl impl);
  ~ConvImplScope();
  ConvImplScope(const ConvImplScope&) = delete;
  ConvImplScope& operator=(const ConvImplScope&) = delete;

 private:
  ConvImpl prev_;
};

// y = conv(x, w) + b (b may be nullptr). Uses all OpenMP threads. Thread-safe (calls serialise).
// Primitives are cached per shape; reordered weights (OneDnn, Winograd) while w holds the same
// values.
void conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b, float* y,
            ConvImpl impl = ConvImpl::Auto);

// GroupNorm on x [B, C, HW] with G groups (C % G == 0) and per-channel affine w, b; swish
// (y * sigmoid(y)) applied after when `swish`. y may alias x. Statistics in double.
void group_norm(const float* x, const float* w, const float* b, float* y, int B, int C, int HW,
                int G, float eps, bool swish);

// Nearest-neighbour x2 upsampling: x [N, H, W] -> y [N, 2H, 2W] (N = batch * channels).
void upsample_nearest2x(const float* x, float* y, int N, int H, int W);

// Single-head attention over the HW positions of one image, channels as features:
// out[c, i] = sum_j softmax_j(scale * sum_d q[d, i] k[d, j]) v[c, j]; q, k, v, out are [C, HW].
// Query rows are processed in blocks so the score matrix stays bounded (HW = 4096 at 512 px).
void spatial_attention(const float* q, const float* k, const float* v, float* out, int C, int HW,
                       float scale);

// Pooling of x [N, H, W] -> y [N, Ho, Wo] (Backend::pool2d): max, or the average over in-image
// taps only (count_include_pad=False).
void pool2d(const float* x, float* y, int N, int H, int W, int k, int stride, int pad, bool max);
// y[n] = mean of plane n of x [N, HW], accumulated in double.
void global_avg_pool(const float* x, float* y, int N, int HW);

}  // namespace uvit::nn
