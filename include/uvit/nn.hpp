// CPU inference layers on NCHW fp32 tensors, shared by the autoencoder (SPEC 13) and the FID
// Inception network (SPEC 17). The U-ViT itself runs through the Backend interface instead.
#pragma once
#include <cstddef>

namespace uvit::nn {

// A 2-D convolution's geometry: input [B, Cin, H, W], weight [Cout, Cin, kh, kw], output
// [B, Cout, out_h(), out_w()]; strides sh, sw; zero padding top/left/bottom/right (asymmetric
// padding is what the autoencoder's stride-2 downsampling needs).
struct Conv2dShape {
  int B = 1, Cin = 0, H = 0, W = 0, Cout = 0, kh = 1, kw = 1, sh = 1, sw = 1;
  int pt = 0, pl = 0, pb = 0, pr = 0;
  int out_h() const { return (H + pt + pb - kh) / sh + 1; }
  int out_w() const { return (W + pl + pr - kw) / sw + 1; }
};

// Which implementation runs a convolution. Auto (measured fastest, docs/autoencoder.md): a GEMM for
// unpadded stride-1 1x1 kernels, else oneDNN's primitive on plain nchw. UVIT_CONV_IMPL=
// im2col|plain|blocked|winograd forces one. OneDnn lets oneDNN pick blocked layouts (reorders in
// and out); Winograd is oneDNN's F(4x4,3x3) (AVX-512; falls back to plain where unsupported).
enum class ConvImpl { Auto, OneDnn, OneDnnPlain, Im2col, Winograd };

// y = conv(x, w) + b (b may be nullptr). Uses all OpenMP threads. Thread-safe (calls serialise).
// Primitives are cached per shape; reordered weights (OneDnn only) while w holds the same values.
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

}  // namespace uvit::nn
