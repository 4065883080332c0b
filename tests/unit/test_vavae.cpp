// LightningDiT's VA-VAE f16d32 (docs/autoencoder.md): the named config and its key layout, a small
// member of the family and a checkpoint of the real geometry against the PyTorch twin
// (tests/reference/autoencoder_torch.py vavae-fixtures), skipped non-autoencoder tensors, and the
// per-channel latent statistics.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "error_of.hpp"
#include "param_shapes.hpp"
#include "temp_dir.hpp"
#include "torch_fixtures.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/rng.hpp"

using namespace uvit;
namespace fs = std::filesystem;

namespace {

struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_vavae") {}
};

using uvit_test::rel_err;

#define NEED_FIXTURES() NEED_TORCH_FIXTURES("uvit_vavae", "autoencoder_torch.py vavae-fixtures")

using uvit_test::error_of;

// What the fixtures' checkpoints hold beside the autoencoder (vavae_extras in the twin).
const char* kSkipped =
    "skipped 6 tensors outside the autoencoder: foundation_model.* (2), linear_proj.* (1), "
    "loss.* (3)";

}  // namespace

TEST(VaVae, NamedConfigIsF16d32) {
  const AutoencoderConfig c = autoencoder_config_from("vavae_f16d32");
  EXPECT_EQ(c.ch, 128);
  EXPECT_EQ(c.ch_mult, std::vector<int>({1, 1, 2, 2, 4}));
  EXPECT_EQ(c.num_res_blocks, 2);
  EXPECT_EQ(c.attn_resolutions, std::vector<int>({16}));
  EXPECT_EQ(c.z_channels, 32);
  EXPECT_EQ(c.embed_dim, 32);
  EXPECT_EQ(c.scale_factor, 1.0);
  EXPECT_EQ(c.downsample_factor(), 16);
  // The official module tree: 342 tensors, 69,836,067 parameters (counted by the twin).
  const auto shapes = autoencoder_param_shapes(c);
  std::map<std::string, std::vector<int64_t>> m(shapes.begin(), shapes.end());
  EXPECT_EQ(shapes.size(), 342u);
  EXPECT_EQ(uvit_test::param_count(shapes), 69836067);
  EXPECT_EQ(m.at("encoder.conv_out.weight"), std::vector<int64_t>({64, 512, 3, 3}));
  EXPECT_EQ(m.at("quant_conv.weight"), std::vector<int64_t>({64, 64, 1, 1}));
  EXPECT_EQ(m.at("post_quant_conv.weight"), std::vector<int64_t>({32, 32, 1, 1}));
  EXPECT_EQ(m.at("decoder.conv_in.weight"), std::vector<int64_t>({512, 32, 3, 3}));
  // Attention after each resblock of the 16x16 level (level 4), 2 in the encoder, 3 in the decoder.
  EXPECT_TRUE(m.count("encoder.down.4.attn.1.q.weight"));
  EXPECT_FALSE(m.count("encoder.down.3.attn.0.q.weight"));
  EXPECT_TRUE(m.count("decoder.up.4.attn.2.proj_out.weight"));
  EXPECT_FALSE(m.count("decoder.up.3.attn.0.q.weight"));
  // sd_kl_f8 and "" are the default; a name that is neither built in nor a file is an error.
  EXPECT_EQ(autoencoder_param_shapes(autoencoder_config_from("sd_kl_f8")).size(), 248u);
  EXPECT_EQ(autoencoder_config_from("").embed_dim, 4);
  EXPECT_NE(error_of([] { autoencoder_config_from("vavae_f8d4"); })
                .find("unknown autoencoder config 'vavae_f8d4' (not a file; built-in: sd_kl_f8, "
                      "vavae_f16d32, svg_decoder_z392; lavin_stvae (LaVin-DiT's ST-VAE) in "
                      "`uvit autoencoder` and `uvit lavin-sample`)"),
            std::string::npos);
}

TEST(VaVae, SmallFamilyMatchesPyTorch) {
  NEED_FIXTURES();
  // 5 levels, attention at a middle level (16 px of a 64 px config), z 8: checkpoint nested under
  // "state_dict" with loss/DINOv2/projection tensors beside, as a VA-VAE training checkpoint.
  const auto cfg = load_autoencoder_config(d / "vavae_small.json");
  Autoencoder ae = Autoencoder::load(d / "vavae_small.pt", cfg);
  EXPECT_EQ(ae.skipped(), kSkipped);
  const Array m = ae.encode_moments(load_npy(d / "vavae_small_images.npy"));
  EXPECT_EQ(m.shape, std::vector<int64_t>({2, 16, 4, 6}));
  const double em = rel_err(m, load_npy(d / "vavae_small_moments.npy"));
  EXPECT_LE(em, 1e-5);
  // Decoding un-normalises by the statistics file (official latents_stats.pt layout).
  ae.set_latent_stats(load_latent_stats(d / "vavae_small_stats.pt", 8));
  const double ed = rel_err(ae.decode(load_npy(d / "vavae_small_z.npy")),
                            load_npy(d / "vavae_small_decoded.npy"));
  EXPECT_LE(ed, 1e-5);
  std::printf("relative error: encode %.2e, decode %.2e\n", em, ed);
  // One-line errors for latents of the wrong channel count and stats of the wrong size.
  EXPECT_NE(error_of([&] {
              ae.decode(Array(DType::F32, {1, 4, 4, 6}));
            }).find("expected [B, 8, h, w]"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] {
        ae.set_latent_stats(LatentStats{std::vector<float>(4, 0.f), std::vector<float>(4, 1.f)});
      }).find("latent stats have 4 channels, the autoencoder's latents 8"),
      std::string::npos);
}

