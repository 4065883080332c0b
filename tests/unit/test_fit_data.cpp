// FiTv2's data side (docs/fit.md "Training on your own images"): the official resize_arr sizes
// against the Python twin (tests/reference/fit_data_twin.py) and by hand, and npy_folder's stored
// flips / in-place mirror under the loader's random_flip.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "temp_dir.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {
std::array<int, 2> wh(int w, int h, int s = 256, int g = 16) { return fit_resize_size(w, h, s, g); }
}  // namespace

// Hand-computed with the official formula (S 256, granularity 16 = VAE 8 x patch 2).
TEST(FitResize, ByHand) {
  EXPECT_EQ(wh(256, 256), (std::array<int, 2>{256, 256}));  // exactly 256 tokens: unchanged
  EXPECT_EQ(wh(1024, 64), (std::array<int, 2>{1024, 64}));  // 64 x 4 = 256 tokens, w*h = S^2
  // sqrt(2) * 256 = 362.04 -> 352; 362.04 / 2 = 181.02 -> 176: 22 x 11 = 242 tokens.
  EXPECT_EQ(wh(512, 256), (std::array<int, 2>{352, 176}));
  EXPECT_EQ(wh(300, 200), (std::array<int, 2>{288, 192}));  // under S^2: floored to 16
  EXPECT_EQ(wh(257, 255), (std::array<int, 2>{256, 240}));  // 65535 pixels: not shrunk
  // 65792 pixels: sqrt(256/257) * 256 = 255.50 -> 240, 255.50 * 257 / 256 = 256.50 -> 256.
  EXPECT_EQ(wh(256, 257), (std::array<int, 2>{240, 256}));
  EXPECT_EQ(wh(5, 5), (std::array<int, 2>{16, 16}));  // tiny: raised to one token
  EXPECT_EQ(wh(1, 1), (std::array<int, 2>{16, 16}));
  EXPECT_EQ(wh(20, 10), (std::array<int, 2>{32, 16}));      // h < 16: h = 16, w = 16 * 20 / 10
  EXPECT_EQ(wh(10, 1000), (std::array<int, 2>{16, 1600}));  // thin: 1 x 100 tokens
  // Thin and long: 16 * 5000 / 12 = 6666.7 -> 6656, 416 tokens: the official rule exceeds 256.
  EXPECT_EQ(wh(12, 5000), (std::array<int, 2>{16, 6656}));
  // Over S^2 pixels and very thin: sqrt(10 / 8000) * 256 = 9.05 -> 0: the official resize fails.
  EXPECT_EQ(wh(10, 8000), (std::array<int, 2>{0, 7232}));
  EXPECT_EQ(wh(8, 4), (std::array<int, 2>{16, 0}));                // 16 * 4 / 8 = 8 -> 0
  EXPECT_EQ(wh(2048, 1024, 512), (std::array<int, 2>{720, 352}));  // sqrt(2) * 512 = 724.08
}

TEST(FitResize, MatchesTheTwin) {
  std::ifstream f(std::string(UVIT_TEST_FIXTURES) + "/fit_resize.json");
  ASSERT_TRUE(f) << "fixture fit_resize.json missing";
  const nlohmann::json rows = nlohmann::json::parse(f);
  ASSERT_GT(rows.size(), 2000u);
  int bad = 0;
  for (const auto& r : rows) {
    const auto got = fit_resize_size(r[0], r[1], r[2], r[3]);
    if (got[0] != r[4].get<int>() || got[1] != r[5].get<int>()) {
      if (++bad < 5) ADD_FAILURE() << r.dump() << " -> " << got[0] << " x " << got[1];
    }
  }
  EXPECT_EQ(bad, 0);
}

