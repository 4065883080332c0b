// FID Inception vs the PyTorch twin (tests/reference/inception_torch.py, random weights), the
// Frechet distance vs pytorch-fid's scipy computation, statistics files, IS and precision/recall.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "torch_fixtures.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/image.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"
#include "uvit/nn.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

// The twin's fixtures, generated once per build directory (a minute or two: scipy's sqrtm).
const std::string& fix() {
  static const std::string dir = uvit_test::build_dir_fixtures("fid", "inception_torch.py", "done");
  return dir;
}

nlohmann::json read_json(const std::string& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

const FidInception& net() {
  static FidInception n = FidInception::load(fix() + "/inception.pth");
  return n;
}

}  // namespace

TEST(FidResize, MatchesTorchBilinearByHand) {
  // 2x2 -> 4x4, align_corners=False: src = (d + 0.5) / 2 - 0.5 clamped at 0 -> 0, .25, .75, 1.25
  // -> taps (0,0,w0) (0,1,.25) (0,1,.75) (1,1,..): row [a, .75a+.25b, .25a+.75b, b].
  const float x[4] = {0, 4, 8, 12};
  float y[16];
  nn::resize_bilinear(x, y, 1, 2, 2, 4, 4);
  const float r0[4] = {0, 1, 3, 4};
  for (int j = 0; j < 4; ++j) {
    EXPECT_FLOAT_EQ(y[j], r0[j]);
    EXPECT_FLOAT_EQ(y[12 + j], r0[j] + 8);
    EXPECT_FLOAT_EQ(y[4 + j], r0[j] + 2);  // row 1: .75 row0 + .25 row1
  }
  // Same size is the identity.
  float z[4];
  nn::resize_bilinear(x, z, 1, 2, 2, 2, 2);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(z[i], x[i]);
}

TEST(FidPool, ExcludePadAndMaxPool) {
  const float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  float y[9];
  nn::pool2d(x, y, 1, 3, 3, 3, 1, 1, false);
  EXPECT_FLOAT_EQ(y[0], (1 + 2 + 4 + 5) / 4.0f);  // corner: 4 taps, not 9
  EXPECT_FLOAT_EQ(y[1], (1 + 2 + 3 + 4 + 5 + 6) / 6.0f);
  EXPECT_FLOAT_EQ(y[4], 5.0f);
  const float neg[9] = {-1, -2, -3, -4, -5, -6, -7, -8, -9};
  nn::pool2d(neg, y, 1, 3, 3, 3, 1, 1, true);
  EXPECT_EQ(y[8], -5.0f);  // padding never wins, even over negatives
  EXPECT_EQ(y[0], -1.0f);
  float s2[1];
  nn::pool2d(x, s2, 1, 3, 3, 3, 2, 0, true);
  EXPECT_EQ(s2[0], 9.0f);
}

TEST(FidInception, FeaturesMatchTorchTwin) {
  for (const char* k : {"a", "b", "c"}) {
    Array im = load_npy(fix() + "/images_" + k + ".npy");
    const int B = int(im.shape[0]), H = int(im.shape[1]), W = int(im.shape[2]);
    std::vector<float> f(size_t(B) * 2048), l(size_t(B) * 1008);
    net().forward_u8(im.as<uint8_t>(), B, H, W, 3, f.data(), l.data());
    const auto ref = load_npy(fix() + "/pool3_" + k + ".npy").to_f32();
    const auto refl = load_npy(fix() + "/logits_" + k + ".npy").to_f32();
    EXPECT_LT(uvit_test::rel_err(f, ref), 1e-4) << k;
    EXPECT_LT(uvit_test::rel_err(l, refl), 1e-4) << k;
  }
}

TEST(FidInception, LoadsWithoutNumBatchesTracked) {
  FidInception n = FidInception::load(fix() + "/inception_nobt.pth");
  Array im = load_npy(fix() + "/images_a.npy");
  std::vector<float> f(2 * 2048);
  n.forward_u8(im.as<uint8_t>(), 2, 32, 32, 3, f.data());
  EXPECT_LT(uvit_test::rel_err(f, load_npy(fix() + "/pool3_a.npy").to_f32()), 1e-4);
}

