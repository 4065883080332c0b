// The batched FID Inception path on the CPU: the backend ops with per-image strides (channel
// slices of wider tensors) against per-image dense calls, exactly, and the network run in chunks
// of 3 images (UVIT_INCEPTION_BATCH) against one image at a time.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/image.hpp"
#include "uvit/inception.hpp"

using namespace uvit;

namespace {

using VecF = std::vector<float>;

using uvit::test::compare;
using uvit::test::randv;

constexpr float kSentinel = 42.5f;  // what a strided write must leave alone

// Sets (or unsets, nullptr) an environment variable for a scope, restoring it after.
class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      setenv(name, value, 1);
    else
      unsetenv(name);
  }
  ~EnvGuard() {
    if (old_)
      setenv(name_.c_str(), old_->c_str(), 1);
    else
      unsetenv(name_.c_str());
  }

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// Images b of a [B, Cw, hw] tensor, channels [c0, c0 + C): the dense [B, C, hw] slice.
VecF slice(const VecF& wide, int B, int Cw, int c0, int C, long hw) {
  VecF s(size_t(B) * C * hw);
  for (int b = 0; b < B; ++b)
    for (long i = 0; i < C * hw; ++i) s[b * C * hw + i] = wide[(b * Cw + c0) * hw + i];
  return s;
}

// Every element of wide outside channels [c0, c0 + C) still holds the sentinel.
void expect_untouched(const VecF& wide, int B, int Cw, int c0, int C, long hw,
                      const std::string& what) {
  size_t bad = 0;
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < Cw; ++c)
      if (c < c0 || c >= c0 + C)
        for (long i = 0; i < hw; ++i) bad += wide[(size_t(b) * Cw + c) * hw + i] != kSentinel;
  EXPECT_EQ(bad, 0u) << what << ": writes outside the channel slice";
}

}  // namespace

TEST(ConvnetStrided, Pool2dMatchesPerImageCalls) {
  auto be = make_cpu_backend();
  struct Case {
    int H, W, k, stride, pad;
    bool max;
  };
  // The Inception's branch avg pool, its max pools (stride 2, and stride 1 padded in Mixed_7c).
  const Case cases[] = {{9, 11, 3, 1, 1, false}, {9, 11, 3, 2, 0, true}, {8, 7, 3, 1, 1, true}};
  const int B = 3, C = 4, Cx = 7, cx0 = 2, Cy = 9, cy0 = 3;
  unsigned seed = 10;
  for (const Case& c : cases) {
    const int Ho = (c.H + 2 * c.pad - c.k) / c.stride + 1,
              Wo = (c.W + 2 * c.pad - c.k) / c.stride + 1;
    const long hw = long(c.H) * c.W, ohw = long(Ho) * Wo;
    const VecF x = randv(size_t(B) * Cx * hw, ++seed, -3.f, 1.f);
    VecF y(size_t(B) * Cy * ohw, kSentinel);
    be->pool2d(x.data() + cx0 * hw, y.data() + cy0 * ohw, B, C, c.H, c.W, c.k, c.stride, c.pad,
               c.max, Cx * hw, Cy * ohw);
    // The reference: each image's dense slice on its own.
    const VecF xs = slice(x, B, Cx, cx0, C, hw);
    VecF ref(size_t(B) * C * ohw);
    for (int b = 0; b < B; ++b)
      be->pool2d(xs.data() + b * C * hw, ref.data() + b * C * ohw, 1, C, c.H, c.W, c.k, c.stride,
                 c.pad, c.max);
    const std::string what = cat(c.max ? "max" : "avg", " pool k", c.k, " s", c.stride);
    EXPECT_EQ(slice(y, B, Cy, cy0, C, ohw), ref) << what;
    expect_untouched(y, B, Cy, cy0, C, ohw, what);
    // Dense images in one call (strides 0) are the same as well.
    VecF dense(ref.size());
    be->pool2d(xs.data(), dense.data(), B, C, c.H, c.W, c.k, c.stride, c.pad, c.max);
    EXPECT_EQ(dense, ref) << what << " dense";
  }
  float v = 0;
  EXPECT_THROW(be->pool2d(&v, &v, 1, 1, 1, 1, 1, 0, 0, true), Error);  // stride 0
}

TEST(ConvnetStrided, ChannelBiasActMatchesPerImageCalls) {
  auto be = make_cpu_backend();
  const int B = 3, C = 5, Cw = 8, c0 = 2;
  const long hw = 13;
  const VecF bias = randv(C, 21);
  for (bool relu : {false, true}) {
    VecF x(size_t(B) * Cw * hw, kSentinel);
    const VecF vals = randv(size_t(B) * C * hw, 22);
    for (int b = 0; b < B; ++b)
      for (long i = 0; i < C * hw; ++i) x[(b * Cw + c0) * hw + i] = vals[b * C * hw + i];
    be->channel_bias_act(x.data() + c0 * hw, bias.data(), B, C, int(hw), relu, Cw * hw);
    VecF ref = vals;
    for (int b = 0; b < B; ++b)
      be->channel_bias_act(ref.data() + b * C * hw, bias.data(), 1, C, int(hw), relu);
    // By hand for one element: image 1, channel 3, position 4.
    const float v = vals[(1 * C + 3) * hw + 4] + bias[3];
    EXPECT_EQ(ref[(1 * C + 3) * hw + 4], relu ? std::max(v, 0.f) : v);
    EXPECT_EQ(slice(x, B, Cw, c0, C, hw), ref) << (relu ? "relu" : "no relu");
    expect_untouched(x, B, Cw, c0, C, hw, "channel_bias_act");
  }
}

