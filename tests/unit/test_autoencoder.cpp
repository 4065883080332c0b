// nn layers (conv2d against a direct loop) and the KL autoencoder (against the PyTorch twin).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <vector>

#include "data/feature_npy.hpp"
#include "error_of.hpp"
#include "param_shapes.hpp"
#include "temp_dir.hpp"
#include "thread_counts.hpp"
#include "torch_fixtures.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/nn.hpp"

using namespace uvit;
namespace fs = std::filesystem;

namespace {

using uvit_test::at_thread_counts;
using uvit_test::error_of;
using uvit_test::expect_same_bits;

std::vector<float> randn(size_t n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// The definition: y[n,co,oy,ox] = b[co] + sum x[n,ci,oy*sh-pt+ky,ox*sw-pl+kx] * w[co,ci,ky,kx].
std::vector<float> conv_naive(const nn::Conv2dShape& s, const std::vector<float>& x,
                              const std::vector<float>& w, const float* b) {
  const int Ho = s.out_h(), Wo = s.out_w();
  std::vector<float> y(static_cast<size_t>(s.B) * s.Cout * Ho * Wo);
  for (int n = 0; n < s.B; ++n)
    for (int co = 0; co < s.Cout; ++co)
      for (int oy = 0; oy < Ho; ++oy)
        for (int ox = 0; ox < Wo; ++ox) {
          double acc = b ? b[co] : 0.0;
          for (int ci = 0; ci < s.Cin; ++ci)
            for (int ky = 0; ky < s.kh; ++ky)
              for (int kx = 0; kx < s.kw; ++kx) {
                const int iy = oy * s.sh - s.pt + ky, ix = ox * s.sw - s.pl + kx;
                if (iy < 0 || iy >= s.H || ix < 0 || ix >= s.W) continue;
                acc += double(x[((size_t(n) * s.Cin + ci) * s.H + iy) * s.W + ix]) *
                       w[((size_t(co) * s.Cin + ci) * s.kh + ky) * s.kw + kx];
              }
          y[((size_t(n) * s.Cout + co) * Ho + oy) * Wo + ox] = float(acc);
        }
  return y;
}

void check_conv(const nn::Conv2dShape& s, bool bias, nn::ConvImpl impl) {
  const auto x = randn(size_t(s.B) * s.Cin * s.H * s.W, 1);
  const auto w = randn(size_t(s.Cout) * s.Cin * s.kh * s.kw, 2);
  const auto b = randn(s.Cout, 3);
  const auto ref = conv_naive(s, x, w, bias ? b.data() : nullptr);
  std::vector<float> y(ref.size(), NAN);
  nn::conv2d(s, x.data(), w.data(), bias ? b.data() : nullptr, y.data(), impl);
  double max_err = 0, max_ref = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    max_err = std::max(max_err, double(std::fabs(y[i] - ref[i])));
    max_ref = std::max(max_ref, double(std::fabs(ref[i])));
  }
  EXPECT_LE(max_err, 1e-5 * std::max(1.0, max_ref))
      << "impl " << int(impl) << " Cin=" << s.Cin << " Cout=" << s.Cout << " k=" << s.kh << "x"
      << s.kw << " s=" << s.sh << "x" << s.sw << " pad " << s.pt << s.pl << s.pb << s.pr;
}

}  // namespace

TEST(NnConv2d, MatchesDirectLoopOnOddShapes) {
  // {B, Cin, H, W, Cout, kh, kw, sh, sw, pt, pl, pb, pr}
  const std::vector<nn::Conv2dShape> shapes = {
      {2, 3, 7, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1},      // 3x3 same
      {1, 5, 9, 8, 6, 3, 3, 2, 2, 0, 0, 1, 1},      // the autoencoder downsample: pad r/b, stride 2
      {2, 4, 11, 10, 3, 1, 7, 1, 1, 0, 3, 0, 3},    // 1x7 pad (0,3)
      {1, 4, 10, 11, 3, 7, 1, 1, 1, 3, 0, 3, 0},    // 7x1 pad (3,0)
      {1, 6, 13, 13, 7, 5, 5, 2, 2, 2, 2, 2, 2},    // 5x5 stride 2
      {2, 17, 6, 5, 9, 1, 1, 1, 1, 0, 0, 0, 0},     // 1x1
      {1, 3, 15, 15, 8, 3, 3, 2, 2, 0, 0, 0, 0},    // 3x3 stride 2 valid (Inception stem)
      {1, 32, 8, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1},    // a blocked-layout size
      {2, 64, 13, 10, 80, 3, 3, 1, 1, 1, 1, 1, 1},  // Winograd-sized
      {1, 2, 5, 7, 3, 2, 3, 1, 2, 1, 0, 0, 2},      // asymmetric everything
  };
  for (const auto& s : shapes)
    for (bool bias : {true, false})
      for (auto impl : {nn::ConvImpl::Auto, nn::ConvImpl::OneDnn, nn::ConvImpl::OneDnnPlain,
                        nn::ConvImpl::Im2col, nn::ConvImpl::Winograd, nn::ConvImpl::OneDnnBands})
        check_conv(s, bias, impl);
}

