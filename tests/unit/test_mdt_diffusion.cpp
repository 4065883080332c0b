// MDT's generic training and sampling pieces (docs/mdt_diffusion.md): min-SNR-gamma weighting of
// the eps-MSE, power-cos guidance, and the Adan optimizer (kernel against the PyTorch reference
// tests/reference/mdt_diffusion_reference.py, config errors, bit-identical resume).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "error_of.hpp"
#include "model_compare.hpp"
#include "torch_fixtures.hpp"
#include "uvit/adm.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/objective.hpp"
#include "uvit/rng.hpp"
#include "uvit/train.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

namespace fs = std::filesystem;

#define NEED_MDT_FIXTURES()                                      \
  NEED_TORCH_FIXTURES("uvit_mdt", "mdt_diffusion_reference.py"); \
  const auto fx_t = tensors(d.dir / "mdt_diffusion.safetensors")

std::map<std::string, Array> tensors(const fs::path& p) {
  std::map<std::string, Array> t;
  for (auto& [k, a] : load_safetensors(p.string())) t.emplace(k, std::move(a));
  return t;
}

std::vector<double> f64(const Array& a) {
  const Array d = a.converted(DType::F64);
  return std::vector<double>(d.as<double>(), d.as<double>() + d.numel());
}

TrainDraw adm_draw(int t) {
  static const AdmDiffusion d = AdmDiffusion::dit("");
  const auto co = d.q_sample_coeffs(t);
  TrainDraw r;
  r.mean = co.mean, r.std = co.std, r.index = t, r.net_time = float(t);
  return r;
}

// ------------------------------------------------------------------------------ min-SNR

TEST(MinSnr, WeightsByHand) {
  // DiT's training diffusion: abar_0 = 1 - 1e-4, so snr = 0.9999 / 1e-4 = 9999 and w = 5 / 9999.
  EXPECT_NEAR(min_snr_weight(adm_draw(0), 5.0), 5.0 / 9999.0, 1e-12);
  // abar_40, abar_100 from the linear betas (numpy, float64): snr 48.4240224, 8.53666958.
  EXPECT_NEAR(min_snr_weight(adm_draw(40), 5.0), 0.103254537, 1e-9);
  EXPECT_NEAR(min_snr_weight(adm_draw(100), 5.0), 0.585708508, 1e-9);
  EXPECT_EQ(min_snr_weight(adm_draw(129), 5.0) < 1.0, true);  // snr > 5 up to t = 129
  EXPECT_EQ(min_snr_weight(adm_draw(130), 5.0), 1.0);
  EXPECT_EQ(min_snr_weight(adm_draw(999), 5.0), 1.0);
  TrainDraw d;
  d.mean = 0.9, d.std = 0.1;  // snr 81
  EXPECT_NEAR(min_snr_weight(d, 5.0), 5.0 / 81.0, 1e-15);
  EXPECT_NEAR(min_snr_weight(d, 100.0), 1.0, 0);
  d.std = 0;  // t = 0 of the continuous schedule: infinite snr, no weight
  EXPECT_EQ(min_snr_weight(d, 5.0), 0.0);
  EXPECT_EQ(min_snr_weight(d, 0.0), 1.0);  // off
}

Config with_gamma(const std::string& preset, double gamma) {
  Config c = load_config(preset);
  if (gamma > 0) apply_override(c, "train.min_snr_gamma=" + std::to_string(gamma));
  return c;
}