TEST(VaVae, PresetSectionNamesConfigAndStats) {
  NEED_FIXTURES();
  // A preset's autoencoder.config and autoencoder.latent_stats stand in for the CLI options.
  const nlohmann::json preset = {
      {"z_shape", {8, 4, 6}},
      {"autoencoder",
       {{"config", d / "vavae_small.json"}, {"latent_stats", d / "vavae_small_stats.pt"}}}};
  const Autoencoder ae = load_preset_autoencoder(preset, d / "vavae_small.pt", "");
  EXPECT_LE(rel_err(ae.decode(load_npy(d / "vavae_small_z.npy")),
                    load_npy(d / "vavae_small_decoded.npy")),
            1e-5);
  // Without a config, the SD default meets 8-channel latents: a one-line error that says what to
  // give.
  const nlohmann::json bare = {{"z_shape", {32, 16, 16}}};
  EXPECT_NE(error_of([&] { load_preset_autoencoder(bare, d / "vavae_small.pt", ""); })
                .find("the preset's latents have 32 channels, the autoencoder config sd_kl_f8 has "
                      "embed_dim 4 (give --autoencoder-config vavae_f16d32)"),
            std::string::npos);
}

TEST(VaVae, RealGeometryCheckpointLoadsAndMatchesPyTorch) {
  NEED_FIXTURES();
  // The real f16d32 key set and shapes (all 342 tensors views of one storage), nested under
  // "state_dict" with the other modules' tensors: loaded once, at 32 px so it stays cheap.
  const Autoencoder ae =
      Autoencoder::load(d / "vavae_f16d32_synth.pt", autoencoder_config_from("vavae_f16d32"));
  EXPECT_EQ(ae.skipped(), kSkipped);
  const Array m = ae.encode_moments(load_npy(d / "vavae_f16d32_image.npy"));
  EXPECT_EQ(m.shape, std::vector<int64_t>({1, 64, 2, 2}));
  const double em = rel_err(m, load_npy(d / "vavae_f16d32_moments.npy"));
  EXPECT_LE(em, 1e-4);
  const Array x = ae.decode(load_npy(d / "vavae_f16d32_z.npy"));
  EXPECT_EQ(x.shape, std::vector<int64_t>({1, 3, 32, 32}));
  const double ed = rel_err(x, load_npy(d / "vavae_f16d32_decoded.npy"));
  EXPECT_LE(ed, 1e-4);
  std::printf("f16d32 relative error: encode %.2e, decode %.2e\n", em, ed);
  // The SD config against it: a mismatch naming the file, not a crash.
  EXPECT_NE(error_of([&] {
              Autoencoder::load(d / "vavae_f16d32_synth.pt");
            }).find("vavae_f16d32_synth.pt: "),
            std::string::npos);
}

TEST(VaVae, LatentStatsRoundTripAndErrors) {
  TempDir t;
  const LatentStats s{{0.5f, -1.25f, 2.f}, {0.75f, 1.5f, 3.f}};
  const std::string p = (t.dir / "stats.safetensors").string();
  save_latent_stats(p, s);
  const NamedArrays raw = load_weights(p);  // the official layout: [1, C, 1, 1]
  ASSERT_EQ(raw.size(), 2u);
  EXPECT_EQ(raw[0].second.shape, std::vector<int64_t>({1, 3, 1, 1}));
  const LatentStats r = load_latent_stats(p, 3);
  EXPECT_EQ(r.mean, s.mean);
  EXPECT_EQ(r.std, s.std);
  // A flat [C] layout reads the same.
  const std::string flat = (t.dir / "flat.safetensors").string();
  save_safetensors(flat, {{"mean", Array::from_f32({3}, s.mean.data())},
                          {"std", Array::from_f32({3}, s.std.data())}});
  EXPECT_EQ(load_latent_stats(flat).std, s.std);
  // Wrong channel count, wrong shape, missing tensor, non-positive std: one-line errors.
  EXPECT_NE(error_of([&] { load_latent_stats(p, 32); })
                .find("stats.safetensors: latent stats 'mean' has shape [1, 3, 1, 1], expected [1, "
                      "32, 1, 1]"),
            std::string::npos);
  const std::string bad = (t.dir / "bad.safetensors").string();
  std::vector<float> six(6, 1.f);
  save_safetensors(bad, {{"mean", Array::from_f32({1, 3, 2, 1}, six.data())},
                         {"std", Array::from_f32({1, 3, 2, 1}, six.data())}});
  EXPECT_NE(error_of([&] { load_latent_stats(bad); }).find("has shape [1, 3, 2, 1]"),
            std::string::npos);
  save_safetensors(bad, {{"avg", Array::from_f32({1, 3, 1, 1}, six.data())}});
  EXPECT_NE(error_of([&] {
              load_latent_stats(bad);
            }).find("latent stats need tensors 'mean' and 'std' [1, C, 1, 1], found avg"),
            std::string::npos);
  const std::vector<float> zero = {1.f, 0.f, 1.f};
  save_safetensors(bad, {{"mean", Array::from_f32({1, 3, 1, 1}, s.mean.data())},
                         {"std", Array::from_f32({1, 3, 1, 1}, zero.data())}});
  EXPECT_NE(error_of([&] { load_latent_stats(bad); }).find("channel 1 has mean -1.25, std 0"),
            std::string::npos);
}