// OneDnnBands splits the output rows into bands of at most 2 MiB of input or output (the
// decoder's kind, src/nn/conv2d.cpp), each run by one primitive unpadded above and below: shapes
// of 3 to 5 bands, the last one short, edge bands reading padding, and bands of padding only.
TEST(NnConv2d, BandsMatchDirectLoop) {
  const std::vector<nn::Conv2dShape> shapes = {
      {1, 8, 70, 2048, 8, 3, 3, 1, 1, 1, 1, 1, 1},   // bands of 32 rows: 32 + 32 + 6
      {1, 8, 131, 2048, 8, 3, 3, 2, 2, 0, 0, 1, 1},  // stride 2, padded right and below: 4 x 16 + 1
      {2, 8, 40, 2048, 16, 1, 1, 1, 1, 0, 0, 0, 0},  // 1x1, two images: 5 x 8
      {1, 4, 300, 1024, 4, 7, 1, 1, 1, 3, 0, 3, 0},  // 7x1, 3 rows of padding: 128 + 128 + 44
      {1, 8, 70, 2048, 8, 3, 3, 1, 1, 4, 1, 3, 1},   // padding taller than the kernel
      {1, 16, 10, 8192, 4, 1, 1, 1, 1, 5, 0, 5, 0},  // 5 bands of 4, the first and last all padding
  };
  for (const auto& s : shapes) check_conv(s, true, nn::ConvImpl::OneDnnBands);
}

// The decoder's kind keeps each output's sum in one order at any thread count: plain nchw did not
// at SD kl-f8's decoder shapes (tests/e2e/thread_bits.sh). A decoder-width convolution and one of
// two bands, each made and run at every thread count.
TEST(NnConv2d, BandsSameBitsAtAnyThreadCount) {
  for (const nn::Conv2dShape s : {nn::Conv2dShape{1, 512, 16, 16, 512, 3, 3, 1, 1, 1, 1, 1, 1},
                                  nn::Conv2dShape{1, 128, 40, 256, 128, 3, 3, 1, 1, 1, 1, 1, 1}}) {
    const auto x = randn(size_t(s.Cin) * s.H * s.W, 41);
    const auto w = randn(size_t(s.Cout) * s.Cin * 9, 42), b = randn(s.Cout, 43);
    expect_same_bits(at_thread_counts({1, 2, 3, 4, 5, 7, 8, 16},
                                      [&] {
                                        std::vector<float> y(size_t(s.Cout) * s.H * s.W);
                                        nn::conv2d(s, x.data(), w.data(), b.data(), y.data(),
                                                   nn::ConvImpl::OneDnnBands);
                                        return y;
                                      }),
                     "Cin " + std::to_string(s.Cin) + ", " + std::to_string(s.H) + "x" +
                         std::to_string(s.W) + ", ");
  }
}

TEST(NnConv2d, CachedWeightsFollowNewValuesAtTheSamePointer) {
  const nn::Conv2dShape s{1, 16, 8, 8, 16, 3, 3, 1, 1, 1, 1, 1, 1};
  const auto x = randn(16 * 64, 4);
  for (auto impl : {nn::ConvImpl::Auto, nn::ConvImpl::OneDnn, nn::ConvImpl::OneDnnBands}) {
    auto w = randn(16 * 16 * 9, 5);
    std::vector<float> y1(16 * 64), y2(16 * 64);
    nn::conv2d(s, x.data(), w.data(), nullptr, y1.data(), impl);
    for (auto& v : w) v *= 2.f;  // same buffer, new values
    nn::conv2d(s, x.data(), w.data(), nullptr, y2.data(), impl);
    for (size_t i = 0; i < y1.size(); ++i)
      ASSERT_NEAR(y2[i], 2.f * y1[i], 1e-4f * (1 + std::fabs(y1[i]))) << "impl " << int(impl);
  }
}

