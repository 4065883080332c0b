// The CUDA backend's encoder kernels (conv2d, group_norm, upsample, spatial/causal attention,
// pools, channel bias+act) against the CPU backend on random inputs, fp32 only (~1e-5 of max|ref|:
// fp32 GEMMs without TF32). Every comparison prints its max error so one GPU run shows every
// deviation. Public API only, so this file also builds (and skips) without CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using uvit::Backend;
using uvit::Conv2dShape;
using VecF = std::vector<float>;
using uvit::test::compare;
using uvit::test::randv;

constexpr double kTol = 1e-5;

// The fp32 CUDA backend and the CPU reference; device buffers are freed at scope end.
class Dev {
 public:
  explicit Dev(const std::string& prec = "fp32")
      : gpu(uvit::make_backend("cuda", prec)), cpu(uvit::make_cpu_backend()), bufs_(*gpu) {}
  float* up(const VecF& h) { return bufs_.up(h); }
  VecF down(const float* p, size_t n) { return bufs_.down(p, n); }
  std::unique_ptr<Backend> gpu, cpu;

 private:
  uvit::test::DeviceBuffers bufs_;
};

std::string conv_tag(const Conv2dShape& s, bool bias) {
  return "conv2d B=" + std::to_string(s.B) + " " + std::to_string(s.Cin) + "x" +
         std::to_string(s.H) + "x" + std::to_string(s.W) + "->" + std::to_string(s.Cout) + " k" +
         std::to_string(s.kh) + "x" + std::to_string(s.kw) + " s" + std::to_string(s.sh) + "x" +
         std::to_string(s.sw) + " p" + std::to_string(s.pt) + "," + std::to_string(s.pl) + "," +
         std::to_string(s.pb) + "," + std::to_string(s.pr) + (bias ? " bias" : " nobias");
}

Conv2dShape conv(int B, int Cin, int H, int W, int Cout, int kh, int kw, int sh, int sw, int pt,
                 int pl, int pb, int pr) {
  Conv2dShape s;
  s.B = B, s.Cin = Cin, s.H = H, s.W = W, s.Cout = Cout, s.kh = kh, s.kw = kw, s.sh = sh, s.sw = sw;
  s.pt = pt, s.pl = pl, s.pb = pb, s.pr = pr;
  return s;
}

TEST(CudaConvnet, Conv2d) {
  REQUIRE_CUDA();
  Dev d;
  const Conv2dShape cases[] = {
      conv(2, 5, 13, 11, 7, 3, 3, 1, 1, 1, 1, 1, 1),    // 3x3 pad 1, odd sizes, batch 2
      conv(1, 64, 32, 32, 48, 3, 3, 1, 1, 1, 1, 1, 1),  // a long reduction (K = 576)
      conv(2, 6, 9, 7, 5, 1, 1, 1, 1, 0, 0, 0, 0),      // 1x1: the direct GEMM path
      conv(1, 3, 9, 9, 4, 1, 1, 2, 2, 0, 0, 0, 0),      // 1x1 stride 2: through im2col
      conv(2, 4, 16, 16, 6, 3, 3, 2, 2, 0, 0, 1, 1),    // the encoder's downsample (asym pad)
      conv(1, 3, 15, 13, 5, 3, 3, 2, 2, 0, 0, 1, 1),    // same, odd sizes
      conv(1, 4, 10, 12, 3, 5, 5, 1, 1, 2, 2, 2, 2),    // 5x5 pad 2
      conv(2, 8, 9, 9, 6, 1, 7, 1, 1, 0, 3, 0, 3),      // Inception 1x7
      conv(2, 8, 9, 9, 6, 7, 1, 1, 1, 3, 0, 3, 0),      // Inception 7x1
      conv(1, 3, 17, 17, 8, 3, 3, 2, 2, 0, 0, 0, 0),    // Inception stem: 3x3 stride 2 valid
  };
  unsigned seed = 100;
  for (const Conv2dShape& s : cases) {
    const size_t nx = size_t(s.B) * s.Cin * s.H * s.W;
    const size_t nw = size_t(s.Cout) * s.Cin * s.kh * s.kw;
    const size_t ny = size_t(s.B) * s.Cout * s.out_h() * s.out_w();
    const VecF x = randv(nx, ++seed), w = randv(nw, ++seed), b = randv(s.Cout, ++seed);
    const float* dx = d.up(x);
    const float* dw = d.up(w);
    const float* db = d.up(b);
    for (bool bias : {false, true}) {
      VecF ref(ny);
      d.cpu->conv2d(s, x.data(), w.data(), bias ? b.data() : nullptr, ref.data());
      float* dy = d.up(VecF(ny, 123.f));  // overwritten, not accumulated
      d.gpu->conv2d(s, dx, dw, bias ? db : nullptr, dy);
      compare(conv_tag(s, bias), d.down(dy, ny), ref, kTol);
    }
  }
}

