// SVG (docs/svg.md): the SVG-XL table, the training time shift, the zero-init (cfg_star) steps,
// the feature statistics file, all-channel guidance, and generate() against the official
// RectifiedFlow.sample loop written out here on the same network.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "model_compare.hpp"
#include "param_shapes.hpp"
#include "temp_dir.hpp"
#include "torch_fixtures.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

using namespace uvit;
using namespace uvit::test;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A tiny flow preset on the svg network.
const char* kTiny = R"({"name": "svg_t", "schedule": "flow",
    "transport": {"train_shift": 0.4},
    "nnet": {"name": "svg", "input_size": 4, "in_channels": 6, "hidden_size": 64, "depth": 2,
             "num_heads": 4, "num_classes": 10},
    "dataset": {"cfg": true},
    "sample": {"algorithm": "euler", "sample_steps": 6, "shift": 0.15, "cfg": true,
               "scale": 0.5, "zero_init_steps": 1}})";

}  // namespace

TEST(Svg, XlTableIsTheOfficialStateDict) {
  const Config c = load_config("svg_xl");
  const ParamTable t = network_param_table(c);
  // 1 + 4 + 1 + 28 * 14 + 2 + 4 tensors; 676,437,904 values (docs/svg.md).
  EXPECT_EQ(t.entries().size(), 404u);
  EXPECT_EQ(t.total(), 676437904u);
  EXPECT_EQ(t.entries().front().name, "pos_embed");
  EXPECT_EQ(t.entries()[6].name, "blocks.0.attn.qkv.weight");
  EXPECT_EQ(t.entries()[8].name, "blocks.0.attn.q_norm.weight");
  EXPECT_EQ(t.at("blocks.0.attn.k_norm.bias").shape, (std::vector<int64_t>{72}));
  EXPECT_EQ(t.at("ln1.weight").shape, (std::vector<int64_t>{1152, 392}));
  EXPECT_EQ(t.at("final_layer.linear.weight").shape, (std::vector<int64_t>{784, 1152}));
  EXPECT_EQ(t.entries().back().name, "final_layer.adaLN_modulation.1.bias");
  // The velocity is the first half of the head; guidance covers all of it.
  EXPECT_EQ(c.spec.out_chans, 392);
  EXPECT_EQ(with_preset_defaults(c, {}).guidance_channels, 392);
}

TEST(Svg, BadArgumentsAreOneLineErrors) {
  Config c = config_from(kTiny);
  auto with = [&](const char* key, nlohmann::json v) {
    nlohmann::json n = c.json["nnet"];
    n[key] = v;
    return error_of([&] { network_family("svg").table(n); });
  };
  EXPECT_NE(with("patch_size", 2).find("nnet.patch_size must be 1"), std::string::npos);
  EXPECT_NE(with("use_swiglu", true).find("nnet.use_swiglu"), std::string::npos);
  EXPECT_NE(with("head_dim", 8).find("nnet.head_dim"), std::string::npos);
  EXPECT_NE(with("qknorm", true).find("nnet.qknorm: unknown key"), std::string::npos);
  EXPECT_EQ(with("head_dim", 16), "");  // = hidden_size / num_heads
}

// RectifiedFlow.forward: t = U[0, 1) then s t / (1 + (s - 1) t), s = 0.4; hand values.
TEST(Svg, TrainingTimeShift) {
  const Config c = config_from(kTiny);
  EXPECT_DOUBLE_EQ(transport_of(c).train_shift, 0.4);
  auto obj = make_flow_objective(c);
  const double u[] = {0.5, 0.25, 0.9, 0.0};
  const double want[] = {0.2 / 0.7, 0.1 / 0.85, 0.36 / 0.46, 0.0};
  for (int i = 0; i < 4; ++i) {
    const TrainDraw d = obj->draw(u[i]);
    EXPECT_NEAR(d.mean, want[i], 1e-15) << u[i];
    EXPECT_NEAR(d.std, 1 - want[i], 1e-15) << u[i];
    EXPECT_EQ(d.net_time, float(d.mean));
  }
  Config bad = c;
  bad.json["transport"]["train_shift"] = 0;
  EXPECT_NE(error_of([&] { transport_of(bad); }).find("transport.train_shift must be a positive"),
            std::string::npos);
}

