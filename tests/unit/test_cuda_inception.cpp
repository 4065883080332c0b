// The FID Inception on the CUDA backend (fp32; batched in chunks of 32 images, resized on the
// device) against the CPU backend (one image at a time, resized by nn::resize_bilinear), random
// weights in the pytorch-fid layout: pool3 features, logits and sFID's spatial features to 1e-4 of
// max|ref|. Skipped, saying so, without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/inception.hpp"

using namespace uvit;

TEST(CudaInception, MatchesCpuBackend) {
  REQUIRE_CUDA();
  const NamedArrays sd = FidInception::random_state_dict(7);
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "fp32");
  const FidInception ref(sd, *cpu, "random"), net(sd, *gpu, "random");
  std::mt19937 g(11);
  // RGB 32x32 (CIFAR, upsampled), RGB 320x300 (downsampled), gray 64x48, and 37 images: more
  // than one device chunk (32 images), the last one partial.
  struct Case {
    int B, H, W, C;
  };
  for (const Case& c :
       {Case{2, 32, 32, 3}, Case{1, 320, 300, 3}, Case{1, 64, 48, 1}, Case{37, 40, 30, 3}}) {
    std::vector<uint8_t> im(size_t(c.B) * c.H * c.W * c.C);
    for (auto& v : im) v = uint8_t(g() % 256);
    std::vector<float> f(size_t(c.B) * FidInception::kDims),
        l(size_t(c.B) * FidInception::kClasses);
    std::vector<float> rf(f.size()), rl(l.size()), s(size_t(c.B) * FidInception::kSpatialDims),
        rs(s.size());
    ref.forward_u8(im.data(), c.B, c.H, c.W, c.C, rf.data(), rl.data(), rs.data());
    net.forward_u8(im.data(), c.B, c.H, c.W, c.C, f.data(), l.data(), s.data());
    const std::string tag = cat("inception ", c.B, "x", c.H, "x", c.W, "x", c.C);
    test::compare(tag + " pool3", f, rf, 1e-4);
    test::compare(tag + " logits", l, rl, 1e-4);
    test::compare(tag + " spatial", s, rs, 1e-4);
  }
}

TEST(CudaInception, RefusesBf16Backend) {
  REQUIRE_CUDA();
  auto be = make_backend("cuda", "bf16");
  try {
    FidInception net(FidInception::random_state_dict(1), *be, "random");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp32"), std::string::npos) << e.what();
  }
}