TEST(VaVae, NormalizedMomentsSampleTheNormalizedLatent) {
  // mean' = (mean - m) / s, logvar' = logvar - 2 ln s: the same eps gives (z - m) / s.
  const LatentStats st{{0.3f, -2.f}, {0.5f, 4.f}};
  std::mt19937 g(5);
  std::normal_distribution<float> nd;
  Array mom(DType::F32, {2, 4, 3, 2});  // B 2, C 2, 3x2
  for (int64_t i = 0; i < mom.numel(); ++i) mom.as<float>()[i] = nd(g);
  Array norm = mom;
  normalize_moments(norm, st);
  const float* a = mom.as<float>();
  const float* b = norm.as<float>();
  for (int bi = 0; bi < 2; ++bi)
    for (int c = 0; c < 2; ++c)
      for (int j = 0; j < 6; ++j) {
        const int mi = (bi * 4 + c) * 6 + j, li = (bi * 4 + 2 + c) * 6 + j;
        const float eps = nd(g);
        const float z = a[mi] + std::exp(0.5f * a[li]) * eps;
        const float zn = b[mi] + std::exp(0.5f * b[li]) * eps;
        EXPECT_NEAR(zn, (z - st.mean[size_t(c)]) / st.std[size_t(c)], 1e-5f);
      }
  Array wrong(DType::F32, {1, 6, 2, 2});
  EXPECT_NE(error_of([&] { normalize_moments(wrong, st); }).find("expected [B, 4, h, w]"),
            std::string::npos);
}

TEST(VaVae, StatsAccumulatorGivesMeanAndUnbiasedStd) {
  // With logvar -30 the posterior sample is the mean (std e^-15), so the statistics are the
  // plain per-channel mean and unbiased std of the means: checked against a two-pass computation.
  const int C = 3, H = 4, W = 5, N = 7;
  std::mt19937 g(9);
  std::normal_distribution<float> nd;
  std::vector<Array> lat;
  std::vector<std::vector<double>> vals(C);
  for (int k = 0; k < N; ++k) {
    Array m(DType::F32, {2 * C, H, W});
    for (int c = 0; c < C; ++c)
      for (int j = 0; j < H * W; ++j) {
        const float v = 2.f * float(c) + (1.f + float(c)) * nd(g);
        m.as<float>()[c * H * W + j] = v;
        m.as<float>()[(C + c) * H * W + j] = -40.f;  // clamped to -30
        vals[size_t(c)].push_back(v);
      }
    lat.push_back(std::move(m));
  }
  LatentStatsAccumulator fwd(0), rev(0);
  for (int k = 0; k < N; ++k) fwd.add(lat[size_t(k)], uint64_t(k));
  for (int k = N - 1; k >= 0; --k) rev.add(lat[size_t(k)], uint64_t(k));
  const LatentStats a = fwd.finish(), b = rev.finish();
  EXPECT_EQ(fwd.count(), N);
  for (int c = 0; c < C; ++c) {
    double mu = 0, ss = 0;
    for (double v : vals[size_t(c)]) mu += v;
    mu /= double(vals[size_t(c)].size());
    for (double v : vals[size_t(c)]) ss += (v - mu) * (v - mu);
    const double sd = std::sqrt(ss / double(vals[size_t(c)].size() - 1));
    EXPECT_NEAR(a.mean[size_t(c)], mu, 1e-5);
    EXPECT_NEAR(a.std[size_t(c)], sd, 1e-5);
    EXPECT_NEAR(b.mean[size_t(c)], a.mean[size_t(c)], 1e-6);  // order does not matter
    EXPECT_NEAR(b.std[size_t(c)], a.std[size_t(c)], 1e-6);
  }
  // With mean 0 and logvar 0 the samples are N(0, 1): 20 latents x 32x32 values per channel.
  LatentStatsAccumulator unit(3);
  Array m(DType::F32, {2, 32, 32});
  for (uint64_t k = 0; k < 20; ++k) unit.add(m, k);
  const LatentStats u = unit.finish();
  EXPECT_NEAR(u.mean[0], 0.0, 0.02);
  EXPECT_NEAR(u.std[0], 1.0, 0.02);
}