// cfg_star-1-0: the first step's velocity is 0, so x waits at the noise until t'_1.
TEST(Svg, ZeroInitStepsStartTheGridLater) {
  // v = 1 everywhere: x(1) = x(0) + (1 - t'_N) with N zero steps.
  VelocityFnT<double> one = [](const std::vector<double>& x, double, std::vector<double>& v) {
    v.assign(x.size(), 1.0);
  };
  FlowOptions o;
  o.shift = 0.15;
  o.zero_steps = 1;
  FlowStats st;
  const double t1 = 0.15 * 0.04 / (1 - 0.85 * 0.04);  // t'_1 of 26 points
  for (const char* name : {"euler", "heun"}) {
    const std::vector<double> x = flow_sample<double>(name, 26, {0.5}, one, 0, o, &st);
    EXPECT_NEAR(x[0], 0.5 + 1 - t1, 1e-12) << name;
    EXPECT_EQ(st.nfe, flow_evaluations(name, 26, 1)) << name;
  }
  EXPECT_EQ(flow_evaluations("euler", 26, 1), 24);
  EXPECT_EQ(flow_evaluations("heun", 26, 1), 48);
  o.zero_steps = 25;
  EXPECT_NE(error_of([&] {
              flow_sample<double>("euler", 26, {0.5}, one, 0, o);
            }).find("leave none of the 25 steps"),
            std::string::npos);
  o.zero_steps = 1;
  EXPECT_NE(error_of([&] {
              flow_sample<double>("dopri5", 26, {0.5}, one, 0, o);
            }).find("euler and heun grids only"),
            std::string::npos);
}

// dinov3_sp_stats.pt's layout: "dinov3_sp_mean" / "dinov3_sp_std" [1, 1, C'], sliced to C.
TEST(Svg, FeatureStatisticsFile) {
  uvit_test::TempDir dir("svg_stats");
  const std::string p = (dir.dir / "stats.safetensors").string();
  const float mean[5] = {-0.13f, 0.01f, -0.16f, 0.04f, 9.f}, sd[5] = {0.39f, 0.37f, 0.37f, 0.4f, 0};
  save_safetensors(p, {{"dinov3_sp_mean", Array::from_f32({1, 1, 5}, mean)},
                       {"dinov3_sp_std", Array::from_f32({1, 1, 5}, sd)}});
  const LatentStats s = load_latent_stats(p, 4);  // the zero std of channel 5 is sliced off
  EXPECT_EQ(s.mean, std::vector<float>(mean, mean + 4));
  EXPECT_EQ(s.std, std::vector<float>(sd, sd + 4));
  EXPECT_NE(error_of([&] { load_latent_stats(p, 6); }).find("expected [1, 1, C] with C >= 6"),
            std::string::npos);
}

