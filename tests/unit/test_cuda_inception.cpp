// The FID Inception on the CUDA backend (fp32; batched in chunks of 32 images, resized on the
// device) against the CPU backend (one image at a time, resized by nn::resize_bilinear), random
// weights in the pytorch-fid layout: pool3 features, logits and sFID's spatial features to 1e-4 of
// max|ref|. Skipped, saying so, without a GPU.
#include <gtest/gtest.h>

#include <array>
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

// The tf input pipeline (--inception-input tf: TF1's resize of [0, 255] on the device) against the
// CPU backend's, 256x256 (ImageNet) and a batch of 33 32x32 images (two device chunks).
TEST(CudaInception, TfInputMatchesCpuBackend) {
  REQUIRE_CUDA();
  const NamedArrays sd = FidInception::random_state_dict(7);
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "fp32");
  FidInception ref(sd, *cpu, "random"), net(sd, *gpu, "random");
  ref.set_input(InceptionInput::Tf), net.set_input(InceptionInput::Tf);
  std::mt19937 g(12);
  for (const auto [B, H, W] : {std::array<int, 3>{1, 256, 256}, std::array<int, 3>{33, 32, 32}}) {
    std::vector<uint8_t> im(size_t(B) * H * W * 3);
    for (auto& v : im) v = uint8_t(g() % 256);
    std::vector<float> f(size_t(B) * FidInception::kDims), rf(f.size());
    std::vector<float> s(size_t(B) * FidInception::kSpatialDims), rs(s.size());
    ref.forward_u8(im.data(), B, H, W, 3, rf.data(), nullptr, rs.data());
    net.forward_u8(im.data(), B, H, W, 3, f.data(), nullptr, s.data());
    const std::string tag = cat("inception tf ", B, "x", H, "x", W);
    test::compare(tag + " pool3", f, rf, 1e-4);
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