// Random weights (the helper for backend tests) on the default and an explicit CPU backend: the
// same numbers, logits = pool3 fc^T by hand, a fixed seed gives fixed weights.
TEST(FidInception, RandomWeightsOnExplicitCpuBackend) {
  const NamedArrays sd = FidInception::random_state_dict(3);
  const NamedArrays sd2 = FidInception::random_state_dict(3);
  ASSERT_EQ(sd.size(), sd2.size());
  const Array* fc = nullptr;
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(sd[i].first, sd2[i].first);
    EXPECT_EQ(sd[i].second.data, sd2[i].second.data) << sd[i].first;
    if (sd[i].first == "fc.weight") fc = &sd[i].second;
  }
  ASSERT_TRUE(fc);
  EXPECT_EQ(fc->shape, std::vector<int64_t>({1008, 2048}));
  const FidInception a(sd, "random");
  auto be = make_cpu_backend();
  const FidInception b(sd, *be, "random");
  std::mt19937 g(5);
  std::vector<uint8_t> im(2 * 40 * 33);  // two gray 40x33 images
  for (auto& v : im) v = uint8_t(g() % 256);
  std::vector<float> fa(2 * 2048), la(2 * 1008), fb(fa.size()), lb(la.size());
  a.forward_u8(im.data(), 2, 40, 33, 1, fa.data(), la.data());
  b.forward_u8(im.data(), 2, 40, 33, 1, fb.data(), lb.data());
  EXPECT_EQ(fa, fb);
  EXPECT_EQ(la, lb);
  const std::vector<float> w = fc->to_f32();
  std::vector<float> ref(la.size());
  double fmax = 0;
  for (int i = 0; i < 2; ++i)
    for (int k = 0; k < 1008; ++k) {
      double s = 0;
      for (int j = 0; j < 2048; ++j) s += double(w[k * 2048 + j]) * fa[i * 2048 + j];
      ref[i * 1008 + k] = float(s);
    }
  for (float f : fa) fmax = std::max(fmax, double(std::abs(f)));
  EXPECT_GT(fmax, 1e-3);  // the random network passes a signal through
  EXPECT_NE(std::vector<float>(fa.begin(), fa.begin() + 2048),
            std::vector<float>(fa.begin() + 2048, fa.end()));
  EXPECT_LT(uvit_test::rel_err(la, ref), 1e-5);
}

TEST(FidInception, BadWeightsSayWhichTensor) {
  NamedArrays sd = load_weights(fix() + "/inception.pth");
  NamedArrays missing;
  for (auto& [k, v] : sd)
    if (k != "Mixed_6c.branch7x7_2.bn.running_var") missing.emplace_back(k, v);
  try {
    FidInception n(missing, "w.pth");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("Mixed_6c.branch7x7_2.bn.running_var"), std::string::npos)
        << e.what();
  }
  for (auto& [k, v] : sd)
    if (k == "fc.weight") v.shape = {1000, 2048}, v.data.resize(1000 * 2048 * 4);
  EXPECT_THROW(FidInception(sd, "w.pth"), Error);
  unsetenv("UVIT_INCEPTION");
  try {
    inception_weights_path("");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(kInceptionWeightsUrl), std::string::npos);
  }
  EXPECT_THROW(inception_weights_path("/nonexistent/pt_inception.pth"), Error);
}

TEST(FidFrechet, MatchesScipyOnRandom2048dStats) {
  const nlohmann::json ref = read_json(fix() + "/frechet.json");
  for (const char* name : {"full", "rankdef"}) {
    FidStats a = load_fid_stats(fix() + "/stats_" + name + "_1.npz");
    FidStats b = load_fid_stats(fix() + "/stats_" + name + "_2.npz");
    ASSERT_EQ(a.dims, 2048);
    const double tr = trace_sqrt_product(a.sigma.data(), b.sigma.data(), 2048);
    const double fid = frechet_distance(a, b);
    const double rtr = ref[name]["tr_covmean"], rfid = ref[name]["fid"];
    EXPECT_NEAR(tr, rtr, 1e-7 * rtr) << name;
    EXPECT_NEAR(fid, rfid, 1e-7 * rfid) << name;
    // Symmetric in its arguments; zero against itself.
    EXPECT_NEAR(frechet_distance(b, a), fid, 1e-7 * fid) << name;
    EXPECT_NEAR(frechet_distance(a, a), 0.0, 1e-6 * rfid) << name;
  }
}

