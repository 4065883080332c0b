// npy_folder's crop versions (NAME.crop.npy beside NAME.npy, what `convert-fit-latents --versions
// both` writes): one of the two per item and draw, as the official FiTv2 loader's random.choice
// (docs/fit.md "Training on your own images").
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "temp_dir.hpp"
#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/io.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

// A [1, h, w] array base, base + 1, ...: its first value names the file it came from.
void put(const uvit_test::TempDir& d, const std::string& name, int h, int w, float base) {
  std::vector<float> a(size_t(h) * w);
  for (size_t i = 0; i < a.size(); ++i) a[i] = base + float(i);
  save_npy(d / name, Array::from_f32({1, h, w}, a.data()));
}

// Item a (4 x 8, crop version 8 x 4, each with its stored flip), item b (8 x 8, no crop version).
void write_folder(const uvit_test::TempDir& d, bool with_crop) {
  put(d, "a_0.npy", 4, 8, 100.f);
  put(d, "a_0.flip.npy", 4, 8, 500.f);
  put(d, "b_0.npy", 8, 8, 200.f);
  put(d, "b_0.flip.npy", 8, 8, 600.f);
  if (!with_crop) return;
  put(d, "a_0.crop.npy", 8, 4, 300.f);
  put(d, "a_0.crop.flip.npy", 8, 4, 700.f);
}

LoaderOptions options(bool shuffle) {
  LoaderOptions lo;
  lo.batch_size = 2;
  lo.seed = 7;
  lo.shuffle = shuffle;
  lo.random_flip = true;
  return lo;
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.x == b.x && a.labels == b.labels && a.sizes == b.sizes;
}

}  // namespace

// Per draw, the crop version with p 1/2 from its own stream (kRngVersion, element = position), the
// size passed on with it; the flip draw stays the flip stream's, independent of the version.
TEST(NpyFolderVersions, OneOfTwoPerDraw) {
  uvit_test::TempDir d("uvit_fitver");
  write_folder(d, true);
  auto ds = make_npy_folder_dataset(d.dir.string(), 1, 8, 8, 4, 0);
  ASSERT_EQ(ds->size(), 2);  // a crop version is not an item
  EXPECT_EQ(ds->num_classes(), 2);
  EXPECT_NE(ds->describe().find("2 arrays (3 stored flips)"), std::string::npos) << ds->describe();
  EXPECT_NE(ds->describe().find("1 with a crop version (resize_or_crop random)"), std::string::npos)
      << ds->describe();
  const LoaderOptions lo = options(false);
  const int epochs = 4000;
  int counts[2][2] = {{0, 0}, {0, 0}};  // item a's draws by [crop][flip]
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    Batch b;
    make_batch(*ds, lo, {7, epoch, 0}, b);
    for (int64_t pos = 0; pos < 2; ++pos) {
      const DrawRng rng{7, epoch, pos};
      const bool flip = rng.stream(kRngFlip).uniform(uint64_t(pos)) < 0.5f;
      const bool crop = pos == 0 && rng.stream(kRngVersion).uniform(uint64_t(pos)) < 0.5f;
      const float first = pos == 0 ? (crop ? (flip ? 700.f : 300.f) : (flip ? 500.f : 100.f))
                                   : (flip ? 600.f : 200.f);
      ASSERT_EQ(b.x[size_t(pos * 64)], first) << "epoch " << epoch << " item " << pos;
      const std::array<int, 2> size = pos == 1 ? std::array<int, 2>{8, 8}
                                      : crop   ? std::array<int, 2>{8, 4}
                                               : std::array<int, 2>{4, 8};
      ASSERT_EQ(b.sizes[size_t(pos)], size) << "epoch " << epoch << " item " << pos;
      // The canvas outside the drawn version's size is zero.
      ASSERT_EQ(b.x[size_t(pos * 64 + 8 * (size[0] - 1) + size[1] - 1)],
                first + float(size[0] * size[1] - 1));
      if (size[1] < 8) ASSERT_EQ(b.x[size_t(pos * 64 + size[1])], 0.f);
      if (size[0] < 8) ASSERT_EQ(b.x[size_t(pos * 64 + 8 * size[0])], 0.f);
      if (pos == 0) ++counts[crop][flip];
    }
  }
  // Seed 7's exact counts over 4000 draws: the crop version 1919 times (2000 ± 32 sd; over 10^6
  // draws of this stream 0.5003) and each (version, flip) pair near its share 1000 ± 27 sd, so the
  // two draws are independent.
  EXPECT_EQ(counts[1][0] + counts[1][1], 1919);
  EXPECT_EQ(counts[0][0], 1055);
  EXPECT_EQ(counts[0][1], 1026);
  EXPECT_EQ(counts[1][0], 955);
  EXPECT_EQ(counts[1][1], 964);
  EXPECT_NEAR(counts[1][0] + counts[1][1], epochs / 2, 100);
  for (const auto& r : counts)
    for (int c : r) EXPECT_NEAR(c, epochs / 4, 100);
}