TEST(FitResize, ImageAndErrors) {
  Image im(300, 200, 3);
  for (size_t i = 0; i < im.px.size(); ++i) im.px[i] = uint8_t(i * 7);
  const Image r = fit_resize(im, 256, 16, "x.png");
  EXPECT_EQ(r.w, 288);
  EXPECT_EQ(r.h, 192);
  EXPECT_EQ(r.px, resize_pil(im, 288, 192, Resample::Bicubic).px);
  const Image same = fit_resize(Image(32, 48, 3, 9), 256, 16, "y.png");
  EXPECT_EQ(same.w, 32);
  EXPECT_EQ(same.px, Image(32, 48, 3, 9).px);  // already a multiple: untouched
  try {
    fit_resize(Image(8000, 10, 3), 256, 16, "thin.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("thin.png: 8000 x 10 is too thin"), std::string::npos)
        << e.what();
  }
}

// extract-features --fit leaves images of under 16 tokens out from their header's size alone.
TEST(FitResize, ImageSizeFromTheHeader) {
  uvit_test::TempDir d("uvit_imsize");
  Image im(37, 21, 3, 5);
  write_png(d / "a.png", im);
  EXPECT_EQ(read_image_size(d / "a.png"), (std::array<int, 2>{37, 21}));
  std::ofstream(d / "b.png") << "not an image";
  try {
    read_image_size(d / "b.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.png: cannot read the image's size"), std::string::npos)
        << e.what();
  }
}

// random_flip on npy_folder: a draw flipped by the loader's flip stream takes the item's stored
// NAME.flip.npy, or mirrors its valid region in place when it has none; unflipped draws take the
// item itself. Twins are not items.
TEST(FitResize, NpyFolderStoredFlips) {
  uvit_test::TempDir d("uvit_fitflip");
  auto put = [&](const std::string& name, int h, int w, float base) {
    std::vector<float> a(size_t(h) * w);
    for (size_t i = 0; i < a.size(); ++i) a[i] = base + float(i);
    save_npy(d / name, Array::from_f32({1, h, w}, a.data()));
  };
  put("a_0.npy", 4, 8, 100.f);
  put("a_0.flip.npy", 4, 8, 500.f);
  put("b_0.npy", 8, 4, 200.f);  // no stored flip: mirrored
  auto ds = make_npy_folder_dataset(d.dir.string(), 1, 8, 8, 4, 0);
  ASSERT_EQ(ds->size(), 2);
  EXPECT_NE(ds->describe().find("(1 stored flips)"), std::string::npos) << ds->describe();
  LoaderOptions lo;
  lo.batch_size = 2;
  lo.shuffle = false;
  lo.random_flip = true;
  int flipped[2] = {0, 0};
  for (int64_t epoch = 0; epoch < 12; ++epoch) {
    Batch b;
    make_batch(*ds, lo, {7, epoch, 0}, b);
    for (int64_t pos = 0; pos < 2; ++pos) {
      const bool flip = DrawRng{7, epoch, pos}.stream(kRngFlip).uniform(uint64_t(pos)) < 0.5f;
      flipped[pos] += flip;
      const float* x = b.x.data() + pos * 64;
      const int h = pos == 0 ? 4 : 8, w = pos == 0 ? 8 : 4;
      for (int y = 0; y < 8; ++y)
        for (int c = 0; c < 8; ++c) {
          float want = 0;
          if (y < h && c < w) {
            const int src = flip && pos == 1 ? w - 1 - c : c;
            want = (pos == 0 ? (flip ? 500.f : 100.f) : 200.f) + float(y * w + src);
          }
          ASSERT_EQ(x[y * 8 + c], want)
              << "epoch " << epoch << " item " << pos << " at " << y << ", " << c;
        }
    }
  }
  EXPECT_GT(flipped[0], 0);  // both kinds of draw happened for both items
  EXPECT_LT(flipped[0], 12);
  EXPECT_GT(flipped[1], 0);
  EXPECT_LT(flipped[1], 12);
  // A flip without its item, and one of another shape, are named.
  put("c_0.flip.npy", 4, 4, 0.f);
  EXPECT_THROW(
      {
        try {
          make_npy_folder_dataset(d.dir.string(), 1, 8, 8, 4, 0);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("c_0.flip.npy: a stored flip without its item"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  std::filesystem::remove(d / "c_0.flip.npy");
  put("b_0.flip.npy", 4, 8, 0.f);
  EXPECT_THROW(
      {
        try {
          make_npy_folder_dataset(d.dir.string(), 1, 8, 8, 4, 0);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("b_0.flip.npy: shape [1, 4, 8] differs"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
}