TEST(FidFrechet, SmallHandComputed) {
  // 1-d: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2) = (m1-m2)^2 + (sqrt s1 - sqrt s2)^2.
  FidStats a{1, {1.0}, {4.0}}, b{1, {3.0}, {9.0}};
  EXPECT_NEAR(frechet_distance(a, b), 4.0 + 1.0, 1e-12);
  // Diagonal 2-d with a singular covariance: tr sqrt(diag(4*0, 1*9)) = 3.
  FidStats c{2, {0, 0}, {4, 0, 0, 1}}, d{2, {0, 0}, {0, 0, 0, 9}};
  EXPECT_NEAR(frechet_distance(c, d), 4 + 1 + 9 - 2 * 3, 1e-12);
  // Non-commuting 2x2: tr sqrtm(S1 S2) = sqrt(tr(S1S2) + 2 sqrt(det(S1S2))).
  FidStats e{2, {0, 0}, {2, 1, 1, 2}}, f{2, {0, 0}, {1, 0, 0, 3}};
  const double tr12 = 2 * 1 + 2 * 3, det12 = 3 * 3;
  EXPECT_NEAR(trace_sqrt_product(e.sigma.data(), f.sigma.data(), 2),
              std::sqrt(tr12 + 2 * std::sqrt(det12)), 1e-12);
  FidStats bad{2, {0, NAN}, {1, 0, 0, 1}};
  EXPECT_THROW(frechet_distance(bad, e), Error);
  EXPECT_THROW(frechet_distance(a, e), Error);
}

TEST(FidStats, FeaturesToStatsMatchNumpyAndRoundTrip) {
  Array f = load_npy(fix() + "/feats.npy");
  FidStats s = stats_from_features(f.as<float>(), f.shape[0], 2048);
  FidStats r = load_fid_stats(fix() + "/feats_stats.npz");
  double emu = 0, esig = 0, ssig = 0;
  for (int i = 0; i < 2048; ++i) emu = std::max(emu, std::abs(s.mu[i] - r.mu[i]));
  for (size_t i = 0; i < s.sigma.size(); ++i) {
    esig = std::max(esig, std::abs(s.sigma[i] - r.sigma[i]));
    ssig = std::max(ssig, std::abs(r.sigma[i]));
  }
  EXPECT_LT(emu, 1e-12);
  EXPECT_LT(esig, 1e-12 * ssig);
  const std::string p = testing::TempDir() + "/fid_stats_rt.npz";
  save_fid_stats(p, s);
  FidStats t = load_fid_stats(p);
  EXPECT_EQ(t.dims, 2048);
  EXPECT_EQ(t.mu, s.mu);
  EXPECT_EQ(t.sigma, s.sigma);
  NamedArrays z = load_npz(p);
  ASSERT_EQ(z.size(), 2u);
  EXPECT_EQ(z[0].second.dtype, DType::F64);
  EXPECT_EQ(z[1].second.shape, std::vector<int64_t>({2048, 2048}));
  EXPECT_THROW(stats_from_features(f.as<float>(), 1, 2048), Error);
}

TEST(FidStats, BadFilesGiveOneLineErrors) {
  const std::string dir = testing::TempDir();
  Array mu(DType::F64, {3}), sig(DType::F64, {3, 2});
  save_npz(dir + "/bad1.npz", {{"mu", mu}, {"sigma", sig}});
  EXPECT_THROW(load_fid_stats(dir + "/bad1.npz"), Error);
  save_npz(dir + "/bad2.npz", {{"mu", mu}});
  EXPECT_THROW(load_fid_stats(dir + "/bad2.npz"), Error);
  Array sig3(DType::F64, {3, 3});
  sig3.as<double>()[4] = INFINITY;
  save_npz(dir + "/bad3.npz", {{"mu", mu}, {"sigma", sig3}});
  EXPECT_THROW(load_fid_stats(dir + "/bad3.npz"), Error);
  EXPECT_THROW(load_fid_stats(dir + "/does_not_exist.npz"), Error);
}

TEST(FidMetrics, InceptionScoreAndPrecisionRecallMatchNumpy) {
  const nlohmann::json ref = read_json(fix() + "/metrics.json");
  Array l = load_npy(fix() + "/is_logits.npy");
  InceptionScore is = inception_score(l.as<float>(), l.shape[0], int(l.shape[1]));
  EXPECT_NEAR(is.mean, double(ref["is_mean"]), 1e-9);
  EXPECT_NEAR(is.std, double(ref["is_std"]), 1e-9);
  Array r = load_npy(fix() + "/pr_real.npy"), f = load_npy(fix() + "/pr_fake.npy");
  PrecisionRecall pr = precision_recall(r.as<float>(), r.shape[0], f.as<float>(), f.shape[0], 16);
  EXPECT_DOUBLE_EQ(pr.precision, double(ref["precision"]));
  EXPECT_DOUBLE_EQ(pr.recall, double(ref["recall"]));
  EXPECT_THROW(inception_score(l.as<float>(), 5, 1008), Error);
  // Identical one-hot predictions: IS = 1 exactly; uniform over classes: also 1.
  std::vector<float> one(20 * 4, 0.0f);
  for (int i = 0; i < 20; ++i) one[i * 4 + i % 4] = 50;
  EXPECT_NEAR(inception_score(one.data(), 20, 4, 5).mean, 4.0, 1e-6);  // confident, balanced
}

