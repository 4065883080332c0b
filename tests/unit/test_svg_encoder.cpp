// DINOv3 (src/models/dinov3.cpp) and SVG's encoder (src/models/svg_encoder.cpp) against the
// PyTorch twins tests/reference/dinov3_torch.py and svg_encoder_torch.py (random weights with the
// official names, float64 references): a tiny DINOv3, the real ViT-S+/16 geometry on one 256-px
// image, and the tiny SVG encoder with whole-batch and per-image statistics; the tables, config
// and load errors; match_distribution on hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "error_of.hpp"
#include "models/dinov3.hpp"
#include "models/svg_encoder.hpp"
#include "torch_fixtures.hpp"
#include "uvit/backend.hpp"
#include "uvit/io.hpp"

using namespace uvit;
using uvit_test::error_of;
using uvit_test::rel_err;

namespace {

#define NEED(prefix, script)                                                     \
  const uvit_test::TempDir* fx = uvit_test::torch_fixtures(prefix, script);      \
  if (!fx) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3"; \
  const std::string d = fx->dir.string()

double dinov3_case(const std::string& d, const std::string& name) {
  const Dinov3Config cfg =
      Dinov3Config::from_json(read_json_file(d + "/" + name + ".json"), name + ".json");
  auto be = make_backend("cpu");
  Dinov3 net(cfg, *be);
  net.load_file(d + "/" + name + ".safetensors");
  const Array x = load_npy(d + "/" + name + "_x.npy"), want = load_npy(d + "/" + name + "_out.npy");
  const std::vector<float> got = net.patch_tokens(x.to_f32(), int(x.shape[0]), int(x.shape[2]));
  return rel_err(got, want.to_f32());
}

}  // namespace

TEST(Dinov3, Vits16plusTable) {
  const Dinov3Config c;
  EXPECT_EQ(c.swiglu_hidden(), 1536);  // int(int(384 * 6) * 2 / 3) = 1536, already a multiple of 8
  const ParamTable t = dinov3_param_table(c);
  EXPECT_EQ(t.entries().size(), size_t(6 + 17 * 12 + 2));
  EXPECT_EQ(t.at("rope_embed.periods").shape, std::vector<int64_t>({16}));
  EXPECT_EQ(t.at("storage_tokens").shape, std::vector<int64_t>({1, 4, 384}));
  EXPECT_EQ(t.at("blocks.11.mlp.w3.weight").shape, std::vector<int64_t>({384, 1536}));
  // 28,711,312 values: 28,697,472 parameters + 16 periods + 12 bias masks of 1152.
  EXPECT_EQ(t.total(), size_t(28711312));
}

TEST(Dinov3, TinyMatchesTwin) {
  NEED("uvit_dinov3", "dinov3_torch.py fixtures");
  EXPECT_LT(dinov3_case(d, "dinov3_tiny"), 1e-5);
}

TEST(Dinov3, Vits16plusMatchesTwinOn256px) {
  NEED("uvit_dinov3", "dinov3_torch.py fixtures");
  EXPECT_LT(dinov3_case(d, "dinov3_vits16plus"), 1e-5);
}

TEST(Dinov3, LoadErrorsNameTheTensor) {
  NEED("uvit_dinov3", "dinov3_torch.py fixtures");
  const Dinov3Config cfg =
      Dinov3Config::from_json(read_json_file(d + "/dinov3_tiny.json"), "dinov3_tiny.json");
  auto be = make_backend("cpu");
  Dinov3 net(cfg, *be);
  NamedArrays sd = load_weights(d + "/dinov3_tiny.safetensors");
  NamedArrays missing(sd.begin() + 1, sd.end());
  EXPECT_NE(error_of([&] { net.load(missing, "w"); }).find("cls_token"), std::string::npos);
  for (auto& [name, a] : sd)
    if (name == "blocks.1.attn.qkv.bias_mask") a.as<float>()[0] = NAN;
  EXPECT_NE(error_of([&] { net.load(sd, "w"); }).find("blocks.1.attn.qkv.bias_mask"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              Dinov3Config::from_json(nlohmann::json::parse(R"({"embed_dim": 36})"), "c.json");
            }).find("multiple of 4 * num_heads"),
            std::string::npos);
}

TEST(SvgEncoder, MatchDistributionByHand) {
  // One image, 1 DINO channel [0, 2, 4, 6] (mean 3, unbiased std sqrt(20/3)) and 2 residual
  // channels [1, 1, 3, 3] (std sqrt(4/3)) and [0, 0, 0, 4] (std 2): mean 1.5, std
  // (sqrt(4/3) + 2) / 2.
  std::vector<float> f = {0, 2, 4, 6, 1, 1, 3, 3, 0, 0, 0, 4};
  match_distribution(f.data(), 1, 2, 1, 4);
  const double sh = std::sqrt(20.0 / 3), sv = (std::sqrt(4.0 / 3) + 2) / 2;
  const std::vector<double> v = {1, 1, 3, 3, 0, 0, 0, 4};
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_NEAR(f[4 + i], (v[i] - 1.5) / (sv + 1e-6) * sh + 3, 1e-5) << i;
  EXPECT_EQ(f[0], 0.f);  // the DINO channels are untouched
}