// Pinned versions: resize draws exactly what the folder without crop files draws (same flips,
// same bits), crop exactly what a folder of the crop files as items draws; an item without a crop
// version draws as before under every setting.
TEST(NpyFolderVersions, PinnedAndWithoutAlternatives) {
  uvit_test::TempDir both("uvit_fitver"), plain("uvit_fitver"), crops("uvit_fitver");
  write_folder(both, true);
  write_folder(plain, false);
  put(crops, "a_0.npy", 8, 4, 300.f);
  put(crops, "a_0.flip.npy", 8, 4, 700.f);
  put(crops, "b_0.npy", 8, 8, 200.f);
  put(crops, "b_0.flip.npy", 8, 8, 600.f);
  const std::string dir = both.dir.string();
  auto random = make_npy_folder_dataset(dir, 1, 8, 8, 4, 0, "random");
  auto resize = make_npy_folder_dataset(dir, 1, 8, 8, 4, 0, "resize");
  auto crop = make_npy_folder_dataset(dir, 1, 8, 8, 4, 0, "crop");
  auto without = make_npy_folder_dataset(plain.dir.string(), 1, 8, 8, 4, 0);
  auto crop_items = make_npy_folder_dataset(crops.dir.string(), 1, 8, 8, 4, 0);
  const LoaderOptions lo = options(true);
  int took_crop = 0;
  for (int64_t epoch = 0; epoch < 64; ++epoch) {
    Batch r, z, c, w, ci;
    make_batch(*random, lo, {7, epoch, 0}, r);
    make_batch(*resize, lo, {7, epoch, 0}, z);
    make_batch(*crop, lo, {7, epoch, 0}, c);
    make_batch(*without, lo, {7, epoch, 0}, w);
    make_batch(*crop_items, lo, {7, epoch, 0}, ci);
    ASSERT_TRUE(same_batch(z, w)) << "epoch " << epoch;
    ASSERT_TRUE(same_batch(c, ci)) << "epoch " << epoch;
    // Item b (no crop version) is the same in every batch.
    for (int64_t pos = 0; pos < 2; ++pos)
      if (r.labels[size_t(pos)] == 1)
        ASSERT_TRUE(std::equal(r.x.begin() + pos * 64, r.x.begin() + pos * 64 + 64,
                               w.x.begin() + pos * 64));
    // random: each batch is the resize or the crop batch (item a's one draw), both happen.
    ASSERT_TRUE(same_batch(r, w) || same_batch(r, ci)) << "epoch " << epoch;
    took_crop += !same_batch(r, w);
  }
  EXPECT_GT(took_crop, 0);
  EXPECT_LT(took_crop, 64);
}