TEST(FidMetrics, PrecisionRecallByHand) {
  // 1-d points: real {0,1,2,3,10}, k=1 radii^2 {1,1,1,1,49}; fake {0.5, 20, 100}.
  const float real[5] = {0, 1, 2, 3, 10}, fake[3] = {0.5f, 20, 100};
  PrecisionRecall pr = precision_recall(real, 5, fake, 3, 1, 1);
  EXPECT_DOUBLE_EQ(pr.precision, 1.0 / 3);  // 0.5 inside; 20: 10^2 > 49; 100 outside
  // fake radii^2 (k=1): {19.5^2, 19.5^2, 80^2}: every real point lies within 19.5 of 0.5.
  EXPECT_DOUBLE_EQ(pr.recall, 1.0);
}

TEST(FidSources, FolderAndNpyGiveTheSameFeatures) {
  const std::string dir = testing::TempDir() + "/fid_src";
  fs::remove_all(dir);
  fs::create_directories(dir);
  EXPECT_THROW(list_image_files(dir), Error);
  EXPECT_THROW(source_features(net(), dir + "/nothing.npy"), Error);
  Array im = load_npy(fix() + "/images_a.npy");
  Array f32(DType::F32, {2, 32, 32, 3});
  save_npy(dir + "/float.npy", f32);
  EXPECT_THROW(source_features(net(), dir + "/float.npy"), Error);
  EXPECT_FALSE(is_feature_npy(dir + "/float.npy"));
  save_npy(dir + "/feats.npy", Array(DType::F32, {3, 2048}));
  EXPECT_TRUE(is_feature_npy(dir + "/feats.npy"));
  // PNGs in a folder (plus a file that is not an image) = the same pixels from a .npy.
  for (int i = 0; i < 2; ++i)
    write_png(dir + "/" + std::to_string(i) + ".png", im.as<uint8_t>() + i * 32 * 32 * 3, 32, 32,
              3);
  std::ofstream(dir + "/notes.txt") << "not an image";
  fs::remove(dir + "/float.npy");
  fs::remove(dir + "/feats.npy");
  std::vector<float> logits;
  const std::vector<float> a = source_features(net(), dir, &logits);
  const std::vector<float> b = source_features(net(), fix() + "/images_a.npy");
  ASSERT_EQ(a.size(), 2u * 2048);
  EXPECT_EQ(a, b);
  EXPECT_EQ(logits.size(), 2u * 1008);
  EXPECT_LT(uvit_test::rel_err(a, load_npy(fix() + "/pool3_a.npy").to_f32()), 1e-4);
}

// sFID's spatial features: Mixed_6d.branch1x1 channels 0..6 in (h, w, c) order, as the twin takes
// them from the branch itself (not from the concatenated block output).
TEST(FidInception, SpatialFeaturesMatchTorchTwin) {
  for (const char* k : {"a", "b", "c"}) {
    Array im = load_npy(fix() + "/images_" + k + ".npy");
    const int B = int(im.shape[0]), H = int(im.shape[1]), W = int(im.shape[2]);
    std::vector<float> f(size_t(B) * 2048), s(size_t(B) * FidInception::kSpatialDims);
    net().forward_u8(im.as<uint8_t>(), B, H, W, 3, f.data(), nullptr, s.data());
    Array ref = load_npy(fix() + "/spatial_" + k + ".npy");
    ASSERT_EQ(ref.shape, std::vector<int64_t>({B, 2023})) << k;
    EXPECT_LT(uvit_test::rel_err(s, ref.to_f32()), 1e-4) << k;
    EXPECT_LT(uvit_test::rel_err(f, load_npy(fix() + "/pool3_" + k + ".npy").to_f32()), 1e-4) << k;
  }
  // Through a source, as fid-features --spatial reads it.
  std::vector<float> sp;
  source_features(net(), fix() + "/images_a.npy", nullptr, {}, &sp);
  EXPECT_LT(uvit_test::rel_err(sp, load_npy(fix() + "/spatial_a.npy").to_f32()), 1e-4);
}