TEST(NnConv2d, RejectsBadGeometry) {
  std::vector<float> buf(64);
  const nn::Conv2dShape too_big{1, 1, 2, 2, 1, 3, 3}, no_channels{1, 0, 4, 4, 1, 1, 1};
  EXPECT_THROW(nn::conv2d(too_big, buf.data(), buf.data(), nullptr, buf.data()), Error);
  EXPECT_THROW(nn::conv2d(no_channels, buf.data(), buf.data(), nullptr, buf.data()), Error);
}

// ---- GroupNorm, upsample, attention against direct formulas ----

TEST(NnLayers, GroupNormSwishMatchesDefinition) {
  const int B = 2, C = 6, HW = 5, G = 3;
  const auto x = randn(size_t(B) * C * HW, 11);
  const auto w = randn(C, 12), b = randn(C, 13);
  for (bool swish : {false, true}) {
    std::vector<float> y(x.size());
    nn::group_norm(x.data(), w.data(), b.data(), y.data(), B, C, HW, G, 1e-6f, swish);
    for (int n = 0; n < B; ++n)
      for (int g = 0; g < G; ++g) {
        const size_t off = (size_t(n) * C + g * 2) * HW;
        double m = 0, v = 0;
        for (int i = 0; i < 2 * HW; ++i) m += x[off + i];
        m /= 2 * HW;
        for (int i = 0; i < 2 * HW; ++i) v += (x[off + i] - m) * (x[off + i] - m);
        v /= 2 * HW;
        for (int i = 0; i < 2 * HW; ++i) {
          const int c = g * 2 + i / HW;
          double r = (x[off + i] - m) / std::sqrt(v + 1e-6) * w[c] + b[c];
          if (swish) r = r / (1 + std::exp(-r));
          EXPECT_NEAR(y[off + i], r, 1e-5) << "n " << n << " g " << g << " i " << i;
        }
      }
  }
}

TEST(NnLayers, UpsampleNearest2x) {
  const std::vector<float> x = {1, 2, 3, 4, 5, 6};  // [1, 2, 3]
  std::vector<float> y(24);
  nn::upsample_nearest2x(x.data(), y.data(), 1, 2, 3);
  const std::vector<float> want = {1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3,
                                   4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6};
  EXPECT_EQ(y, want);
}

// The same bits at any thread count (docs/cli.md, "Reproducibility"): at 1024 tokens one
// multi-threaded GEMM let oneDNN split the sum over the keys among the threads, so 2, 3 and 7
// threads differed from 1 in the last bits (and the decoded images by a grey level here and there).
TEST(NnLayers, SpatialAttentionSameBitsAtAnyThreadCount) {
  // 1024 tokens: several row tasks; 64 and 100: one task (a 64 or 128 px image's 8x8 or 10x10
  // latent mid-block), whose GEMMs must not split their 512-channel sums by thread count either.
  for (const auto [C, HW] : {std::pair{64, 1024}, std::pair{512, 64}, std::pair{512, 100}}) {
    const auto q = randn(size_t(C) * HW, 31), k = randn(size_t(C) * HW, 32),
               v = randn(size_t(C) * HW, 33);
    expect_same_bits(at_thread_counts({1, 2, 3, 7},
                                      [&] {
                                        std::vector<float> out(size_t(C) * HW);
                                        nn::spatial_attention(q.data(), k.data(), v.data(),
                                                              out.data(), C, HW, 0.125f);
                                        return out;
                                      }),
                     "C " + std::to_string(C) + ", HW " + std::to_string(HW) + ", ");
  }
}