TEST(ConvnetStrided, Copy2dCopiesRowsOfStridedImages) {
  auto be = make_cpu_backend();
  // Channels [0, 2) of 3 images [4, 5] into channels [0, 2) of a [3, 6, 5] tensor.
  const VecF src = randv(3 * 4 * 5, 31);
  VecF dst(3 * 6 * 5, kSentinel);
  be->copy_2d(dst.data(), 6 * 5, src.data(), 4 * 5, 3, 2 * 5);
  EXPECT_EQ(slice(dst, 3, 6, 0, 2, 5), slice(src, 3, 4, 0, 2, 5));
  expect_untouched(dst, 3, 6, 0, 2, 5, "copy_2d");
}

TEST(ConvnetStrided, Conv2dMatchesPerImageCalls) {
  auto be = make_cpu_backend();
  // A 1x3 conv (Mixed_7b's branch3x3_2a shape, small) reading channels [1, 4) of [B, 6, 5, 7] and
  // writing channels [2, 6) of [B, 9, 5, 7]; and a strided 3x3 one.
  struct Case {
    int kh, kw, s, ph, pw;
  };
  const int B = 3, Cin = 3, Cx = 6, cx0 = 1, Cout = 4, Cy = 9, cy0 = 2, H = 5, W = 7;
  unsigned seed = 40;
  for (const Case& c : {Case{1, 3, 1, 0, 1}, Case{3, 3, 2, 0, 0}}) {
    Conv2dShape s;
    s.B = B, s.Cin = Cin, s.H = H, s.W = W, s.Cout = Cout, s.kh = c.kh, s.kw = c.kw;
    s.sh = s.sw = c.s, s.pt = s.pb = c.ph, s.pl = s.pr = c.pw;
    const long hw = long(H) * W, ohw = long(s.out_h()) * s.out_w();
    s.x_stride = Cx * hw, s.y_stride = Cy * ohw;
    const VecF x = randv(size_t(B) * Cx * hw, ++seed),
               w = randv(size_t(Cout) * Cin * c.kh * c.kw, ++seed), b = randv(Cout, ++seed);
    VecF y(size_t(B) * Cy * ohw, kSentinel);
    be->conv2d(s, x.data() + cx0 * hw, w.data(), b.data(), y.data() + cy0 * ohw);
    Conv2dShape one = s;
    one.B = 1, one.x_stride = one.y_stride = 0;
    const VecF xs = slice(x, B, Cx, cx0, Cin, hw);
    VecF ref(size_t(B) * Cout * ohw);
    for (int n = 0; n < B; ++n)
      be->conv2d(one, xs.data() + n * Cin * hw, w.data(), b.data(), ref.data() + n * Cout * ohw);
    const std::string what = cat("conv2d ", c.kh, "x", c.kw, " s", c.s);
    EXPECT_EQ(slice(y, B, Cy, cy0, Cout, ohw), ref) << what;
    expect_untouched(y, B, Cy, cy0, Cout, ohw, what);
  }
}

TEST(ConvnetStrided, ResizeBilinearIsNnResizeThenAffine) {
  auto be = make_cpu_backend();
  const int planes = 6, H = 7, W = 5, oh = 13, ow = 4;
  const VecF x = randv(size_t(planes) * H * W, 50, 0.f, 1.f);
  VecF ref(size_t(planes) * oh * ow), plain(ref.size()), y(ref.size());
  nn::resize_bilinear(x.data(), ref.data(), planes, H, W, oh, ow);
  be->resize_bilinear(x.data(), plain.data(), planes, H, W, oh, ow);
  EXPECT_EQ(plain, ref);
  be->resize_bilinear(x.data(), y.data(), planes, H, W, oh, ow, 2.f, -1.f);
  for (float& v : ref) v = 2 * v - 1;  // pytorch-fid's normalisation, as the model did it
  EXPECT_EQ(y, ref);
  // A 2x2 -> 4x4 corner by hand: source coordinate max(0.5 * 0.5 - 0.5, 0) = 0: the corner pixel.
  const float q[4] = {0.f, 1.f, 2.f, 3.f};
  float r[16];
  be->resize_bilinear(q, r, 1, 2, 2, 4, 4, 2.f, -1.f);
  EXPECT_EQ(r[0], -1.f);
  // (1, 1): source 0.25 on both axes: 0.75 (0.75*0 + 0.25*1) + 0.25 (0.75*2 + 0.25*3) = 0.75.
  EXPECT_EQ(r[5], 2 * 0.75f - 1);
}

