// `--inception-input tf`: TF 1.x's legacy bilinear resize by hand and against the PyTorch twin of
// the formulas (tests/reference/inception_tf_input.py), on the CPU and the simulated device, the
// whole FID Inception through the tf pipeline against the twin, and the statistics record.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "temp_dir.hpp"
#include "torch_fixtures.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

// The twin's fixtures, made once per build directory.
const std::string& fix() {
  static const std::string dir =
      uvit_test::build_dir_fixtures("fid_tf", "inception_tf_input.py", "inception.pth");
  return dir;
}

}  // namespace

TEST(TfResize, ByHand) {
  // 3x3 -> 5x5: scale 0.6, src = d * 0.6 = 0, .6, 1.2, 1.8, 2.4 -> (lower, upper, lerp) (0,0,0)
  // (0,1,.6) (1,2,.2) (1,2,.8) (2,2,.4). The image 30 r + 10 c is linear, so the output is it at
  // r, c in {0, .6, 1.2, 1.8, 2} (the last clamped to the edge row).
  const float x[9] = {0, 10, 20, 30, 40, 50, 60, 70, 80};
  float y[25];
  nn::resize_bilinear_tf1(x, y, 1, 3, 3, 5, 5);
  const double pos[5] = {0, .6, 1.2, 1.8, 2};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(y[i * 5 + j], 30 * pos[i] + 10 * pos[j], 1e-5);
  // 2x2 -> 4x4: src 0, .5, 1, 1.5 -> rows a, (a + b) / 2, b, b (torch's half-pixel resize gives
  // a, .75a + .25b, .25a + .75b, b instead); exact in fp32.
  const float q[4] = {0, 4, 8, 12};
  float r[16];
  nn::resize_bilinear_tf1(q, r, 1, 2, 2, 4, 4);
  const float want[16] = {0, 2, 4, 4, 4, 6, 8, 8, 8, 10, 12, 12, 8, 10, 12, 12};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(r[i], want[i]) << i;
  // Same size: the identity.
  float z[9];
  nn::resize_bilinear_tf1(x, z, 1, 3, 3, 3, 3);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(z[i], x[i]);
}

// Bit-exact against the twin at the sizes that matter (ImageNet 256, 64, CIFAR 32 up to 299; a
// downscale; the identity), through the CPU and the simulated device's Backend entry point, and
// with the graph's (y - 128) * 0.0078125 as the affine; the torch resize is far from it.
TEST(TfResize, BitExactAgainstTwin) {
  auto cpu = make_cpu_backend();
  auto sim = make_backend("simdev");
  for (const char* k : {"256", "64", "32", "401x350", "299"}) {
    const Array in = load_npy(fix() + "/resize_" + k + "_in.npy");
    const std::vector<float> ref = load_npy(fix() + "/resize_" + k + "_out.npy").to_f32();
    const int P = int(in.shape[0]), H = int(in.shape[1]), W = int(in.shape[2]);
    std::vector<float> y(ref.size()), d(ref.size()), a(ref.size());
    nn::resize_bilinear_tf1(in.as<float>(), y.data(), P, H, W, 299, 299);
    EXPECT_EQ(y, ref) << k;
    cpu->resize_bilinear(in.as<float>(), a.data(), P, H, W, 299, 299, 0.0078125f, -1.f, true);
    for (size_t i = 0; i < ref.size(); ++i)
      ASSERT_EQ(a[i], (ref[i] - 128.f) * 0.0078125f) << k << " at " << i;
    float* dx = sim->alloc(in.numel());
    float* dy = sim->alloc(ref.size());
    sim->upload(dx, in.as<float>(), in.numel() * sizeof(float));
    sim->resize_bilinear(dx, dy, P, H, W, 299, 299, 1.f, 0.f, true);
    sim->download(d.data(), dy, d.size() * sizeof(float));
    sim->free_bytes(dx), sim->free_bytes(dy);
    EXPECT_EQ(d, ref) << k;
    if (std::string(k) != "299") {  // pytorch-fid's resize samples other positions
      std::vector<float> t(ref.size());
      nn::resize_bilinear(in.as<float>(), t.data(), P, H, W, 299, 299);
      EXPECT_GT(uvit_test::rel_err(t, ref), 1e-2) << k;
    }
  }
}

// The whole network through the tf pipeline (uint8 -> [0, 255] -> TF1 resize -> (y - 128) / 128)
// against the twin's float64 network on the twin's fp32 input; the pytorch-fid pipeline is not.
TEST(TfInception, FeaturesMatchTwin) {
  FidInception net = FidInception::load(fix() + "/inception.pth");
  EXPECT_EQ(net.input(), InceptionInput::PytorchFid);
  for (const char* k : {"a", "b", "c"}) {
    const Array im = load_npy(fix() + "/images_" + k + ".npy");
    const int B = int(im.shape[0]), H = int(im.shape[1]), W = int(im.shape[2]);
    std::vector<float> f(size_t(B) * 2048), l(size_t(B) * 1008), s(size_t(B) * 2023);
    net.set_input(InceptionInput::Tf);
    net.forward_u8(im.as<uint8_t>(), B, H, W, 3, f.data(), l.data(), s.data());
    const auto ref = load_npy(fix() + "/pool3_" + k + ".npy").to_f32();
    EXPECT_LT(uvit_test::rel_err(f, ref), 1e-4) << k;
    EXPECT_LT(uvit_test::rel_err(l, load_npy(fix() + "/logits_" + k + ".npy").to_f32()), 1e-4) << k;
    EXPECT_LT(uvit_test::rel_err(s, load_npy(fix() + "/spatial_" + k + ".npy").to_f32()), 1e-4)
        << k;
    net.set_input(InceptionInput::PytorchFid);
    std::vector<float> p(f.size());
    net.forward_u8(im.as<uint8_t>(), B, H, W, 3, p.data());
    // Even at 299x299 (no resize) the scalings differ: 2 v/255 - 1 against (v - 128)/128.
    EXPECT_GT(uvit_test::rel_err(p, ref), 1e-3) << k;
  }
}

TEST(TfInception, InputNamesAndStatsRecord) {
  EXPECT_EQ(parse_inception_input("tf", "x"), InceptionInput::Tf);
  EXPECT_EQ(parse_inception_input("pytorch-fid", "x"), InceptionInput::PytorchFid);
  EXPECT_STREQ(inception_input_name(InceptionInput::Tf), "tf");
  try {
    parse_inception_input("adm", "--inception-input");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(),
                 "--inception-input: unknown Inception input pipeline 'adm' (pytorch-fid or tf)");
  }
  const uvit_test::TempDir tmp("tfstats");
  FidStats s;
  s.dims = 2, s.mu = {1, 2}, s.sigma = {1, 0, 0, 1};
  save_fid_stats(tmp / "pt.npz", s);
  save_fid_stats(tmp / "tf.npz", s, nullptr, InceptionInput::Tf);
  EXPECT_FALSE(stats_inception_input(tmp / "pt.npz").has_value());  // as pytorch-fid's
  EXPECT_FALSE(npz_has(tmp / "pt.npz", "inception_input"));
  EXPECT_EQ(stats_inception_input(tmp / "tf.npz"), InceptionInput::Tf);
  EXPECT_EQ(load_fid_stats(tmp / "tf.npz").mu, s.mu);
}