// generate() against RectifiedFlow.sample(mode "euler", cfg_mode "cfg_star-1-0") written out:
// t_seq = shifted linspace(0, 1, steps + 1); step 0 has v = 0; then v = vu + cfg (vc - vu) from
// separate conditional and unconditional passes on every channel.
TEST(Svg, GenerateMatchesTheOfficialSampleLoop) {
  const Config c = config_from(kTiny);
  auto be = make_cpu_backend();
  auto net = make_network(c, *be);
  net->init_random(3);
  // Non-trivial weights (the official init zeroes the adaLN and output layers).
  std::vector<float> p(net->num_params());
  Philox(5, 0).fill_normal(p.data(), p.size());
  for (float& v : p) v *= 0.1f;
  be->upload(net->params(), p.data(), p.size() * 4);

  const int n = 2, C = 6, S = 4, K = 6;
  const size_t numel = size_t(C) * S * S;
  const std::vector<int> labels = {3, 7};
  GenerateOptions opt;
  opt.seed = 11;
  const std::vector<float> got = generate(*net, c, opt, n, labels);

  std::vector<float> x(n * numel);
  Philox(11, 0).fill_normal(x.data(), x.size(), 0);  // generate's noise for samples 0..n-1
  const double cfg = 1.5;                            // the official cfg = our scale 0.5 + 1
  std::vector<double> ts(K);
  for (int i = 0; i < K; ++i) {
    const double t = double(i) / (K - 1);
    ts[i] = 0.15 * t / (1 + (0.15 - 1) * t);
  }
  DeviceBuffer dx(*be, x.size() * 4), dt(*be, n * 4), dy(*be, n * 4), dout(*be, x.size() * 4);
  auto velocity = [&](const std::vector<float>& xs, double t, int label_null) {
    std::vector<float> tt(n, float(t)), out(xs.size());
    std::vector<int32_t> y(n);
    for (int b = 0; b < n; ++b) y[b] = label_null >= 0 ? label_null : labels[b];
    be->upload(dx.f32(), xs.data(), xs.size() * 4);
    be->upload(dt.f32(), tt.data(), n * 4);
    be->upload(dy.as<int32_t>(), y.data(), n * 4);
    net->forward(dx.f32(), dt.f32(), dy.as<int32_t>(), nullptr, dout.f32(), n, false);
    be->download(out.data(), dout.f32(), out.size() * 4);
    return out;
  };
  for (int i = 1; i < K - 1; ++i) {  // step 0: cfg_star's zero velocity leaves x as it is
    const std::vector<float> vc = velocity(x, ts[i], -1), vu = velocity(x, ts[i], 10);
    const double h = ts[i + 1] - ts[i];
    for (size_t e = 0; e < x.size(); ++e)
      x[e] = float(x[e] + h * (vu[e] + cfg * (double(vc[e]) - vu[e])));
  }
  EXPECT_LE(rel(got, x), 2e-6);
  // Guidance on the first 3 channels only (DiT's forward_with_cfg) is a different result.
  opt.guidance_channels = 3;
  EXPECT_GT(rel(generate(*net, c, opt, n, labels), x), 1e-3);
}

// SVG's decoder (svg_decoder_z392): the VA-VAE decoder on 392 channels, no post_quant_conv.
TEST(SvgDecoder, NamedConfig) {
  const AutoencoderConfig c = autoencoder_config_from("svg_decoder_z392");
  EXPECT_TRUE(c.decoder_only);
  EXPECT_EQ(c.z_channels, 392);
  EXPECT_EQ(c.embed_dim, 392);
  EXPECT_EQ(c.downsample_factor(), 16);
  EXPECT_EQ(c.scale_factor, 1.0);
  // The twin's Decoder(z_channels=392): 194 tensors, 43,076,483 values.
  const auto shapes = autoencoder_param_shapes(c);
  for (const auto& [k, s] : shapes) EXPECT_EQ(k.rfind("decoder.", 0), 0u) << k;
  EXPECT_EQ(shapes.size(), 194u);
  EXPECT_EQ(uvit_test::param_count(shapes), 43076483);
  EXPECT_EQ(shapes.front().first, "decoder.conv_in.weight");
  EXPECT_EQ(shapes.front().second, (std::vector<int64_t>{512, 392, 3, 3}));
  EXPECT_NE(error_of([] {
              parse_autoencoder_config(R"({"embed_dim": 8, "decoder_only": true})", "x.json");
            }).find("embed_dim 8 must equal ddconfig.z_channels 4"),
            std::string::npos);
}

TEST(SvgDecoder, MatchesPyTorch) {
  NEED_TORCH_FIXTURES("uvit_svg_decoder", "autoencoder_torch.py svg-fixtures");
  const auto cfg = load_autoencoder_config((d.dir / "svg_decoder_small.json").string());
  Autoencoder ae = Autoencoder::load((d.dir / "svg_decoder_small.ckpt").string(), cfg);
  EXPECT_EQ(ae.skipped(),
            "skipped 6 tensors outside the autoencoder: encoder.* (2), extra_vit.* (1), loss.* "
            "(1), mask_token.* (1), norm_vit.* (1)");
  ae.set_latent_stats(load_latent_stats((d.dir / "svg_decoder_small_stats.pt").string(), 12));
  const Array got = ae.decode(load_npy((d.dir / "svg_decoder_small_z.npy").string()));
  EXPECT_EQ(got.shape, (std::vector<int64_t>{2, 3, 64, 96}));
  EXPECT_LE(uvit_test::rel_err(got, load_npy((d.dir / "svg_decoder_small_decoded.npy").string())),
            1e-5);
  EXPECT_NE(error_of([&] {
              ae.encode_moments(Array(DType::F32, {1, 3, 64, 64}));
            }).find("this is a decoder only"),
            std::string::npos);
}