TEST(CudaConvnet, Conv2dRejectsBf16AndBadGeometry) {
  REQUIRE_CUDA();
  Dev d("bf16");
  const Conv2dShape s = conv(1, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1);
  float* x = d.up(VecF(32, 1.f));
  float* w = d.up(VecF(54, 1.f));
  float* y = d.up(VecF(48, 0.f));
  EXPECT_THROW(d.gpu->conv2d(s, x, w, nullptr, y), uvit::Error);
  EXPECT_THROW(d.gpu->group_norm(x, w, w, y, 1, 2, 16, 1, 1e-6f, false), uvit::Error);

  Dev f;  // fp32: a kernel larger than the padded input is an error, not a launch
  float* x2 = f.up(VecF(32, 1.f));
  float* w2 = f.up(VecF(54, 1.f));
  float* y2 = f.up(VecF(48, 0.f));
  EXPECT_THROW(f.gpu->conv2d(conv(1, 2, 4, 4, 3, 7, 7, 1, 1, 0, 0, 0, 0), x2, w2, nullptr, y2),
               uvit::Error);
  EXPECT_THROW(f.gpu->conv2d(conv(1, 2, 4, 4, 3, 3, 3, 0, 1, 1, 1, 1, 1), x2, w2, nullptr, y2),
               uvit::Error);
}

TEST(CudaConvnet, GroupNorm) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int B, C, HW, G;
  };
  // Odd HW takes the scalar kernel, HW % 4 == 0 the packed one; the last slab is 65536 values.
  const Case cases[] = {{2, 32, 64, 8},    {1, 12, 49, 4},   {1, 6, 7, 3},
                        {2, 64, 1024, 32}, {1, 8, 16384, 2}, {3, 10, 9, 5}};
  unsigned seed = 200;
  for (const Case& c : cases) {
    const size_t n = size_t(c.B) * c.C * c.HW;
    // An offset mean (values in [2, 4]) checks the centring of the variance pass.
    const VecF x = randv(n, ++seed, 2.f, 4.f), w = randv(c.C, ++seed, 0.5f, 1.5f),
               b = randv(c.C, ++seed);
    const float* dw = d.up(w);
    const float* db = d.up(b);
    for (bool swish : {false, true}) {
      for (bool alias : {false, true}) {
        const std::string tag = "group_norm B=" + std::to_string(c.B) +
                                " C=" + std::to_string(c.C) + " HW=" + std::to_string(c.HW) +
                                " G=" + std::to_string(c.G) + (swish ? " swish" : "") +
                                (alias ? " y==x" : "");
        VecF ref(n);
        d.cpu->group_norm(x.data(), w.data(), b.data(), ref.data(), c.B, c.C, c.HW, c.G, 1e-6f,
                          swish);
        float* dx = d.up(x);
        float* dy = alias ? dx : d.up(VecF(n, 0.f));
        d.gpu->group_norm(dx, dw, db, dy, c.B, c.C, c.HW, c.G, 1e-6f, swish);
        compare(tag, d.down(dy, n), ref, kTol);
      }
    }
  }
}

TEST(CudaConvnet, UpsampleNearest2x) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int N, H, W;
  };
  unsigned seed = 300;
  for (const Case& c : {Case{3, 5, 7}, Case{2, 8, 8}, Case{1, 1, 1}}) {
    const size_t n = size_t(c.N) * c.H * c.W;
    const VecF x = randv(n, ++seed);
    VecF ref(4 * n);
    d.cpu->upsample_nearest2x(x.data(), ref.data(), c.N, c.H, c.W);
    float* dy = d.up(VecF(4 * n, 0.f));
    d.gpu->upsample_nearest2x(d.up(x), dy, c.N, c.H, c.W);
    compare(
        "upsample N=" + std::to_string(c.N) + " " + std::to_string(c.H) + "x" + std::to_string(c.W),
        d.down(dy, 4 * n), ref, 0);
  }
}

