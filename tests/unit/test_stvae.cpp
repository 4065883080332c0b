// LaVin-DiT's ST-VAE (docs/stvae.md): the official key layout, the temporal fold and the tap
// stacking of the causal 3-D convolutions, encode and decode of images (one-frame clips) and of
// clips of 5 and 9 frames against the PyTorch twin (tests/reference/stvae_torch.py, which runs the
// real 3-D convolutions), strict loading, config.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/mem_limit.hpp"
#include "error_of.hpp"
#include "models/stvae.hpp"
#include "param_shapes.hpp"
#include "torch_fixtures.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

using namespace uvit;
using uvit_test::error_of;
using uvit_test::rel_err;

namespace {

#define NEED_FIXTURES() NEED_TORCH_FIXTURES("uvit_stvae", "stvae_torch.py fixtures")

TEST(Stvae, LavinLayoutHas436TensorsAnd215583907Params) {
  // Counted from the twin's module tree at LaVin's config (block_out (128, 256, 256, 512), 3
  // layers per block, 16 latent channels).
  const auto shapes = stvae_param_shapes(stvae_config_from("lavin_stvae"));
  EXPECT_EQ(shapes.size(), 436u);
  EXPECT_EQ(uvit_test::param_count(shapes), 215583907);
  EXPECT_EQ(shapes.front().first, "encoder.conv_in.conv.weight");
  EXPECT_EQ(shapes.front().second, (std::vector<int64_t>{128, 3, 3, 3, 3}));
  EXPECT_EQ(shapes.back().first, "decoder.conv_out.conv.bias");
}

TEST(Stvae, FoldSumsTheTemporalTaps) {
  // [O 1, I 2, kt 3, 1, 2]: tap t of (i, s) holds 100 i + 10 t + s + 0.25
  std::vector<float> w;
  for (int i = 0; i < 2; ++i)
    for (int t = 0; t < 3; ++t)
      for (int s = 0; s < 2; ++s) w.push_back(100.f * i + 10.f * t + s + 0.25f);
  const Array a = Array::from_f32({1, 2, 3, 1, 2}, w.data());
  const std::vector<float> f = fold_causal_conv3d(a);
  EXPECT_EQ(f, (std::vector<float>{30.75f, 33.75f, 330.75f, 333.75f}));
  EXPECT_NE(error_of([&] {
              fold_causal_conv3d(Array::from_f32({1, 2, 2}, w.data()));
            }).find("is not [O, I, kt, kh, kw]"),
            std::string::npos);
}

TEST(Stvae, StackPutsTheTapsOnTheChannels) {
  // The weight above, [O 1, I 2, kt 3, 1, 2] -> [1, 3 * 2, 1, 2]: channel j * I + i is tap j of i.
  std::vector<float> w;
  for (int i = 0; i < 2; ++i)
    for (int t = 0; t < 3; ++t)
      for (int s = 0; s < 2; ++s) w.push_back(100.f * i + 10.f * t + s + 0.25f);
  EXPECT_EQ(stack_causal_conv3d(Array::from_f32({1, 2, 3, 1, 2}, w.data())),
            (std::vector<float>{0.25f, 1.25f, 100.25f, 101.25f, 10.25f, 11.25f, 110.25f, 111.25f,
                                20.25f, 21.25f, 120.25f, 121.25f}));
}

TEST(Stvae, PtKeysMatchTheLayout) {
  NEED_FIXTURES();
  const NamedArrays w = load_weights(d / "stvae_small.pt");
  const auto shapes = stvae_param_shapes(stvae_config_from(d / "stvae_small.json"));
  uvit_test::expect_state_dict_layout(w, shapes);
}

TEST(Stvae, EncodeAndDecodeMatchPyTorch) {
  NEED_FIXTURES();
  const StvaeConfig cfg = stvae_config_from(d / "stvae_small.json");
  const Stvae ae = Stvae::load(d / "stvae_small.pt", cfg);
  const Array m = ae.encode_moments(load_npy(d / "stvae_images.npy"));
  const double em = rel_err(m, load_npy(d / "stvae_moments.npy"));
  EXPECT_LE(em, 1e-5);
  const Array x = ae.decode(load_npy(d / "stvae_z.npy"));
  const double ed = rel_err(x, load_npy(d / "stvae_decoded.npy"));
  EXPECT_LE(ed, 1e-5);
  std::printf("relative error: encode %.2e, decode %.2e\n", em, ed);
  // A second pass (pooled buffers reused) is bit-identical.
  EXPECT_EQ(ae.decode(load_npy(d / "stvae_z.npy")).data, x.data);
}

// A one-half load (`uvit autoencoder encode|decode`, lavin-sample) holds only that half's weights
// (docs/memory.md, "The decode's peak") and gives the full load's outputs bit for bit.
TEST(Stvae, OneHalfLoadHoldsItsHalfAndMatchesTheFullLoad) {
  NEED_FIXTURES();
  const StvaeConfig cfg = stvae_config_from(d / "stvae_small.json");
  size_t decoder = 0, all = 0;  // bytes of the folded (2-D) weights
  for (const auto& [name, shape] : stvae_param_shapes(cfg)) {
    size_t n = sizeof(float);
    for (size_t i = 0; i < shape.size(); ++i)
      if (!(shape.size() == 5 && i == 2)) n *= size_t(shape[i]);  // the taps fold into one
    all += n;
    if (name.rfind("decoder.", 0) == 0) decoder += n;
  }
  const Array z = load_npy(d / "stvae_z.npy"), img = load_npy(d / "stvae_images.npy");
  const Stvae both = Stvae::load(d / "stvae_small.pt", cfg);
  size_t live0 = live_buffer_bytes();
  const Stvae dec =
      Stvae::load(d / "stvae_small.pt", cfg, "cpu", "", false, AutoencoderUse::decode);
  const size_t dec_bytes = live_buffer_bytes() - live0;  // one allocation, rounded up a little
  EXPECT_GE(dec_bytes, decoder);
  EXPECT_LT(dec_bytes, decoder + 64 * 1024) << "of " << all << " bytes";
  live0 = live_buffer_bytes();
  const Stvae enc =
      Stvae::load(d / "stvae_small.pt", cfg, "cpu", "", false, AutoencoderUse::encode);
  const size_t enc_bytes = live_buffer_bytes() - live0;
  EXPECT_GE(enc_bytes, all - decoder);
  EXPECT_LT(enc_bytes, all - decoder + 64 * 1024);
  EXPECT_EQ(dec.decode(z).data, both.decode(z).data);
  EXPECT_EQ(enc.encode_moments(img).data, both.encode_moments(img).data);
  EXPECT_NE(error_of([&] {
              dec.encode_moments(img);
            }).find("stvae encode: this ST-VAE was loaded to decode only"),
            std::string::npos);
  EXPECT_NE(
      error_of([&] { enc.decode(z); }).find("stvae decode: this ST-VAE was loaded to encode only"),
      std::string::npos);
}

TEST(Stvae, ClipsMatchPyTorch) {
  NEED_FIXTURES();
  const StvaeConfig cfg = stvae_config_from(d / "stvae_small.json");
  const Stvae ae = Stvae::load(d / "stvae_small.pt", cfg, "cpu", "", true);
  for (const char* t : {"5", "9"}) {  // frames [B, 3, 1 + 4k, H, W] -> moments [B, 8, 1 + k, ...]
    const Array m = ae.encode_moments(load_npy(d / cat("stvae_clip", t, "_frames.npy")));
    const double e = rel_err(m, load_npy(d / cat("stvae_clip", t, "_moments.npy")));
    EXPECT_LE(e, 1e-5) << t;
    std::printf("encode %s frames: relative error %.2e\n", t, e);
  }
  for (const char* t : {"2", "3"}) {  // latents [B, 4, t, h, w] -> clips [B, 3, 1 + 4(t - 1), ...]
    const Array x = ae.decode(load_npy(d / cat("stvae_clipz", t, "_z.npy")));
    const double e = rel_err(x, load_npy(d / cat("stvae_clipz", t, "_decoded.npy")));
    EXPECT_LE(e, 1e-5) << t;
    std::printf("decode %s latent frames: relative error %.2e\n", t, e);
  }
}

// A one-frame clip [B, C, 1, H, W] is the image path, bit for bit, whether or not the model keeps
// the per-tap weights (the fold stays the fast path).
TEST(Stvae, OneFrameClipIsTheImagePath) {
  NEED_FIXTURES();
  const StvaeConfig cfg = stvae_config_from(d / "stvae_small.json");
  const Stvae images = Stvae::load(d / "stvae_small.pt", cfg);
  const Stvae clips = Stvae::load(d / "stvae_small.pt", cfg, "cpu", "", true);
  auto one_frame = [](Array a) {
    a.shape.insert(a.shape.begin() + 2, 1);
    return a;
  };
  const Array x = load_npy(d / "stvae_images.npy"), z = load_npy(d / "stvae_z.npy");
  const Array m = images.encode_moments(x), y = images.decode(z);
  EXPECT_EQ(clips.encode_moments(x).data, m.data);
  EXPECT_EQ(clips.decode(z).data, y.data);
  const Array mc = clips.encode_moments(one_frame(x)), yc = images.decode(one_frame(z));
  EXPECT_EQ(mc.shape, one_frame(m).shape);
  EXPECT_EQ(mc.data, m.data);
  EXPECT_EQ(yc.shape, one_frame(y).shape);
  EXPECT_EQ(yc.data, y.data);
}

TEST(Stvae, ClipErrorsNameTheProblem) {
  NEED_FIXTURES();
  const StvaeConfig cfg = stvae_config_from(d / "stvae_small.json");
  const Stvae images = Stvae::load(d / "stvae_small.pt", cfg);
  const Stvae clips = Stvae::load(d / "stvae_small.pt", cfg, "cpu", "", true);
  const Array frames = load_npy(d / "stvae_clip5_frames.npy");
  EXPECT_NE(error_of([&] {
              images.encode_moments(frames);
            }).find("stvae: a clip of 5 frames needs the causal convolutions' per-tap weights"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              images.decode(load_npy(d / "stvae_clipz2_z.npy"));
            }).find("a clip of 2 frames needs"),
            std::string::npos);
  for (int t : {2, 4, 6}) {  // the official encoder pools these too, but they do not decode back
    std::vector<float> v(size_t(3 * t * 16 * 24), 0.5f);
    EXPECT_NE(
        error_of([&] {
          clips.encode_moments(Array::from_f32({1, 3, t, 16, 24}, v.data()));
        })
            .find(cat("stvae encode: a clip of ", t, " frames; the ST-VAE compresses time by ",
                      "4 and takes 1 + 4k frames (1, 5, 9, ...)")),
        std::string::npos);
  }
  EXPECT_NE(error_of([&] { clips.encode_moments(load_npy(d / "stvae_clipz2_z.npy")); })
                .find("stvae encode: input has shape [2, 4, 2, 3, 5], expected images [B, 3, H, W] "
                      "or clips [B, 3, T, H, W] with H and W positive multiples of 4"),
            std::string::npos);
  EXPECT_NE(error_of([&] { clips.decode(frames); })
                .find("stvae decode: latents have shape [2, 3, 5, 16, 24], expected [B, 4, h, w] "
                      "or [B, 4, t, h, w]"),
            std::string::npos);
}