TEST(MinSnr, AdmHybridLossMatchesReference) {
  NEED_MDT_FIXTURES();
  // fmnist_dit_tiny has 1 input channel: the reference's [B, 4, 6] eps block (then the v block)
  // is the same memory as [B, 1, 24]; the loss is per element.
  const auto obj = make_objective(with_gamma("fmnist_dit_tiny", 5));
  const std::vector<int64_t> t = fx_t.at("minsnr.t").to_i64();
  const int B = int(t.size());
  const size_t in = 24, out_n = 48;
  std::vector<TrainDraw> draws;
  for (int64_t i : t) draws.push_back(adm_draw(int(i)));
  const std::vector<double> w = f64(fx_t.at("minsnr.weight"));
  for (int b = 0; b < B; ++b) EXPECT_NEAR(min_snr_weight(draws[b], 5.0), w[b], 1e-12 * w[b]);
  const std::vector<float> mo = fx_t.at("minsnr.model_out").to_f32(),
                           noise = fx_t.at("minsnr.noise").to_f32(),
                           x0 = fx_t.at("minsnr.x0").to_f32();
  std::vector<float> grad(B * out_n);
  const double loss =
      obj->loss(mo.data(), noise.data(), x0.data(), draws.data(), B, in, out_n, 1, grad.data());
  EXPECT_NEAR(loss, f64(fx_t.at("minsnr.loss"))[0], 1e-6 * loss);
  EXPECT_LE(uvit_test::rel_err(grad, fx_t.at("minsnr.grad").to_f32()), 1e-5);

  // The eps channels scale by w_b against the unweighted loss, the variance channels do not.
  const auto plain = make_objective(load_config("fmnist_dit_tiny"));
  std::vector<float> g0(B * out_n);
  plain->loss(mo.data(), noise.data(), x0.data(), draws.data(), B, in, out_n, 1, g0.data());
  for (int b = 0; b < B; ++b)
    for (size_t k = 0; k < out_n; ++k) {
      const double want = k < in ? w[b] * g0[b * out_n + k] : g0[b * out_n + k];
      ASSERT_NEAR(grad[b * out_n + k], want, 1e-6 * std::fabs(want) + 1e-12) << b << " " << k;
    }
}

TEST(MinSnr, EpsMseWeightsEachSample) {
  for (const char* preset : {"fmnist_uvit_tiny", "mscoco_uvit_small"}) {  // continuous, discrete
    const auto obj = make_objective(with_gamma(preset, 5)),
               plain = make_objective(load_config(preset));
    const int B = 6;
    const size_t n = 10;
    std::vector<TrainDraw> draws;
    for (int b = 0; b < B; ++b) draws.push_back(obj->draw(b / double(B) + 0.01));
    std::vector<float> out(B * n), eps(B * n), g(B * n), g0(B * n);
    Philox(3, 1).fill_normal(out.data(), out.size());
    Philox(3, 2).fill_normal(eps.data(), eps.size());
    const double loss =
        obj->loss(out.data(), eps.data(), nullptr, draws.data(), B, n, n, 2, g.data());
    plain->loss(out.data(), eps.data(), nullptr, draws.data(), B, n, n, 2, g0.data());
    double want = 0;
    int weighted = 0;
    for (int b = 0; b < B; ++b) {
      const double w = min_snr_weight(draws[b], 5.0);
      weighted += w < 1;
      for (size_t k = b * n; k < (b + 1) * n; ++k) {
        const double e = double(out[k]) - eps[k];
        want += w * e * e;
        // d loss / d out = 2 w (out - eps) / numel / accum
        ASSERT_NEAR(g[k], 2 * w * e / (B * n) / 2, 1e-6 * std::fabs(g0[k]) + 1e-12) << preset;
        ASSERT_NEAR(g[k], w * g0[k], 1e-6 * std::fabs(g0[k]) + 1e-12) << preset;
      }
    }
    EXPECT_GE(weighted, 1) << preset;  // the low-noise draws are down-weighted
    EXPECT_NEAR(loss, want / (B * n), 1e-7 * loss) << preset;  // (out - eps) rounds in fp32
  }
}

TEST(MinSnr, RefusedForFlowAndBadValues) {
  EXPECT_NE(error_of([] {
              make_objective(with_gamma("fmnist_lightningdit_tiny", 5));
            }).find("train.min_snr_gamma weights an eps-prediction loss"),
            std::string::npos);
  Config c = load_config("fmnist_dit_tiny");
  EXPECT_NE(error_of([&] {
              apply_override(c, "train.min_snr_gamma=-1");
            }).find("train.min_snr_gamma must be positive"),
            std::string::npos);
}

// --------------------------------------------------------------------------- power-cos