TEST(CudaConvnet, SpatialAttention) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int B, C, HW;
  };
  unsigned seed = 400;
  for (const Case& c : {Case{2, 8, 64}, Case{2, 8, 300}, Case{1, 32, 257}}) {
    const size_t n = size_t(c.B) * c.C * c.HW;
    // Scores of a few units so the softmax is neither flat nor one-hot.
    const VecF q = randv(n, ++seed, -2.f, 2.f), k = randv(n, ++seed, -2.f, 2.f),
               v = randv(n, ++seed);
    const float scale = 1.f / std::sqrt(float(c.C));
    VecF ref(n);
    d.cpu->spatial_attention(q.data(), k.data(), v.data(), ref.data(), c.B, c.C, c.HW, scale);
    float* out = d.up(VecF(n, 0.f));
    d.gpu->spatial_attention(d.up(q), d.up(k), d.up(v), out, c.B, c.C, c.HW, scale);
    compare("spatial_attention B=" + std::to_string(c.B) + " C=" + std::to_string(c.C) +
                " HW=" + std::to_string(c.HW),
            d.down(out, n), ref, kTol);
  }
}

TEST(CudaConvnet, Pool2d) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int N, H, W, k, stride, pad;
    bool max;
  };
  const Case cases[] = {
      {3, 9, 11, 3, 1, 1, false},  // Inception's branch pool (count_include_pad=False)
      {3, 9, 11, 3, 1, 1, true},  {3, 9, 11, 3, 2, 0, true},  // the stem's max pools
      {2, 8, 8, 3, 2, 0, true},   {2, 7, 10, 3, 2, 1, false}, {1, 5, 5, 2, 2, 0, false},
  };
  unsigned seed = 500;
  for (const Case& c : cases) {
    const int Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1;
    const int Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
    const size_t nx = size_t(c.N) * c.H * c.W, ny = size_t(c.N) * Ho * Wo;
    const VecF x = randv(nx, ++seed, -3.f, 1.f);  // mostly negative: padding must not win a max
    VecF ref(ny);
    d.cpu->pool2d(x.data(), ref.data(), 1, c.N, c.H, c.W, c.k, c.stride, c.pad, c.max);
    float* dy = d.up(VecF(ny, 0.f));
    d.gpu->pool2d(d.up(x), dy, 1, c.N, c.H, c.W, c.k, c.stride, c.pad, c.max);
    compare(std::string(c.max ? "max" : "avg") + "_pool N=" + std::to_string(c.N) + " " +
                std::to_string(c.H) + "x" + std::to_string(c.W) + " k" + std::to_string(c.k) +
                " s" + std::to_string(c.stride) + " p" + std::to_string(c.pad),
            d.down(dy, ny), ref, c.max ? 0 : 1e-6);
  }
}

TEST(CudaConvnet, GlobalAvgPool) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int N, HW;
  };
  unsigned seed = 600;
  for (const Case& c : {Case{5, 64}, Case{17, 1000}, Case{3, 1}, Case{2048, 64}}) {
    const size_t n = size_t(c.N) * c.HW;
    const VecF x = randv(n, ++seed, -1.f, 3.f);
    VecF ref(c.N);
    d.cpu->global_avg_pool(x.data(), ref.data(), c.N, c.HW);
    float* dy = d.up(VecF(c.N, 0.f));
    d.gpu->global_avg_pool(d.up(x), dy, c.N, c.HW);
    compare("global_avg_pool N=" + std::to_string(c.N) + " HW=" + std::to_string(c.HW),
            d.down(dy, c.N), ref, 1e-6);
  }
}

TEST(CudaConvnet, ChannelBiasAct) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int B, C, HW;
  };
  unsigned seed = 700;
  for (const Case& c : {Case{2, 5, 13}, Case{2, 6, 64}, Case{1, 3, 1}}) {
    const size_t n = size_t(c.B) * c.C * c.HW;
    const VecF x = randv(n, ++seed), b = randv(c.C, ++seed);
    const float* db = d.up(b);
    for (bool relu : {false, true}) {
      for (bool bias : {false, true}) {
        VecF ref = x;
        d.cpu->channel_bias_act(ref.data(), bias ? b.data() : nullptr, c.B, c.C, c.HW, relu);
        float* dx = d.up(x);
        d.gpu->channel_bias_act(dx, bias ? db : nullptr, c.B, c.C, c.HW, relu);
        // x + b in fp32 and a ReLU: exact
        compare("channel_bias_act B=" + std::to_string(c.B) + " C=" + std::to_string(c.C) + " HW=" +
                    std::to_string(c.HW) + (relu ? " relu" : "") + (bias ? " bias" : " nobias"),
                d.down(dx, n), ref, 0);
      }
    }
  }
}