TEST(NnLayers, SpatialAttentionMatchesDefinition) {
  for (int HW : {7, 1500}) {  // 1500 > one block of 1024 query rows
    const int C = 3;
    const auto q = randn(size_t(C) * HW, 21), k = randn(size_t(C) * HW, 22),
               v = randn(size_t(C) * HW, 23);
    std::vector<float> out(size_t(C) * HW);
    const float scale = 0.57735f;
    nn::spatial_attention(q.data(), k.data(), v.data(), out.data(), C, HW, scale);
    for (int i : {0, HW / 2, HW - 1}) {
      std::vector<double> s(HW);
      double mx = -1e300, sum = 0;
      for (int j = 0; j < HW; ++j) {
        double d = 0;
        for (int c = 0; c < C; ++c) d += double(q[size_t(c) * HW + i]) * k[size_t(c) * HW + j];
        s[j] = d * scale;
        mx = std::max(mx, s[j]);
      }
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (int c = 0; c < C; ++c) {
        double o = 0;
        for (int j = 0; j < HW; ++j) o += v[size_t(c) * HW + j] * s[j] / sum;
        EXPECT_NEAR(out[size_t(c) * HW + i], o, 1e-5) << "HW " << HW << " i " << i << " c " << c;
      }
    }
  }
}

// ---- the autoencoder ----

namespace {

// Temporary directories named after this suite.
struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_ae") {}
};

using uvit_test::rel_err;

#define NEED_FIXTURES() NEED_TORCH_FIXTURES("uvit_ae", "autoencoder_torch.py fixtures")

}  // namespace

TEST(Autoencoder, SdLayoutHas248KeysAnd83653863Params) {
  const auto shapes = autoencoder_param_shapes(AutoencoderConfig{});
  ASSERT_EQ(shapes.size(), 248u);
  std::map<std::string, std::vector<int64_t>> m(shapes.begin(), shapes.end());
  EXPECT_EQ(uvit_test::param_count(shapes), 83653863);
  EXPECT_EQ(m.size(), 248u);  // no duplicates
  using S = std::vector<int64_t>;
  EXPECT_EQ(m["encoder.conv_out.weight"], S({8, 512, 3, 3}));
  EXPECT_EQ(m["decoder.conv_in.weight"], S({512, 4, 3, 3}));
  EXPECT_EQ(m["decoder.up.1.block.0.nin_shortcut.weight"], S({256, 512, 1, 1}));
  EXPECT_EQ(m["decoder.up.0.block.0.nin_shortcut.weight"], S({128, 256, 1, 1}));
  EXPECT_EQ(m["encoder.down.2.block.0.nin_shortcut.weight"], S({512, 256, 1, 1}));
  EXPECT_EQ(m["decoder.conv_out.weight"], S({3, 128, 3, 3}));
  EXPECT_EQ(m["quant_conv.weight"], S({8, 8, 1, 1}));
  EXPECT_EQ(m["post_quant_conv.weight"], S({4, 4, 1, 1}));
  EXPECT_EQ(m["encoder.mid.attn_1.proj_out.weight"], S({512, 512, 1, 1}));
  EXPECT_TRUE(m.count("decoder.up.3.upsample.conv.bias"));
  EXPECT_FALSE(m.count("decoder.up.0.upsample.conv.bias"));
  EXPECT_FALSE(m.count("encoder.down.3.downsample.conv.bias"));
}

TEST(Autoencoder, ConfigParsing) {
  const auto c = parse_autoencoder_config(
      R"({"ddconfig": {"ch": 64, "ch_mult": [1, 2], "attn_resolutions": [16], "resolution": 32},
          "embed_dim": 3, "scale_factor": 0.5})",
      "t.json");
  EXPECT_EQ(c.ch, 64);
  EXPECT_EQ(c.ch_mult, std::vector<int>({1, 2}));
  EXPECT_EQ(c.attn_resolutions, std::vector<int>({16}));
  EXPECT_EQ(c.embed_dim, 3);
  EXPECT_EQ(c.scale_factor, 0.5);
  EXPECT_EQ(c.z_channels, 4);  // default kept
  EXPECT_EQ(c.downsample_factor(), 2);
  EXPECT_EQ(AutoencoderConfig{}.downsample_factor(), 8);
  auto msg = [](const std::string& j) {
    return error_of([&] { parse_autoencoder_config(j, "t.json"); });
  };
  EXPECT_NE(msg(R"({"ddconfig": {"chmult": [1]}})").find("unknown ddconfig field 'chmult'"),
            std::string::npos);
  EXPECT_NE(msg(R"({"ddconfig": {"ch": 48}})").find("multiple of 32"), std::string::npos);
  EXPECT_NE(msg(R"({"ddconfig": {"double_z": false}})").find("double_z"), std::string::npos);
  EXPECT_NE(msg(R"({"embed": 4})").find("unknown field 'embed'"), std::string::npos);
  EXPECT_NE(msg("{").find("invalid JSON"), std::string::npos);
}