// The draw is a function of (seed, epoch, position) only: a batch built at any offset, and a
// loader resumed from a state, give the draws of the uninterrupted run.
TEST(NpyFolderVersions, ResumedDrawsTheSame) {
  uvit_test::TempDir d("uvit_fitver");
  write_folder(d, true);
  put(d, "c_0.npy", 4, 4, 800.f);  // three items: batches of 1 start at every position
  auto ds = make_npy_folder_dataset(d.dir.string(), 1, 8, 8, 4, 0);
  LoaderOptions lo = options(true);
  lo.batch_size = 3;
  LoaderOptions one = lo;
  one.batch_size = 1;
  for (int64_t epoch = 0; epoch < 16; ++epoch) {
    Batch full;
    make_batch(*ds, lo, {7, epoch, 0}, full);
    for (int64_t pos = 0; pos < 3; ++pos) {
      Batch b;
      make_batch(*ds, one, {7, epoch, pos}, b);
      ASSERT_TRUE(std::equal(b.x.begin(), b.x.end(), full.x.begin() + pos * 64));
      ASSERT_EQ(b.sizes[0], full.sizes[size_t(pos)]);
    }
  }
  Loader straight(ds, one);
  std::vector<Batch> want;
  for (int k = 0; k < 20; ++k) want.push_back(straight.next());
  Loader resumed(ds, one);
  for (int k = 0; k < 7; ++k) resumed.next();
  const LoaderState st = resumed.get_state();
  Loader again(ds, one);
  again.set_state(st);
  for (int k = 7; k < 20; ++k) ASSERT_TRUE(same_batch(again.next(), want[size_t(k)])) << k;
}

// Each refusal names the file: a crop version without its item, one outside the canvas, a crop
// flip of another shape, a stored flip on one version only; an unknown setting is named.
TEST(NpyFolderVersions, Refusals) {
  uvit_test::TempDir d("uvit_fitver");
  write_folder(d, true);
  const std::string dir = d.dir.string();
  auto open = [&](int canvas, const std::string& choice = "random") {
    return error_of([&] { make_npy_folder_dataset(dir, 1, canvas, canvas, 4, 0, choice); });
  };
  EXPECT_EQ(open(8), "(no error)");
  EXPECT_NE(open(8, "both").find("resize_or_crop 'both' is not random, resize or crop"),
            std::string::npos);
  put(d, "b_0.npy", 4, 4, 200.f);
  put(d, "b_0.flip.npy", 4, 4, 600.f);
  put(d, "b_0.crop.npy", 12, 4, 0.f);
  put(d, "b_0.crop.flip.npy", 12, 4, 0.f);
  const std::string e = open(8);
  EXPECT_NE(e.find("b_0.crop.npy (the crop version of " + (d / "b_0.npy") +
                   "): 12 x 4 is not a multiple of 4 within the 8 x 8 canvas"),
            std::string::npos)
      << e;
  EXPECT_EQ(open(12), "(no error)");
  put(d, "b_0.crop.flip.npy", 4, 12, 0.f);
  EXPECT_NE(open(12).find("b_0.crop.flip.npy: shape [1, 4, 12] differs"), std::string::npos);
  std::filesystem::remove(d / "b_0.crop.flip.npy");
  EXPECT_NE(open(12).find("b_0.crop.npy: no stored flip, while its other version " +
                          (d / "b_0.npy") + " has one"),
            std::string::npos)
      << open(12);
  std::filesystem::remove(d / "b_0.crop.npy");
  put(d, "c_0.crop.npy", 4, 4, 0.f);
  EXPECT_NE(open(12).find("c_0.crop.npy: a crop version without its item " + (d / "c_0.npy")),
            std::string::npos)
      << open(12);
  // The config key: "random" by default, the official recipes' value in the FiT presets (FiTv2's
  // random: 'random', FiTv1's random: 'resize'), ignored by other datasets as max_tokens is.
  EXPECT_EQ(data_options_from_json(nlohmann::json::parse(R"({"dataset": {"name": "npy_folder"}})"))
                .resize_or_crop,
            "random");
  for (const char* preset : {"fitv2_xl_2", "fmnist_fit_tiny"})
    EXPECT_EQ(load_config(preset).json["dataset"]["resize_or_crop"], "random") << preset;
  for (const char* preset : {"fitv1_xl_2", "fmnist_fitv1_tiny"})
    EXPECT_EQ(load_config(preset).json["dataset"]["resize_or_crop"], "resize") << preset;
}