TEST(PowerCos, ScaleByHand) {
  EXPECT_NEAR(power_cos_scale(0.5, 1), 0.5, 1e-15);                    // (1 - cos(pi/2)) / 2
  EXPECT_NEAR(power_cos_scale(0.5, 4), 0.009607359798384785, 1e-15);   // sin^2(pi/32)
  EXPECT_NEAR(power_cos_scale(0.25, 4), 0.22733750578897677, 1e-15);   // 0.75^4 = 0.31640625
  EXPECT_NEAR(power_cos_scale(0.5, 0.01), 0.9998822759832104, 1e-15);  // MDT's demo power
  EXPECT_EQ(power_cos_scale(0.0, 4), 1.0);      // the last step (t = 0): full guidance
  EXPECT_EQ(power_cos_scale(1.0, 2), 0.0);      // pure noise: none
  EXPECT_EQ(power_cos_scale(0.3, 0), 1.0);      // power 0: constant
  EXPECT_LT(power_cos_scale(0.999, 4), 1e-20);  // MDT's first step (t = 999)
  EXPECT_THROW(power_cos_scale(1.5, 4), Error);
  EXPECT_THROW(power_cos_scale(0.5, -1), Error);
}

std::vector<float> sample_with(Network& net, const Config& cfg, double power, const char* sampler,
                               int steps) {
  GenerateOptions o;
  o.sampler = sampler;
  o.steps = steps;
  o.cfg_scale = 2.8;  // MDT's cfg 3.8
  o.cfg_power = power;
  o.seed = 5;
  return generate(net, cfg, o, 2, {1, 7});
}

TEST(PowerCos, SamplingFollowsTheSchedule) {
  auto be = make_cpu_backend();
  Config cfg = load_config("fmnist_dit_tiny");
  apply_override(cfg, "nnet.depth=2");
  auto net = make_network(cfg, *be);
  net->init_random(3);
  // adaLN-Zero starts at zero output; move the weights so guidance has something to combine.
  std::vector<float> p(net->num_params());
  be->download(p.data(), net->params(), p.size() * 4);
  std::vector<float> z(p.size());
  Philox(9, 0).fill_normal(z.data(), z.size());
  for (size_t i = 0; i < p.size(); ++i) p[i] += 0.02f * z[i];
  be->upload(net->params(), p.data(), p.size() * 4);

  for (const char* sampler : {"ddpm", "ddim", "dpm-solver++2m"}) {
    const auto preset = sample_with(*net, cfg, -1, sampler, 6);  // the preset: no cfg_power
    const auto zero = sample_with(*net, cfg, 0, sampler, 6);
    const auto four = sample_with(*net, cfg, 4, sampler, 6);
    EXPECT_EQ(zero, preset) << sampler;  // power 0 is the constant-guidance path, bit for bit
    EXPECT_GT(uvit_test::rel_err(four, preset), 1e-3) << sampler;
    // The preset's sample.cfg_power is the default.
    Config c4 = cfg;
    apply_override(c4, "sample.cfg_power=4");
    EXPECT_EQ(sample_with(*net, c4, -1, sampler, 6), four) << sampler;
  }
  // A huge power leaves only the last step (t = 0, s = 1) guided: ddim's earlier steps see
  // scale 0 = the conditional prediction alone, so the result moves towards the unguided one.
  const auto huge = sample_with(*net, cfg, 1e9, "ddim", 6);
  GenerateOptions o;
  o.sampler = "ddim", o.steps = 6, o.cfg_scale = 0, o.seed = 5;
  const auto unguided = generate(*net, cfg, o, 2, {1, 7});
  const auto guided = sample_with(*net, cfg, 0, "ddim", 6);
  EXPECT_LT(uvit_test::rel_err(huge, unguided), uvit_test::rel_err(guided, unguided));
  EXPECT_GT(uvit_test::rel_err(huge, unguided), 0);
  EXPECT_NE(error_of([&] { sample_with(*net, cfg, std::nan(""), "ddim", 6); }).find("cfg_power"),
            std::string::npos);
}

// ------------------------------------------------------------------------------- Adan