// One network of random weights twice: run one image at a time, and in chunks of 3 images.
struct OneAndThree {
  std::optional<FidInception> one, three;
  OneAndThree(const NamedArrays& sd, Backend& be) {
    {
      EnvGuard env("UVIT_INCEPTION_BATCH", nullptr);
      one.emplace(sd, be, "random");
    }
    EnvGuard env("UVIT_INCEPTION_BATCH", "3");
    three.emplace(sd, be, "random");
  }
};

// got within 1e-5 of max|ref| (and finite; uvit::test::compare), ref not all zero.
void expect_close(const VecF& got, const VecF& ref, const std::string& what) {
  EXPECT_TRUE(std::any_of(ref.begin(), ref.end(), [](float v) { return v != 0.f; })) << what;
  compare(what, got, ref, 1e-5);
}

// The network in chunks of 3 images (7 images: chunks 3, 3, 1) against one image at a time.
TEST(FidInceptionBatch, ChunksOfThreeMatchOneAtATime) {
  const NamedArrays sd = FidInception::random_state_dict(5);
  auto be = make_cpu_backend();
  OneAndThree nets(sd, *be);
  FidInception &one = *nets.one, &three = *nets.three;
  const int B = 7, H = 40, W = 30;
  std::mt19937 g(6);
  std::vector<uint8_t> im(size_t(B) * H * W * 3);
  for (auto& v : im) v = uint8_t(g() % 256);
  VecF f1(size_t(B) * FidInception::kDims), l1(size_t(B) * FidInception::kClasses);
  VecF f3(f1.size()), l3(l1.size());
  one.forward_u8(im.data(), B, H, W, 3, f1.data(), l1.data());
  three.forward_u8(im.data(), B, H, W, 3, f3.data(), l3.data());
  expect_close(f3, f1, "pool3");
  expect_close(l3, l1, "logits");
  // The float entry point in chunks as well, for the last 4 images (chunks 3, 1).
  VecF x(size_t(4) * 3 * H * W);
  for (int i = 0; i < 4; ++i)
    for (int c = 0; c < 3; ++c)
      for (long k = 0; k < long(H) * W; ++k)
        x[(size_t(i) * 3 + c) * H * W + k] = float(im[((3 + i) * long(H) * W + k) * 3 + c]) / 255.f;
  VecF f4(size_t(4) * FidInception::kDims);
  three.forward(x.data(), 4, H, W, f4.data());
  expect_close(f4, VecF(f1.begin() + 3 * FidInception::kDims, f1.end()), "pool3 (float input)");
}

// A folder goes through the network in runs of same-sized images (decoded in parallel): with
// chunks of 3, runs of 4, 3 and 2 images of two sizes give the features of one image at a time.
TEST(FidInceptionBatch, FolderOfMixedSizesMatchesOneAtATime) {
  const NamedArrays sd = FidInception::random_state_dict(7);
  auto be = make_cpu_backend();
  OneAndThree nets(sd, *be);
  FidInception &one = *nets.one, &three = *nets.three;
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("uvit_fid_folder_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::mt19937 g(8);
  const int sizes[9][2] = {{32, 24}, {32, 24}, {32, 24}, {32, 24}, {20, 28},
                           {20, 28}, {20, 28}, {32, 24}, {32, 24}};
  for (int i = 0; i < 9; ++i) {
    std::vector<uint8_t> px(size_t(sizes[i][0]) * sizes[i][1] * 3);
    for (auto& v : px) v = uint8_t(g() % 256);
    write_png((dir / ("im" + std::to_string(i) + ".png")).string(), px.data(), sizes[i][0],
              sizes[i][1], 3);
  }
  // The reference: each file decoded and run on its own, in the folder's sorted order.
  const std::vector<std::string> files = list_image_files(dir.string());
  ASSERT_EQ(files.size(), 9u);
  VecF ref(size_t(9) * FidInception::kDims);
  for (size_t i = 0; i < files.size(); ++i) {
    const Image im = read_image(files[i], 3);
    one.forward_u8(im.px.data(), 1, im.h, im.w, 3, ref.data() + i * FidInception::kDims);
  }
  expect_close(source_features(one, dir.string(), nullptr), ref, "folder, one at a time");
  expect_close(source_features(three, dir.string(), nullptr), ref, "folder, chunks of 3");
  // A file that does not decode is named in a one-line error.
  {
    std::ofstream bad(dir / "im5.png", std::ios::binary | std::ios::trunc);
    bad << "not a png";
  }
  try {
    source_features(three, dir.string(), nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("im5.png"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(FidInceptionBatch, BadBatchVariableIsOneLineError) {
  EnvGuard env("UVIT_INCEPTION_BATCH", "0");
  const NamedArrays sd = FidInception::random_state_dict(1);
  try {
    FidInception net(sd, "random");
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("UVIT_INCEPTION_BATCH=0"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}