TEST(Stvae, StrictLoadingNamesTheKey) {
  NEED_FIXTURES();
  const StvaeConfig cfg = stvae_config_from(d / "stvae_small.json");
  const NamedArrays good = load_weights(d / "stvae_small.pt");
  NamedArrays w = good;
  w.erase(w.begin() + 5);
  EXPECT_NE(error_of([&] { Stvae(cfg, w, "v.pt"); }).find("v.pt: missing 1 of 268"),
            std::string::npos);
  w = good;
  w[0].second.shape = {32, 3, 1, 3, 9};
  EXPECT_NE(error_of([&] {
              Stvae(cfg, w, "v.pt");
            }).find("encoder.conv_in.conv.weight has shape [32, 3, 1, 3, 9]"),
            std::string::npos);
  w = good;  // tensors outside encoder/decoder (a training checkpoint's loss.*) are dropped
  w.push_back({"loss.logvar", good[1].second});
  const Stvae ae(cfg, w, "v.pt");
  EXPECT_EQ(ae.skipped(), "skipped 1 tensors outside the autoencoder: loss.* (1)");
  EXPECT_NE(error_of([&] {
              ae.encode_moments(load_npy(d / "stvae_z.npy"));
            }).find("stvae encode: input has shape [2, 4, 3, 5]"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              ae.decode(load_npy(d / "stvae_images.npy"));
            }).find("stvae decode: latents have shape [2, 3, 16, 24], expected [B, 4, h, w] or"),
            std::string::npos);
}