TEST(Adan, KernelMatchesReference) {
  NEED_MDT_FIXTURES();
  auto be = make_cpu_backend();
  for (const std::string c : {"default", "clip_noprox"}) {
    const std::string pre = "adan." + c + ".";
    const std::vector<double> h = f64(fx_t.at(pre + "hyper"));
    TrainSettings s;
    s.optimizer = "adan";
    s.lr = h[0], s.beta1 = h[1], s.beta2 = h[2], s.beta3 = h[3], s.eps = h[4];
    s.weight_decay = h[5], s.no_prox = h[6] != 0, s.max_grad_norm = h[7];
    AdanHyper ah;
    ah.lr = float(s.lr), ah.beta1 = float(s.beta1), ah.beta2 = float(s.beta2);
    ah.beta3 = float(s.beta3), ah.eps = float(s.eps), ah.weight_decay = float(s.weight_decay);
    ah.no_prox = s.no_prox;
    std::vector<float> p = fx_t.at(pre + "p0").to_f32();
    const size_t n = p.size();
    const std::vector<float> grads = fx_t.at(pre + "grads").to_f32();
    const int K = int(grads.size() / n);
    std::vector<float> m(n, 0.f), dd(n, 0.f), v(n, 0.f), gp(n, 0.f);
    const std::vector<double> clip = f64(fx_t.at(pre + "clip"));
    std::map<std::string, std::vector<float>> ref;
    for (const char* k : {"p", "m", "d", "v", "pre_grad"}) ref[k] = fx_t.at(pre + k).to_f32();
    for (int k = 0; k < K; ++k) {
      std::vector<float> g(grads.begin() + k * n, grads.begin() + (k + 1) * n);
      const double f = grad_clip_factor(s, std::sqrt(be->sum_squares(g.data(), n)));
      EXPECT_NEAR(f, clip[k], 1e-6 * clip[k]) << c << " step " << k + 1;
      if (f != 1.0) be->scale(g.data(), float(f), n);
      be->adan(p.data(), g.data(), m.data(), dd.data(), v.data(), gp.data(), n, ah, k + 1);
      auto at = [&](const char* key) {
        const auto& r = ref[key];
        return std::vector<float>(r.begin() + k * n, r.begin() + (k + 1) * n);
      };
      const std::string tag = c + " step " + std::to_string(k + 1);
      EXPECT_LE(uvit_test::rel_err(p, at("p")), 1e-6) << tag;
      EXPECT_LE(uvit_test::rel_err(m, at("m")), 1e-6) << tag;
      EXPECT_LE(uvit_test::rel_err(dd, at("d")), 1e-6) << tag;
      EXPECT_LE(uvit_test::rel_err(v, at("v")), 1e-6) << tag;
      EXPECT_LE(uvit_test::rel_err(gp, at("pre_grad")), 1e-6) << tag;
    }
  }
}

TEST(Adan, FirstStepByHand) {
  // Step 1: g - g_prev = 0, so d = 0; m = (1 - b1) g, n = (1 - b3) g^2; bias corrections make
  // m/bc1 = g and sqrt(n / bc3) = |g|: p -= lr (g / (|g| + eps)) = lr sign(g), then / (1 + lr wd).
  auto be = make_cpu_backend();
  std::vector<float> p{1.f, -2.f, 0.5f}, g{0.5f, -1.f, 4.f}, m(3, 0.f), d(3, 0.f), n(3, 0.f),
      gp{9.f, 9.f, 9.f};  // ignored at step 1
  AdanHyper h;
  h.lr = 0.1f, h.weight_decay = 0.5f;
  be->adan(p.data(), g.data(), m.data(), d.data(), n.data(), gp.data(), 3, h, 1);
  const double want[] = {(1 - 0.1) / 1.05, (-2 + 0.1) / 1.05, (0.5 - 0.1) / 1.05};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(p[i], want[i], 1e-6) << i;
    EXPECT_NEAR(m[i], 0.02 * g[i], 1e-7) << i;
    EXPECT_EQ(d[i], 0.f) << i;
    EXPECT_NEAR(n[i], 0.01 * g[i] * g[i], 1e-7) << i;
    EXPECT_EQ(gp[i], g[i]) << i;
  }
}