// An ADM reference batch: arr_0 images next to mu, sigma, mu_s, sigma_s; only the statistics are
// read for FID/sFID, and a file without mu_s says so in one line.
TEST(FidStats, ReferenceBatchWithSpatialStats) {
  const std::string dir = testing::TempDir();
  std::mt19937 g(5);
  std::normal_distribution<float> N;
  std::vector<float> f(40 * 2048), s(40 * FidInception::kSpatialDims);
  for (float& v : f) v = N(g);
  for (float& v : s) v = N(g);
  const FidStats a = stats_from_features(f.data(), 40, 2048);
  const FidStats b = stats_from_features(s.data(), 40, FidInception::kSpatialDims);
  const std::string p = dir + "/ref_batch.npz";
  save_fid_stats(p, a, &b);
  EXPECT_EQ(npz_names(p), std::vector<std::string>({"mu", "sigma", "mu_s", "sigma_s"}));
  // Add images as arr_0, as the published batches hold them.
  NamedArrays z = load_npz(p);
  z.insert(z.begin(), {"arr_0", Array(DType::U8, {2, 8, 8, 3})});
  save_npz(p, z);
  EXPECT_TRUE(npz_has(p, "arr_0"));
  EXPECT_EQ(load_npz(p, {"mu_s"}).size(), 1u);
  const FidStats a2 = load_fid_stats(p), b2 = load_fid_stats(p, true);
  EXPECT_EQ(a2.mu, a.mu);
  EXPECT_EQ(b2.sigma, b.sigma);
  EXPECT_EQ(b2.dims, 2023);
  save_fid_stats(dir + "/plain.npz", a);
  EXPECT_FALSE(npz_has(dir + "/plain.npz", "mu_s"));
  try {
    load_fid_stats(dir + "/plain.npz", true);
    ADD_FAILURE() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mu_s"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
  }
  // sFID statistics against FID statistics: dimensions differ -> an error naming them.
  EXPECT_THROW(frechet_distance(a2, b2), Error);
}

// The ADM evaluator's precision/recall against the numpy reimplementation (adm_evaluator_ref.py):
// data whose arithmetic is exact in fp16/fp32 so the answers must be identical, with one and with
// several blocks, and with blocks that overflow fp16 and fall back to fp32.
TEST(FidAdm, PrecisionRecallMatchesNumpy) {
  const nlohmann::json ref = read_json(fix() + "/adm_metrics.json");
  for (const char* k : {"exact", "blocks", "fallback"}) {
    Array r = load_npy(fix() + "/adm_real_" + k + ".npy");
    Array f = load_npy(fix() + "/adm_fake_" + k + ".npy");
    const auto& c = ref[k];
    const PrecisionRecall pr =
        precision_recall_adm(r.as<float>(), r.shape[0], f.as<float>(), f.shape[0], int(r.shape[1]),
                             3, long(c["row_batch"]), long(c["col_batch"]));
    EXPECT_DOUBLE_EQ(pr.precision, double(c["precision"])) << k;
    EXPECT_DOUBLE_EQ(pr.recall, double(c["recall"])) << k;
    if (std::string(k) == "exact") {  // the fp16 distances matter: exact ones give other numbers
      const PrecisionRecall ex =
          precision_recall(r.as<float>(), r.shape[0], f.as<float>(), f.shape[0], int(r.shape[1]));
      EXPECT_NE(ex.precision, pr.precision);
    }
  }
  const float one[4] = {0, 1, 2, 3};
  EXPECT_THROW(precision_recall_adm(one, 4, one, 3, 1), Error);  // 3 points, k = 3
}

TEST(FidAdm, InceptionScoreMatchesNumpy) {
  const nlohmann::json ref = read_json(fix() + "/adm_metrics.json");
  Array l = load_npy(fix() + "/adm_is_logits.npy");
  const long n = l.shape[0];
  EXPECT_NEAR(inception_score_adm(l.as<float>(), n, 1008, 10), double(ref["is_split10"]), 1e-9);
  EXPECT_NEAR(inception_score_adm(l.as<float>(), n, 1008), double(ref["is_split5000"]), 1e-9);
  // One split of all samples is the 1-split score of uvit's own IS.
  EXPECT_NEAR(inception_score_adm(l.as<float>(), n, 1008),
              inception_score(l.as<float>(), n, 1008, 1).mean, 1e-9);
}