TEST(CudaConvnet, CausalAttention) {
  REQUIRE_CUDA();
  Dev d;
  struct Case {
    int B, N, H, Dh;
  };
  // CLIP's shape (K, V staged in shared memory), small odd ones, a key count past one warp's
  // chunk, and one too large to stage (global reads).
  const Case cases[] = {{2, 77, 3, 64}, {1, 5, 2, 7}, {3, 33, 1, 33}, {1, 300, 2, 40}};
  unsigned seed = 800;
  for (const Case& c : cases) {
    const size_t D = size_t(c.H) * c.Dh, nqkv = size_t(c.B) * c.N * 3 * D,
                 no = size_t(c.B) * c.N * D;
    const VecF qkv = randv(nqkv, ++seed, -2.f, 2.f);
    const float scale = 1.f / std::sqrt(float(c.Dh));
    VecF ref(no);
    d.cpu->causal_attention_fwd(qkv.data(), ref.data(), c.B, c.N, c.H, c.Dh, scale);
    float* out = d.up(VecF(no, 0.f));
    d.gpu->causal_attention_fwd(d.up(qkv), out, c.B, c.N, c.H, c.Dh, scale);
    compare("causal_attention B=" + std::to_string(c.B) + " N=" + std::to_string(c.N) +
                " H=" + std::to_string(c.H) + " Dh=" + std::to_string(c.Dh),
            d.down(out, no), ref, kTol);
  }
}

}  // namespace

// Channel slices of wider tensors (per-image strides, as the batched Inception blocks use them):
// the GPU against the CPU backend on the whole wide buffers, so writes outside the slice show.
TEST(CudaConvnet, StridedPoolBiasActAndCopy2d) {
  REQUIRE_CUDA();
  Dev d;
  const float sentinel = 42.5f;
  const int B = 3, C = 5, Cx = 8, cx0 = 2, Cy = 9, cy0 = 3;
  struct PoolCase {
    int H, W, k, stride, pad;
    bool max;
  };
  unsigned seed = 900;
  for (const PoolCase& c : {PoolCase{9, 11, 3, 1, 1, false}, PoolCase{9, 11, 3, 2, 0, true},
                            PoolCase{8, 8, 3, 1, 1, true}}) {
    const int Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1;
    const int Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
    const long hw = long(c.H) * c.W, ohw = long(Ho) * Wo;
    const VecF x = randv(size_t(B) * Cx * hw, ++seed, -3.f, 1.f);
    VecF ref(size_t(B) * Cy * ohw, sentinel);
    d.cpu->pool2d(x.data() + cx0 * hw, ref.data() + cy0 * ohw, B, C, c.H, c.W, c.k, c.stride, c.pad,
                  c.max, Cx * hw, Cy * ohw);
    float* dy = d.up(VecF(ref.size(), sentinel));
    d.gpu->pool2d(d.up(x) + cx0 * hw, dy + cy0 * ohw, B, C, c.H, c.W, c.k, c.stride, c.pad, c.max,
                  Cx * hw, Cy * ohw);
    compare(uvit::cat(c.max ? "max" : "avg", "_pool strided B=", B, " C=", C, " ", c.H, "x", c.W,
                      " k", c.k, " s", c.stride, " p", c.pad),
            d.down(dy, ref.size()), ref, c.max ? 0 : 1e-6);
  }
  // channel_bias_act: packs of 4 (HW and stride multiples of 4), an odd HW, and a stride that is
  // not a multiple of 4 with HW that is.
  struct BiasCase {
    int HW;
    long stride;
  };
  for (const BiasCase& c : {BiasCase{12, 8 * 12}, BiasCase{13, 8 * 13}, BiasCase{12, 8 * 12 + 2}}) {
    const size_t n = size_t(B) * c.stride;
    const VecF b = randv(C, ++seed);
    VecF x = randv(n, ++seed);
    const float* db = d.up(b);
    for (bool relu : {false, true}) {
      VecF ref = x;
      d.cpu->channel_bias_act(ref.data() + cx0 * c.HW, b.data(), B, C, c.HW, relu, c.stride);
      float* dx = d.up(x);
      d.gpu->channel_bias_act(dx + cx0 * c.HW, db, B, C, c.HW, relu, c.stride);
      compare(uvit::cat("channel_bias_act strided B=", B, " C=", C, " HW=", c.HW,
                        " stride=", c.stride, relu ? " relu" : ""),
              d.down(dx, n), ref, 0);
    }
  }
  // copy_2d: channels [0, 2) of 3 images [4, 5] into a [3, 6, 5] tensor (one cudaMemcpy2DAsync).
  const VecF src = randv(3 * 4 * 5, ++seed);
  VecF ref(3 * 6 * 5, sentinel);
  d.cpu->copy_2d(ref.data(), 30, src.data(), 20, 3, 10);
  float* dd = d.up(VecF(ref.size(), sentinel));
  d.gpu->copy_2d(dd, 30, d.up(src), 20, 3, 10);
  compare("copy_2d 3 rows of 10, ld 30 <- 20", d.down(dd, ref.size()), ref, 0);
}