TEST(Adan, ConfigErrors) {
  Config c = load_config("fmnist_dit_tiny");
  apply_override(c, "optimizer.name=adan");  // (the preset's two betas: refused when training)
  EXPECT_NE(error_of([&] {
              train_settings(c);
            }).find("optimizer.betas must be [beta1, beta2, beta3] for adan"),
            std::string::npos);
  apply_override(c, "optimizer.betas=[0.98, 0.92, 0.99]");
  EXPECT_EQ(train_settings(c).beta3, 0.99);
  EXPECT_NE(error_of([&] {
              apply_override(c, "optimizer.name=sgd");
            }).find("optimizer.name \"sgd\" is not \"adamw\" or \"adan\""),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              apply_override(c, "optimizer.eps=0");
            }).find("optimizer.eps must be positive"),
            std::string::npos);
  Config bad = load_config("fmnist_dit_tiny");
  EXPECT_NE(error_of([&] {
              apply_override(bad, "optimizer.betas=[0.98, 1.0]");
            }).find("must lie in [0, 1)"),
            std::string::npos);
  Config a = load_config("fmnist_dit_tiny");
  apply_override(a, "optimizer.max_grad_norm=1");
  EXPECT_NE(error_of([&] { train_settings(a); }).find("are Adan options"), std::string::npos);
  a.json["optimizer"]["name"] = "adan";
  a.json["optimizer"]["betas"] = {0.98, 0.92, 0.99};
  a.json["grad_clip"] = 1.0;
  EXPECT_NE(error_of([&] { train_settings(a); }).find("Adan clips with optimizer.max_grad_norm"),
            std::string::npos);
  a.json["grad_clip"] = 0.0;
  const TrainSettings s = train_settings(a);
  EXPECT_EQ(s.optimizer, "adan");
  EXPECT_EQ(s.beta3, 0.99);
  EXPECT_EQ(s.max_grad_norm, 1.0);
  a.json["optimizer"].erase("betas");
  a.json["optimizer"].erase("weight_decay");
  const TrainSettings dflt = train_settings(a);  // adan.py's defaults
  EXPECT_EQ(dflt.beta1, 0.98);
  EXPECT_EQ(dflt.beta2, 0.92);
  EXPECT_EQ(dflt.beta3, 0.99);
  EXPECT_EQ(dflt.weight_decay, 0.0);
}

// Adan + min-SNR: 6 steps straight equal 3 steps, save, resume, 3 more, bit for bit (weights and
// the whole optimizer state); an AdamW config refuses the Adan state.
TEST(Adan, ResumeIsBitIdentical) {
  auto be = make_cpu_backend();
  Config c = test::train_config();
  c.json["optimizer"] = {{"name", "adan"},       {"lr", 2e-3},
                         {"weight_decay", 0.01}, {"betas", {0.98, 0.92, 0.99}},
                         {"max_grad_norm", 0.5}, {"eps", 1e-8}};
  c.json["train"]["min_snr_gamma"] = 5.0;
  auto data = std::make_shared<test::NoiseDataset>();
  const fs::path root =
      fs::temp_directory_path() / ("uvit_adan_resume_" + std::to_string(::getpid()));
  fs::remove_all(root);
  const auto [l1, p1] = test::train_run(c, *be, data, (root / "straight").string(), 6, false);
  test::train_run(c, *be, data, (root / "resumed").string(), 3, false);
  const auto [l2, p2] = test::train_run(c, *be, data, (root / "resumed").string(), 6, true);
  ASSERT_EQ(l2.size(), 3u);
  EXPECT_EQ(std::vector<double>(l1.begin() + 3, l1.end()), l2);
  EXPECT_EQ(p1, p2);
  std::map<std::string, std::string> meta;
  const NamedArrays s1 =
      load_safetensors((root / "straight/train_state.safetensors").string(), &meta);
  const NamedArrays s2 = load_safetensors((root / "resumed/train_state.safetensors").string());
  EXPECT_EQ(meta["optimizer"], "adan");
  ASSERT_EQ(s1.size(), 4u);
  const char* names[] = {"adan.exp_avg", "adan.exp_avg_sq", "adan.exp_avg_diff", "adan.pre_grad"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(s1[i].first, names[i]);
    EXPECT_EQ(s1[i].second.data, s2[i].second.data) << names[i];
  }
  // The run moved the weights (the update is not a no-op).
  std::vector<float> init(p1.size());
  {
    auto net = make_network(c, *be);
    net->init_random(train_settings(c).seed);
    be->download(init.data(), net->params(), init.size() * 4);
  }
  EXPECT_NE(init, p1);
  Config adamw = test::train_config();
  const std::string msg =
      error_of([&] { test::train_run(adamw, *be, data, (root / "resumed").string(), 7, true); });
  EXPECT_NE(msg.find("holds no adamw state"), std::string::npos) << msg;
  fs::remove_all(root);
}

}  // namespace

