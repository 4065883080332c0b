// The CUDA backend's batched convolution (one strided-batched GEMM per chunk of images, per-image
// strides into wider tensors) and its tf32 precision (TF32 tensor-core GEMMs), against the CPU.
// Public API only, so this file also builds (and skips) without CUDA.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "rel_err.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using uvit::Backend;
using uvit::Conv2dShape;
using VecF = std::vector<float>;
using uvit::test::compare;
using uvit::test::randv;

struct Gpu {
  explicit Gpu(const std::string& prec) : be(uvit::make_backend("cuda", prec)), bufs(*be) {}
  float* up(const VecF& h) { return bufs.up(h); }
  VecF down(const float* p, size_t n) { return bufs.down(p, n); }
  std::unique_ptr<Backend> be;
  uvit::test::DeviceBuffers bufs;
};

using uvit_test::rel_err;

Conv2dShape conv3x3(int B, int Cin, int H, int W, int Cout) {
  Conv2dShape s;
  s.B = B, s.Cin = Cin, s.H = H, s.W = W, s.Cout = Cout, s.kh = s.kw = 3;
  s.pt = s.pl = s.pb = s.pr = 1;
  return s;
}

// Images read from and written to channel slices of wider tensors (x_stride, y_stride), through
// im2col and through the direct 1x1 GEMM; the CPU backend loops images, the GPU batches them.
TEST(CudaTf32, Conv2dImageStrides) {
  REQUIRE_CUDA();
  Gpu g("fp32");
  auto cpu = uvit::make_cpu_backend();
  for (const bool one : {false, true}) {
    Conv2dShape s = conv3x3(3, 5, 9, 7, 4);
    if (one) s.kh = s.kw = 1, s.pt = s.pl = s.pb = s.pr = 0;
    const long hw = long(s.H) * s.W, xs = 8 * hw, ys = 11 * hw;  // 8 and 11 channels per image
    s.x_stride = xs, s.y_stride = ys;
    const VecF x = randv(size_t(s.B) * xs, 1), w = randv(size_t(s.Cout) * s.Cin * s.kh * s.kw, 2);
    const VecF b = randv(s.Cout, 3), y0 = randv(size_t(s.B) * ys, 4);
    // Input channels 2..6 of each image, output channels 3..6: the rest of y must stay untouched.
    VecF ref = y0;
    cpu->conv2d(s, x.data() + 2 * hw, w.data(), b.data(), ref.data() + 3 * hw);
    float* dx = g.up(x);
    float* dy = g.up(y0);
    g.be->conv2d(s, dx + 2 * hw, g.up(w), g.up(b), dy + 3 * hw);
    compare(one ? "strided 1x1 conv" : "strided 3x3 conv", g.down(dy, y0.size()), ref, 1e-5);
  }
  Conv2dShape bad = conv3x3(2, 5, 9, 7, 4);
  bad.y_stride = 3;  // smaller than one image
  float* p = g.up(VecF(2 * 11 * 63, 0.f));
  EXPECT_THROW(g.be->conv2d(bad, p, p, nullptr, p), uvit::Error);
}

// Enough images that the im2col columns (9.4M floats each) take more than one 64M-float chunk.
TEST(CudaTf32, Conv2dChunkedBatch) {
  REQUIRE_CUDA();
  Gpu g("fp32");
  auto cpu = uvit::make_cpu_backend();
  const Conv2dShape s = conv3x3(8, 64, 128, 128, 16);
  const VecF x = randv(size_t(s.B) * s.in_stride(), 5),
             w = randv(size_t(16) * 64 * 9, 6, -.05f, .05f);
  const VecF b = randv(16, 7);
  VecF ref(size_t(s.B) * s.out_stride());
  cpu->conv2d(s, x.data(), w.data(), b.data(), ref.data());
  float* dy = g.up(VecF(ref.size(), 0.f));
  g.be->conv2d(s, g.up(x), g.up(w), g.up(b), dy);
  compare("conv 8 x 64x128x128 -> 16 (two chunks)", g.down(dy, ref.size()), ref, 1e-5);
}

// tf32 is really TF32: its error against the fp32 CPU is far above fp32's (~1e-7 relative) and
// within TF32's 10-bit mantissa (~1e-3 per product, partly averaging out over K).
TEST(CudaTf32, GemmAndConvUseTf32) {
  REQUIRE_CUDA();
  auto cpu = uvit::make_cpu_backend();
  Gpu f("fp32"), t("tf32");
  EXPECT_EQ(t.be->precision(), "tf32");
  EXPECT_EQ(t.be->act_bytes(), sizeof(float));
  const int M = 96, N = 80, K = 1024;
  const VecF a = randv(size_t(M) * K, 8), b = randv(size_t(K) * N, 9);
  VecF ref(size_t(M) * N);
  cpu->gemm(false, false, M, N, K, 1.f, a.data(), K, b.data(), N, 0.f, ref.data(), N);
  double err[2];
  int i = 0;
  for (Gpu* g : {&f, &t}) {
    float* c = g->up(VecF(ref.size(), 0.f));
    g->be->gemm(false, false, M, N, K, 1.f, g->up(a), K, g->up(b), N, 0.f, c, N);
    err[i++] = rel_err(g->down(c, ref.size()), ref);
  }
  std::printf("  gemm %dx%dx%d vs cpu: fp32 %.3g, tf32 %.3g\n", M, N, K, err[0], err[1]);
  EXPECT_LE(err[0], 1e-5);
  EXPECT_GT(err[1], 1e-5);
  EXPECT_LE(err[1], 5e-3);

  const Conv2dShape s = conv3x3(2, 64, 12, 10, 32);
  const VecF x = randv(size_t(s.B) * s.in_stride(), 10), w = randv(size_t(32) * 64 * 9, 11);
  VecF cref(size_t(s.B) * s.out_stride());
  cpu->conv2d(s, x.data(), w.data(), nullptr, cref.data());
  float* y = t.up(VecF(cref.size(), 0.f));
  t.be->conv2d(s, t.up(x), t.up(w), nullptr, y);
  const double ce = rel_err(t.down(y, cref.size()), cref);
  std::printf("  tf32 conv 3x3 64->32 vs cpu: %.3g\n", ce);
  // UVIT_CUDNN_ALGO=find may measure an fp32 algorithm fastest for so small a convolution.
  const char* algo = std::getenv("UVIT_CUDNN_ALGO");
  if (!algo || std::string(algo) != "find") EXPECT_GT(ce, 1e-5);
  EXPECT_LE(ce, 5e-3);
}

}  // namespace
