// The CPU backend's weight gradient C += A^T B (Backend::gemm_wgrad) in its fixed tasks
// (docs/kernels.md, "Weight gradients in fixed tasks"): the same bits at any thread count, at the
// training shapes of fmnist_svg_tiny (thin: few outputs over batch x 784 rows, which oneDNN's
// threaded matmul split among the threads from 2 threads on) and of U-ViT-S/2 and DiT-S/2 (wide:
// split at 8 and 16 threads once the rows reach 8192), in fp32 and bf16; and the product itself, to
// a double-precision sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "thread_counts.hpp"
#include "uvit/backend.hpp"

namespace {

using uvit::Backend;
using uvit_test::at_thread_counts;
using uvit_test::expect_same_bits;
using VecF = std::vector<float>;

VecF randv(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  VecF v(n);
  for (auto& x : v) x = u(g);
  return v;
}

struct Shape {
  int M, N, K, ldc;
};

// M outputs of the layer, N inputs, K rows (batch x tokens); ldc > N: U-ViT's skip_linear halves.
const std::vector<Shape>& shapes() {
  static const std::vector<Shape> s = {
      // fmnist_svg_tiny at batch 8 (6272 rows) and 32 (25088): final layer, patch embedding
      // (in_channels 1), qkv, MLP, the attention projection.
      {2, 64, 6272, 64},
      {64, 1, 6272, 1},
      {64, 64, 6272, 64},
      {192, 64, 6272, 64},
      {256, 64, 6272, 64},
      {64, 256, 6272, 256},
      {128, 128, 6272, 128},
      {2, 64, 25088, 64},
      {64, 64, 25088, 64},
      // U-ViT-S/2 (cifar10_uvit_small) at batch 8 (2056 rows) and 64 (16448 rows).
      {12, 512, 2056, 512},
      {512, 12, 2048, 12},
      {512, 512, 2056, 1024},
      {2048, 512, 2056, 512},
      {512, 2048, 2056, 2048},
      {512, 512, 16448, 512},
      // DiT-S/2 at batch 4 (1024 rows) and 32 (8192 rows).
      {1152, 384, 1024, 384},
      {384, 384, 8192, 384},
      // Panels (M and N over 512): 9 x 2 tiles, K in 4 steps of 4608 rows (the last 2560).
      {1152, 640, 16384, 640},
      // Panels in one step, 5 x 2 tiles, the last of each shorter; ldc > N.
      {600, 1000, 2056, 1100},
      // Tiles narrower than the operands (not panels: N is one tile), copied 4096 rows at a time.
      {1152, 384, 8192, 384},
  };
  return s;
}

// gemm_wgrad of each shape at 1, 2, 3, 4, 5, 7, 8 and 16 threads, the results compared to the
// bit; where the product is small enough, also to C0 + A^T B summed in double from the act values.
void check(Backend& be, const std::string& prec, double rtol) {
  for (const Shape& s : shapes()) {
    const std::string what = prec + " M " + std::to_string(s.M) + " N " + std::to_string(s.N) +
                             " K " + std::to_string(s.K) + ", ";
    const size_t na = size_t(s.K) * s.M, nb = size_t(s.K) * s.N;
    const VecF ah = randv(na, 1), bh = randv(nb, 2), c0 = randv(size_t(s.M) * s.ldc, 3);
    uvit::DeviceBuffer a(be, na * 4), b(be, nb * 4);
    be.to_act(ah.data(), a.f32(), na);
    be.to_act(bh.data(), b.f32(), nb);
    const std::vector<VecF> out = at_thread_counts({1, 2, 3, 4, 5, 7, 8, 16}, [&] {
      VecF c = c0;
      be.gemm_wgrad(s.M, s.N, s.K, a.f32(), s.M, b.f32(), s.N, c.data(), s.ldc);
      return c;
    });
    expect_same_bits(out, what);
    if (double(s.M) * s.N * s.K > 3e8) continue;
    VecF av(na), bv(nb);  // what the product reads (bf16-rounded in bf16 mode)
    be.from_act(a.f32(), av.data(), na);
    be.from_act(b.f32(), bv.data(), nb);
    for (int m = 0; m < s.M; ++m)
      for (int n = 0; n < s.N; ++n) {
        double sum = 0, mag = 0;
        for (int k = 0; k < s.K; ++k) {
          const double p = double(av[size_t(k) * s.M + m]) * bv[size_t(k) * s.N + n];
          sum += p;
          mag += std::fabs(p);
        }
        const size_t i = size_t(m) * s.ldc + n;
        const double want = c0[i] + sum;
        ASSERT_NEAR(out[0][i], want, rtol * (mag + std::fabs(c0[i])) + 1e-6)
            << what << "C[" << m << ", " << n << "]";
      }
    for (int m = 0; m < s.M; ++m)  // the columns between ldc's rows untouched
      for (int n = s.N; n < s.ldc; ++n)
        ASSERT_EQ(out[0][size_t(m) * s.ldc + n], c0[size_t(m) * s.ldc + n]) << what;
  }
}

TEST(GemmWgrad, SameBitsAtAnyThreadCount) {
  auto be = uvit::make_backend("cpu", "fp32");
  check(*be, "fp32", 1e-6);
}

TEST(GemmWgrad, Bf16SameBitsAtAnyThreadCount) {
  if (!uvit::cpu_has_bf16()) GTEST_SKIP() << "no bf16 units on this CPU";
  auto be = uvit::make_backend("cpu", "bf16");
  check(*be, "bf16", 1e-6);  // bf16 inputs, products summed in fp32
}

// The decomposition is the shape's alone; the tasks cover K once, each chunk non-empty.
TEST(GemmWgrad, SplitCoversTheRows) {
  for (const Shape& s : shapes()) {
    const uvit::WgradSplit w = uvit::wgrad_split(s.M, s.N, s.K);
    EXPECT_GE(w.chunks, 1);
    EXPECT_LT(size_t(w.chunks - 1) * w.rows, size_t(s.K));
    EXPECT_GE(size_t(w.chunks) * w.rows, size_t(s.K));
    EXPECT_EQ(w.tiles_m, (s.M + w.tile_m - 1) / w.tile_m);
    EXPECT_EQ(w.tiles_n, (s.N + w.tile_n - 1) / w.tile_n);
    EXPECT_EQ(w.panels, s.M > uvit::kWgradTile && s.N > uvit::kWgradTile);
    if (w.panels) EXPECT_EQ(w.chunks, 1);
    EXPECT_GE(w.step, std::min(s.K, uvit::kWgradRows));
    EXPECT_LE(w.step, s.K);
  }
  EXPECT_EQ(uvit::wgrad_split(2, 64, 6272).chunks, 6);  // 1024-row chunks: 6 of 1046 rows
  EXPECT_EQ(uvit::wgrad_split(2, 64, 6272).rows, 1046);
  EXPECT_EQ(uvit::wgrad_split(2048, 512, 2056).chunks, 2);    // 4 tiles x 2 chunks
  // DiT-XL/2's MLP: 36 x 3 panel tiles, steps of 1280 rows.
  const uvit::WgradSplit xl = uvit::wgrad_split(4608, 1152, 65536);
  EXPECT_TRUE(xl.panels);
  EXPECT_EQ(xl.tiles_m * xl.tiles_n, 108);
  EXPECT_EQ(xl.step, 1280);
  EXPECT_EQ(uvit::wgrad_split(1152, 640, 16384).step, 4608);
}

}  // namespace