TEST(Autoencoder, PthKeysMatchTheLayout) {
  NEED_FIXTURES();
  const auto cfg = load_autoencoder_config(d / "ae_small.json");
  const NamedArrays w = load_weights(d / "ae_small.pth");
  const auto shapes = autoencoder_param_shapes(cfg);
  uvit_test::expect_state_dict_layout(w, shapes);
}

TEST(Autoencoder, EncodeAndDecodeMatchPyTorch) {
  NEED_FIXTURES();
  const auto cfg = load_autoencoder_config(d / "ae_small.json");
  const Autoencoder ae = Autoencoder::load(d / "ae_small.pth", cfg);
  const Array m = ae.encode_moments(load_npy(d / "ae_images.npy"));
  const double em = rel_err(m, load_npy(d / "ae_moments.npy"));
  EXPECT_LE(em, 1e-5);
  const Array x = ae.decode(load_npy(d / "ae_z.npy"));
  const double ed = rel_err(x, load_npy(d / "ae_decoded.npy"));
  EXPECT_LE(ed, 1e-5);
  std::printf("relative error: encode %.2e, decode %.2e\n", em, ed);
  // The same weights through safetensors give bit-identical results.
  save_safetensors(d / "ae_small.safetensors", load_weights(d / "ae_small.pth"));
  const Autoencoder ae2 = Autoencoder::load(d / "ae_small.safetensors", cfg);
  EXPECT_EQ(ae2.decode(load_npy(d / "ae_z.npy")).data, x.data);
  // fp16 weights (as a converted checkpoint might hold) load and stay close.
  NamedArrays half = load_weights(d / "ae_small.pth");
  for (auto& [name, a] : half) a = a.converted(DType::F16);
  const Autoencoder ae3(cfg, half, "half");
  EXPECT_LE(rel_err(ae3.decode(load_npy(d / "ae_z.npy")), x), 1e-2);
}

TEST(Autoencoder, StrictLoadingNamesTheKey) {
  NEED_FIXTURES();
  const auto cfg = load_autoencoder_config(d / "ae_small.json");
  const NamedArrays good = load_weights(d / "ae_small.pth");
  auto err = [&](const NamedArrays& w, const AutoencoderConfig& c) {
    return error_of([&] { Autoencoder ae(c, w, "w.pth"); });
  };
  NamedArrays missing = good;
  missing.erase(missing.begin() + 5);
  EXPECT_NE(
      err(missing, cfg).find("missing 1 of 154 autoencoder weights, first '" + good[5].first + "'"),
      std::string::npos)
      << err(missing, cfg);
  NamedArrays extra = good;
  extra.push_back({"encoder.extra.weight", Array(DType::F32, {1})});
  EXPECT_NE(err(extra, cfg).find("unexpected key 'encoder.extra.weight'"), std::string::npos);
  // Tensors of other modules (a VA-VAE checkpoint's loss.*, foundation_model.*) are skipped.
  NamedArrays others = good;
  others.push_back({"loss.discriminator.weight", Array(DType::F32, {1})});
  EXPECT_EQ(Autoencoder(cfg, others, "w.pth").skipped(),
            "skipped 1 tensors outside the autoencoder: loss.* (1)");
  NamedArrays bad_shape = good;
  bad_shape[0].second = Array(DType::F32, {32, 3, 3, 1});
  EXPECT_NE(err(bad_shape, cfg).find("encoder.conv_in.weight has shape [32, 3, 3, 1]"),
            std::string::npos)
      << err(bad_shape, cfg);
  // The SD default config against small weights: a clear mismatch, not a crash.
  EXPECT_NE(err(good, AutoencoderConfig{}).find("w.pth: "), std::string::npos);
  // Wrong input shapes.
  const Autoencoder ae(cfg, good, "w.pth");
  EXPECT_THROW(ae.encode_moments(Array(DType::F32, {1, 3, 31, 32})), Error);
  EXPECT_THROW(ae.encode_moments(Array(DType::F32, {1, 4, 32, 32})), Error);
  EXPECT_THROW(ae.decode(Array(DType::F32, {1, 8, 4, 4})), Error);
  EXPECT_THROW(ae.decode(Array(DType::F32, {4, 4, 4})), Error);
}