TEST(Stvae, ConfigParsing) {
  const StvaeConfig c = parse_stvae_config(
      R"({"stvae": {"block_out_channels": [32, 64], "latent_channels": 8}})", "x");
  EXPECT_EQ(c.block_out_channels, (std::vector<int>{32, 64}));
  EXPECT_EQ(c.latent_channels, 8);
  EXPECT_EQ(c.layers_per_block, 3);
  EXPECT_EQ(c.downsample_factor(), 2);
  // Time is compressed by the samplers of the first log2(ratio) levels, and only levels - 1 of
  // them have samplers.
  EXPECT_EQ(c.time_levels(), 1);
  EXPECT_EQ(c.time_compression(), 2);
  EXPECT_EQ(stvae_config_from("lavin_stvae").time_compression(), 4);
  EXPECT_EQ(
      parse_stvae_config(R"({"stvae": {"temporal_compression_ratio": 1}})", "x").time_compression(),
      1);
  EXPECT_EQ(
      parse_stvae_config(R"({"stvae": {"temporal_compression_ratio": 2}})", "x").time_compression(),
      2);
  EXPECT_DOUBLE_EQ(stvae_config_from("lavin_stvae").shift_factor, 0.032470703125);
  EXPECT_TRUE(is_stvae_config("lavin_stvae"));
  EXPECT_FALSE(is_stvae_config("sd_kl_f8"));
  auto msg = [](const std::string& s) {
    return error_of([&] { parse_stvae_config(s, "c.json"); });
  };
  EXPECT_NE(msg(R"({"stvae": {"layers": 2}})").find("c.json: unknown stvae field 'layers'"),
            std::string::npos);
  EXPECT_NE(msg(R"({"stvae": {"block_out_channels": [48]}})").find("multiples of 32"),
            std::string::npos);
  EXPECT_NE(msg(R"({"stvae": {"latent_channels": "x"}})").find("wrong type"), std::string::npos);
  EXPECT_NE(msg(R"({"ddconfig": {}})").find("{\"stvae\": {...}}"), std::string::npos);
  EXPECT_NE(msg("{").find("invalid JSON"), std::string::npos);
}

}  // namespace