TEST(SvgEncoder, MatchesTwinWholeBatchAndPerImage) {
  NEED("uvit_svg_encoder", "svg_encoder_torch.py fixtures");
  const SvgEncoderConfig cfg = SvgEncoderConfig::load(d + "/svg_tiny.json");
  EXPECT_EQ(cfg.channels(), 40);
  auto be = make_backend("cpu");
  SvgEncoder enc(cfg, *be);
  // The DINOv3 weights from the checkpoint's encoder.*, decoder tensors skipped.
  enc.load(load_weights(d + "/svg_tiny.safetensors"), "svg_tiny.safetensors", nullptr, "");
  const Array x = load_npy(d + "/svg_tiny_x.npy");
  const Array batch = enc.encode(x, 3), one = enc.encode(x, 1);
  EXPECT_EQ(batch.shape, std::vector<int64_t>({3, 40, 16, 16}));
  EXPECT_LT(rel_err(batch, load_npy(d + "/svg_tiny_out.npy")), 1e-5);
  EXPECT_LT(rel_err(one, load_npy(d + "/svg_tiny_out1.npy")), 1e-5);
  // Per-image statistics: an image's features do not depend on its batch.
  const Array x0 = Array::from_f32({1, 3, 256, 256}, x.as<float>() + 2 * 3 * 256 * 256);
  const Array z0 = enc.encode(x0, 1);
  const std::vector<float> a = z0.to_f32(), b = one.to_f32();
  EXPECT_LT(rel_err(a.data(), b.data() + 2 * a.size(), a.size()), 1e-6);

  // The same with the DINOv3 weights given separately by their official names.
  SvgEncoder enc2(cfg, *be);
  const NamedArrays dino = load_weights(d + "/svg_tiny_dinov3.safetensors");
  enc2.load(load_weights(d + "/svg_tiny.safetensors"), "svg", &dino, "dinov3");
  EXPECT_LT(rel_err(enc2.encode(x, 3), load_npy(d + "/svg_tiny_out.npy")), 1e-5);
}

// load_files reads the checkpoint's subsets through views on its directory (and the DINOv3 file
// by its own names): the same features, bit for bit, as the loads from arrays.
TEST(SvgEncoder, FilesLoadAsArraysDo) {
  NEED("uvit_svg_encoder", "svg_encoder_torch.py fixtures");
  const SvgEncoderConfig cfg = SvgEncoderConfig::load(d + "/svg_tiny.json");
  auto be = make_backend("cpu");
  const std::string svg = d + "/svg_tiny.safetensors", dino = d + "/svg_tiny_dinov3.safetensors";
  const Array x = load_npy(d + "/svg_tiny_x.npy");
  SvgEncoder a(cfg, *be), b(cfg, *be);
  a.load(load_weights(svg), svg, nullptr, "");
  b.load_files(svg, "");
  EXPECT_EQ(a.encode(x, 3).data, b.encode(x, 3).data);
  const NamedArrays dino_sd = load_weights(dino);
  a.load(load_weights(svg), svg, &dino_sd, dino);
  b.load_files(svg, dino);
  EXPECT_EQ(a.encode(x, 1).data, b.encode(x, 1).data);
  EXPECT_NE(error_of([&] {
              b.load_files(d + "/svg_tiny_dinov3.safetensors", "");
            }).find("no extra_vit.* tensors"),
            std::string::npos);
}

TEST(SvgEncoder, BadInputErrors) {
  NEED("uvit_svg_encoder", "svg_encoder_torch.py fixtures");
  const SvgEncoderConfig cfg = SvgEncoderConfig::load(d + "/svg_tiny.json");
  auto be = make_backend("cpu");
  SvgEncoder enc(cfg, *be);
  const NamedArrays dino = load_weights(d + "/svg_tiny_dinov3.safetensors");
  EXPECT_NE(error_of([&] { enc.load(dino, "dino.safetensors", nullptr, ""); }).find("extra_vit"),
            std::string::npos);
  enc.load(load_weights(d + "/svg_tiny.safetensors"), "svg", nullptr, "");
  const Array small(DType::F32, {1, 3, 128, 128});
  EXPECT_NE(error_of([&] { enc.encode(small, 1); }).find("[B, 3, 256, 256]"), std::string::npos);
  const Array x = load_npy(d + "/svg_tiny_x.npy");
  EXPECT_NE(error_of([&] { enc.encode(x, 2); }).find("statistics group"), std::string::npos);
  EXPECT_NE(error_of([] {
              SvgEncoderConfig::from_json(nlohmann::json::parse(R"({"residul": {}})"), "c.json");
            }).find("unknown field 'residul'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              SvgEncoderConfig::from_json(nlohmann::json::parse(R"({"residual": {"depth": 2}})"),
                                          "c.json");
            }).find("unknown residual field 'depth'"),
            std::string::npos);
  EXPECT_NE(error_of([] {
              SvgEncoderConfig::from_json(nlohmann::json::parse(R"({"dinov3": {"dim": 2}})"),
                                          "c.json");
            }).find("unknown dinov3 field 'dim'"),
            std::string::npos);
}