// Names and shapes of the SD kl-f8 VAE in diffusers' AutoencoderKL layout (that of
// stabilityai/sd-vae-ft-ema / -mse), both generations of attention names, against the official
// table.
TEST(Autoencoder, DiffusersNamesOfTheSdVae) {
  using S = std::vector<int64_t>;
  struct Case {
    const char* diffusers;
    S shape;
    const char* official;  // nullptr: no counterpart, left as it is
  };
  const Case cases[] = {
      {"encoder.conv_in.weight", {128, 3, 3, 3}, "encoder.conv_in.weight"},
      {"encoder.down_blocks.0.resnets.1.norm2.bias", {128}, "encoder.down.0.block.1.norm2.bias"},
      {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight",
       {256, 128, 1, 1},
       "encoder.down.1.block.0.nin_shortcut.weight"},
      {"encoder.down_blocks.2.downsamplers.0.conv.bias",
       {512},
       "encoder.down.2.downsample.conv.bias"},
      {"encoder.mid_block.resnets.1.conv2.weight",
       {512, 512, 3, 3},
       "encoder.mid.block_2.conv2.weight"},
      {"encoder.mid_block.attentions.0.group_norm.bias", {512}, "encoder.mid.attn_1.norm.bias"},
      {"encoder.mid_block.attentions.0.to_q.weight", {512, 512}, "encoder.mid.attn_1.q.weight"},
      {"encoder.mid_block.attentions.0.to_k.bias", {512}, "encoder.mid.attn_1.k.bias"},
      {"encoder.mid_block.attentions.0.to_out.0.weight",
       {512, 512},
       "encoder.mid.attn_1.proj_out.weight"},
      {"encoder.conv_norm_out.weight", {512}, "encoder.norm_out.weight"},
      {"decoder.mid_block.resnets.0.norm1.weight", {512}, "decoder.mid.block_1.norm1.weight"},
      {"decoder.mid_block.attentions.0.query.weight", {512, 512}, "decoder.mid.attn_1.q.weight"},
      {"decoder.mid_block.attentions.0.value.weight", {512, 512}, "decoder.mid.attn_1.v.weight"},
      {"decoder.mid_block.attentions.0.proj_attn.bias", {512}, "decoder.mid.attn_1.proj_out.bias"},
      {"decoder.up_blocks.0.upsamplers.0.conv.weight",
       {512, 512, 3, 3},
       "decoder.up.3.upsample.conv.weight"},
      {"decoder.up_blocks.1.resnets.2.conv1.bias", {512}, "decoder.up.2.block.2.conv1.bias"},
      {"decoder.up_blocks.2.resnets.0.conv_shortcut.weight",
       {256, 512, 1, 1},
       "decoder.up.1.block.0.nin_shortcut.weight"},
      {"decoder.up_blocks.3.resnets.0.conv_shortcut.weight",
       {128, 256, 1, 1},
       "decoder.up.0.block.0.nin_shortcut.weight"},
      {"decoder.conv_norm_out.bias", {128}, "decoder.norm_out.bias"},
      {"post_quant_conv.weight", {4, 4, 1, 1}, "post_quant_conv.weight"},
      {"decoder.up_blocks.4.resnets.0.conv1.bias", {128}, nullptr},  // no fifth level
      {"encoder.mid_block.attentions.0.rel_pos.weight", {512}, nullptr},
  };
  std::map<std::string, S> layout;
  for (const auto& [name, shape] : autoencoder_param_shapes(AutoencoderConfig{}))
    layout[name] = shape;
  NamedArrays w;
  for (const Case& c : cases) w.push_back({c.diffusers, Array(DType::F32, c.shape)});
  EXPECT_TRUE(autoencoder_from_diffusers(w, 4));
  for (size_t i = 0; i < w.size(); ++i) {
    if (!cases[i].official) {
      EXPECT_EQ(w[i].first, cases[i].diffusers);
      continue;
    }
    EXPECT_EQ(w[i].first, cases[i].official) << cases[i].diffusers;
    ASSERT_TRUE(layout.count(w[i].first)) << w[i].first;
    EXPECT_EQ(w[i].second.shape, layout[w[i].first]) << w[i].first;  // Linear -> 1x1 conv
  }
  // The official layout is left alone.
  NamedArrays ldm;
  for (const auto& [name, shape] : layout) ldm.push_back({name, Array(DType::F32, {1})});
  const NamedArrays before = ldm;
  EXPECT_FALSE(autoencoder_from_diffusers(ldm, 4));
  for (size_t i = 0; i < ldm.size(); ++i) EXPECT_EQ(ldm[i].first, before[i].first);
}