namespace {

// A resize case: planes [H, W] to [oh, ow], then * scale + shift.
struct ResizeCase {
  int planes, H, W, oh, ow;
  float scale, shift;
};

// The device's Backend::resize_bilinear (TF1's legacy one when `tf1`) against the CPU's on `x`,
// within `tol` (compare's measure).
void compare_resize(Dev& d, const ResizeCase& c, const VecF& x, bool tf1, double tol) {
  const size_t ny = size_t(c.planes) * c.oh * c.ow;
  VecF ref(ny);
  d.cpu->resize_bilinear(x.data(), ref.data(), c.planes, c.H, c.W, c.oh, c.ow, c.scale, c.shift,
                         tf1);
  float* dy = d.up(VecF(ny, 0.f));
  d.gpu->resize_bilinear(d.up(x), dy, c.planes, c.H, c.W, c.oh, c.ow, c.scale, c.shift, tf1);
  compare(uvit::cat("resize_bilinear", tf1 ? " tf1 " : " ", c.planes, "x", c.H, "x", c.W, " -> ",
                    c.oh, "x", c.ow, " *", c.scale, " +", c.shift),
          d.down(dy, ny), ref, tol);
}

}  // namespace

// The device resize (+ 2x - 1) against nn::resize_bilinear on the CPU: the same fp32 formula, up
// to FMA contraction (~1 ulp).
TEST(CudaConvnet, ResizeBilinear) {
  REQUIRE_CUDA();
  Dev d;
  const ResizeCase cases[] = {
      {6, 32, 32, 299, 299, 2.f, -1.f},    // CIFAR-10 up to the Inception's input
      {3, 320, 300, 299, 299, 2.f, -1.f},  // down
      {3, 299, 299, 299, 299, 1.f, 0.f},   // identity
      {2, 1, 1, 5, 7, 1.f, 0.f},           // a single pixel
      {4, 40, 30, 299, 299, 2.f, -1.f},
  };
  unsigned seed = 950;
  for (const ResizeCase& c : cases)
    compare_resize(d, c, randv(size_t(c.planes) * c.H * c.W, ++seed, 0.f, 1.f), false, 1e-6);
}

// The TF1 legacy resize (+ (y - 128) / 128, `--inception-input tf`) against the CPU's
// nn::resize_bilinear_tf1: both round every operation (no FMA), so the values are the same bits.
TEST(CudaConvnet, ResizeBilinearTf1) {
  REQUIRE_CUDA();
  Dev d;
  const ResizeCase cases[] = {
      {6, 256, 256, 299, 299, 0.0078125f, -1.f},  // ImageNet 256 up to the Inception's input
      {3, 32, 32, 299, 299, 0.0078125f, -1.f},
      {3, 401, 350, 299, 299, 0.0078125f, -1.f},  // down
      {3, 299, 299, 299, 299, 1.f, 0.f},          // identity
      {2, 3, 3, 5, 5, 1.f, 0.f},
      {2, 1, 1, 5, 7, 1.f, 0.f},  // a single pixel
  };
  unsigned seed = 990;
  for (const ResizeCase& c : cases) {
    VecF x = randv(size_t(c.planes) * c.H * c.W, ++seed, 0.f, 255.f);
    for (float& v : x) v = std::floor(v);  // uint8 values, as the graph gets them
    compare_resize(d, c, x, true, 0);
  }
}