// The MDTv2 presets carry MDT's recipe (docs/mdt.md, docs/mdt_diffusion.md): Adan with max grad
// norm 1 (so no top-level grad_clip), min-SNR 5, power-cos guidance cfg 3.8 with power 4 over the
// 250-step DDPM.
TEST(MdtDiffusion, PresetsCarryTheOfficialRecipe) {
  const std::string dir = std::string(UVIT_TEST_SOURCE) + "/../configs";
  ::setenv("UVIT_CONFIG_DIR", dir.c_str(), 1);
  for (const auto& [name, lr] : {std::pair<const char*, double>{"mdt_xl_2", 3e-4},
                                 std::pair<const char*, double>{"mdt_s_2", 5e-4}}) {
    SCOPED_TRACE(name);
    const nlohmann::json j = load_config(name).json;
    EXPECT_EQ(j["optimizer"]["name"], "adan");
    EXPECT_DOUBLE_EQ(j["optimizer"]["lr"].get<double>(), lr);
    EXPECT_EQ(j["optimizer"]["betas"], nlohmann::json({0.98, 0.92, 0.99}));
    EXPECT_DOUBLE_EQ(j["optimizer"]["weight_decay"].get<double>(), 0.0);
    EXPECT_DOUBLE_EQ(j["optimizer"]["max_grad_norm"].get<double>(), 1.0);
    EXPECT_DOUBLE_EQ(j["grad_clip"].get<double>(), 0.0);
    EXPECT_DOUBLE_EQ(j["train"]["min_snr_gamma"].get<double>(), 5.0);
    EXPECT_DOUBLE_EQ(j["sample"]["cfg_power"].get<double>(), 4.0);
    EXPECT_DOUBLE_EQ(j["sample"]["scale"].get<double>(), 2.8);  // cfg 3.8
    EXPECT_EQ(j["sample"]["algorithm"], "ddpm");
    EXPECT_EQ(j["sample"]["sample_steps"], 250);
  }
}

// MDTv1's recipe (the mdtv1 branch: train_util.py's AdamW with image_train.py's lr 3e-4, no
// min-SNR weight, no clip; image_sample.py's cfg 3.8 with scale_pow 4 over 250 DDPM steps;
// run.sh's mask_ratio 0.3, decode_layer 2).
TEST(MdtDiffusion, V1PresetCarriesTheOfficialRecipe) {
  const std::string dir = std::string(UVIT_TEST_SOURCE) + "/../configs";
  ::setenv("UVIT_CONFIG_DIR", dir.c_str(), 1);
  const Config c = load_config("mdtv1_xl_2");
  const nlohmann::json& j = c.json;
  EXPECT_EQ(c.spec.name, "mdtv1");
  EXPECT_EQ(j["optimizer"]["name"], "adamw");
  EXPECT_DOUBLE_EQ(j["optimizer"]["lr"].get<double>(), 3e-4);
  EXPECT_EQ(j["optimizer"]["betas"], nlohmann::json({0.9, 0.999}));
  EXPECT_DOUBLE_EQ(j["optimizer"]["weight_decay"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["grad_clip"].get<double>(), 0.0);
  EXPECT_FALSE(j["train"].contains("min_snr_gamma"));
  EXPECT_DOUBLE_EQ(j["nnet"]["mask_ratio"].get<double>(), 0.3);
  EXPECT_EQ(j["nnet"]["decode_layer"], 2);
  EXPECT_DOUBLE_EQ(j["sample"]["cfg_power"].get<double>(), 4.0);
  EXPECT_DOUBLE_EQ(j["sample"]["scale"].get<double>(), 2.8);  // cfg 3.8
  EXPECT_EQ(j["sample"]["algorithm"], "ddpm");
  EXPECT_EQ(j["sample"]["sample_steps"], 250);
  EXPECT_EQ(load_config("fmnist_mdtv1_tiny").spec.name, "mdtv1");
}