// The small twin's weights under diffusers names (autoencoder_torch.py to_diffusers, both attention
// styles, .bin and .safetensors) load and give bit-identical results; errors name the layout.
TEST(Autoencoder, LoadsDiffusersLayouts) {
  NEED_FIXTURES();
  const auto cfg = load_autoencoder_config(d / "ae_small.json");
  const Autoencoder ref = Autoencoder::load(d / "ae_small.pth", cfg);
  const Array z = load_npy(d / "ae_z.npy"), images = load_npy(d / "ae_images.npy");
  const Array x = ref.decode(z), m = ref.encode_moments(images);
  std::map<std::string, std::vector<int64_t>> layout;
  for (const auto& [name, shape] : autoencoder_param_shapes(cfg)) layout[name] = shape;
  for (const std::string style : {"new", "old"}) {
    const std::string bin = d / ("ae_small_diffusers_" + style + ".bin");
    const NamedArrays w = load_weights(bin);
    ASSERT_EQ(w.size(), 154u);
    NamedArrays renamed = w;
    EXPECT_TRUE(autoencoder_from_diffusers(renamed, 2));
    std::map<std::string, std::vector<int64_t>> got;
    for (const auto& [name, a] : renamed) got[name] = a.shape;
    EXPECT_EQ(got, layout) << style;
    const Autoencoder ae = Autoencoder::load(bin, cfg);
    EXPECT_EQ(ae.decode(z).data, x.data) << style;
    EXPECT_EQ(ae.encode_moments(images).data, m.data) << style;
    const std::string st = d / ("diffusion_pytorch_model_" + style + ".safetensors");
    save_safetensors(st, w);
    EXPECT_EQ(Autoencoder::load(st, cfg).decode(z).data, x.data) << style;
  }
  const NamedArrays good = load_weights(d / "ae_small_diffusers_new.bin");
  auto err = [&](const NamedArrays& w, const AutoencoderConfig& c) {
    return error_of([&] { Autoencoder ae(c, w, "vae.bin"); });
  };
  NamedArrays missing;
  for (const auto& [name, a] : good)
    if (name != "decoder.up_blocks.0.attentions.1.to_k.bias") missing.push_back({name, a});
  EXPECT_EQ(err(missing, cfg),
            "vae.bin (diffusers layout): missing 1 of 154 autoencoder weights, first "
            "'decoder.up.1.attn.1.k.bias' (does the autoencoder config match the weights? "
            "built-in: sd_kl_f8, vavae_f16d32, svg_decoder_z392)");
  NamedArrays extra = good;
  extra.push_back({"encoder.mid_block.attentions.0.rel_pos.weight", Array(DType::F32, {64})});
  EXPECT_NE(err(extra, cfg)
                .find("vae.bin (diffusers layout): unexpected key "
                      "'encoder.mid_block.attentions.0.rel_pos.weight'"),
            std::string::npos)
      << err(extra, cfg);
  NamedArrays both = good;  // old and new attention names for the same weight
  both.push_back({"encoder.mid_block.attentions.0.query.weight", Array(DType::F32, {64, 64})});
  EXPECT_EQ(err(both, cfg),
            "vae.bin (diffusers layout): tensor 'encoder.mid.attn_1.q.weight' appears twice");
  // The SD default config against these small weights: one line, not a crash.
  EXPECT_NE(err(good, AutoencoderConfig{}).find("vae.bin (diffusers layout): "), std::string::npos)
      << err(good, AutoencoderConfig{});
}

TEST(Autoencoder, FeatureRecordRoundTrips) {
  for (int h : {2, 32}) {  // 2: SHORT_BINBYTES payload, 32: BINBYTES
    const auto v = randn(size_t(8) * h * h, 31);
    const Array m = Array::from_f32({8, h, h}, v.data());
    const auto bytes = encode_feature_record(m, 997);
    EXPECT_EQ((10 + bytes[8] + 256 * bytes[9]) % 64, 0);  // numpy's 64-byte header alignment
    const data::FeatureRecord r = data::parse_feature_record(bytes.data(), bytes.size(), "x.npy");
    EXPECT_EQ(r.label, 997);
    EXPECT_EQ(r.moments.shape, m.shape);
    EXPECT_EQ(r.moments.to_f32(), v);
  }
  EXPECT_THROW(encode_feature_record(Array(DType::F32, {8, 4}), 0), Error);
}
