// Presets, network config parsing/validation, overrides and error messages.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "uvit/autoencoder.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using uvit::Config;
using uvit::load_config;
using uvit::NetConfig;

const std::string kConfigDir = std::string(UVIT_TEST_SOURCE) + "/../configs";

void use_source_configs() { ::setenv("UVIT_CONFIG_DIR", kConfigDir.c_str(), 1); }

// Runs f, expects a uvit::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one containing '" << parts.front() << "'";
  } catch (const uvit::Error& e) {
    std::string msg = e.what();
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    for (const std::string& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// A scratch directory for hand-written config files, removed at the end of the test.
struct TempDir {
  fs::path dir;
  TempDir() {
    dir = fs::temp_directory_path() /
          ("uvit_config_test_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    fs::path p = dir / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
};

// The official values of SPEC 5.1-5.4 (and our fmnist model), one row per preset.
struct Row {
  const char* name;
  bool t2i;
  int img, patch, chans, dim, depth, heads, num_classes;
  bool ckpt, conv;
  const char* schedule;
  int n_steps, batch;
  double lr, beta1, beta2;
  int warmup;
  const char* algorithm;
  int sample_steps, n_samples, mini_batch;
  double guidance;      // sample.scale, 0 when unguided
  double scale_factor;  // 0 for pixel models
  double p_uncond;      // 0 when the dataset has no cfg
};
// clang-format off
const Row kRows[] = {
  // name                      t2i    img p  C  D     depth H  classes ckpt   conv   schedule         n_steps  batch lr    beta1 beta2  warmup algorithm             steps n_samples mb  scale s_factor p_uncond
  {"cifar10_uvit_small",       false, 32, 2, 3, 512,  12, 8,  -1,     false, true,  "continuous_vp", 500000,  128,  2e-4, 0.99, 0.999, 2500, "euler_maruyama_sde", 1000, 50000, 500, 0,   0,       0},
  {"celeba64_uvit_small",      false, 64, 4, 3, 512,  12, 8,  -1,     false, true,  "continuous_vp", 500000,  128,  2e-4, 0.99, 0.99,  5000, "euler_maruyama_sde", 1000, 50000, 500, 0,   0,       0},
  {"imagenet64_uvit_mid",      false, 64, 4, 3, 768,  16, 12, 1000,   true,  true,  "continuous_vp", 300000,  1024, 3e-4, 0.99, 0.99,  5000, "dpm_solver",         50,   50000, 200, 0,   0,       0},
  {"imagenet64_uvit_large",    false, 64, 4, 3, 1024, 20, 16, 1000,   true,  true,  "continuous_vp", 300000,  1024, 3e-4, 0.99, 0.99,  5000, "dpm_solver",         50,   50000, 200, 0,   0,       0},
  {"imagenet256_uvit_large",   false, 32, 2, 4, 1024, 20, 16, 1001,   true,  true,  "continuous_vp", 300000,  1024, 2e-4, 0.99, 0.99,  5000, "dpm_solver",         50,   50000, 50,  0.4, 0.18215, 0.15},
  {"imagenet256_uvit_huge",    false, 32, 2, 4, 1152, 28, 16, 1001,   true,  false, "discrete_sd",   500000,  1024, 2e-4, 0.99, 0.99,  5000, "dpm_solver",         50,   50000, 50,  0.4, 0.18215, 0.1},
  {"imagenet512_uvit_large",   false, 64, 4, 4, 1024, 20, 16, 1001,   true,  true,  "continuous_vp", 500000,  1024, 2e-4, 0.99, 0.99,  5000, "dpm_solver",         50,   50000, 50,  0.7, 0.18215, 0.15},
  {"imagenet512_uvit_huge",    false, 64, 4, 4, 1152, 28, 16, 1001,   true,  false, "discrete_sd",   500000,  1024, 2e-4, 0.99, 0.99,  5000, "dpm_solver",         50,   50000, 50,  0.7, 0.18215, 0.1},
  {"mscoco_uvit_small",        true,  32, 2, 4, 512,  12, 8,  0,      false, true,  "discrete_sd",   1000000, 256,  2e-4, 0.9,  0.9,   5000, "dpm_solver",         50,   30000, 50,  1.0, 0.23010, 0.1},
  {"mscoco_uvit_small_deep",   true,  32, 2, 4, 512,  16, 8,  0,      false, true,  "discrete_sd",   1000000, 256,  2e-4, 0.9,  0.9,   5000, "dpm_solver",         50,   30000, 50,  1.0, 0.23010, 0.1},
  {"fmnist_uvit_tiny",         false, 28, 4, 1, 128,  6,  4,  11,     false, true,  "continuous_vp", 10000,   64,   1e-3, 0.9,  0.999, 200,  "euler_maruyama_sde", 250,   1000,  100, 1.0, 0,       0.1},
};
// clang-format on

// DiT's official configs (models.py DiT_models; train.py / sample_ddp.py settings): depth, width
// and heads per size, learned sigma, 1000 classes with label dropout 0.1, AdamW lr 1e-4 without
// weight decay, EMA 0.9999, 250-step DDPM with guidance w = 1.5 (s = 0.5).
TEST(ConfigPresets, DiTPresetsHaveTheOfficialValues) {
  use_source_configs();
  struct Size {
    const char* s;
    int depth, hidden, heads;
  };
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(kConfigDir))
    if (e.path().extension() == ".json") {
      const std::string net = load_config(e.path().string()).spec.name;
      files += net == "dit" || net == "skip_dit";
    }
  std::vector<std::string> names = {"dit_xl_2_512", "skip_dit_xl_2", "fmnist_dit_tiny",
                                    "fmnist_skip_dit_tiny"};
  for (Size z : {Size{"s", 12, 384, 6}, Size{"b", 12, 768, 12}, Size{"l", 24, 1024, 16},
                 Size{"xl", 28, 1152, 16}})
    for (int p : {2, 4, 8}) {
      const std::string name = uvit::cat("dit_", z.s, "_", p);
      names.push_back(name);
      SCOPED_TRACE(name);
      const Config c = load_config(name);
      const json& n = c.json["nnet"];
      EXPECT_EQ(n["name"], "dit");
      EXPECT_EQ(n["depth"], z.depth);
      EXPECT_EQ(n["hidden_size"], z.hidden);
      EXPECT_EQ(n["num_heads"], z.heads);
      EXPECT_EQ(n["patch_size"], p);
      EXPECT_EQ(n["input_size"], 32);
      EXPECT_EQ(n["in_channels"], 4);
      EXPECT_EQ(c.spec.out_chans, 8);
      EXPECT_EQ(c.spec.num_classes, 1001);
      EXPECT_EQ(c.spec.null_class, 1000);
      EXPECT_EQ(c.spec.guidance_channels, 3);
      EXPECT_EQ(c.json["schedule"], "adm");
      EXPECT_EQ(c.json["optimizer"]["lr"], 1e-4);
      EXPECT_EQ(c.json["optimizer"]["weight_decay"], 0.0);
      EXPECT_EQ(c.json["ema_rate"], 0.9999);
      EXPECT_EQ(c.json["sample"]["algorithm"], "ddpm");
      EXPECT_EQ(c.json["sample"]["sample_steps"], 250);
      EXPECT_EQ(c.json["sample"]["scale"], 0.5);
      EXPECT_EQ(c.json["dataset"]["p_uncond"], 0.1);
      EXPECT_EQ(c.json["autoencoder"]["scale_factor"], 0.18215);
    }
  EXPECT_EQ(files, names.size()) << "a DiT preset in configs/ is not checked here";
  const Config big = load_config("dit_xl_2_512");
  EXPECT_EQ(big.json["nnet"]["input_size"], 64);
  EXPECT_EQ(load_config("skip_dit_xl_2").json["nnet"]["name"], "skip_dit");
}

// LightningDiT's released configuration
// (configs/reproductions/lightningdit_xl_vavae_f16d32_800ep_cfg .yaml, docs/lightningdit.md) and
// our Fashion-MNIST model.
TEST(ConfigPresets, LightningDiTPresetsHaveTheOfficialValues) {
  use_source_configs();
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(kConfigDir))
    files += e.path().extension() == ".json" &&
             load_config(e.path().string()).spec.name == "lightningdit";
  EXPECT_EQ(files, 3u) << "a LightningDiT preset in configs/ is not checked here";
  struct Size {
    const char* name;
    int depth, hidden, heads;
  };
  for (Size z : {Size{"lightningdit_xl_1", 28, 1152, 16}, Size{"lightningdit_b_1", 12, 768, 12}}) {
    SCOPED_TRACE(z.name);
    const Config c = load_config(z.name);
    const json& n = c.json["nnet"];
    EXPECT_EQ(n["name"], "lightningdit");
    EXPECT_EQ(n["depth"], z.depth);
    EXPECT_EQ(n["hidden_size"], z.hidden);
    EXPECT_EQ(n["num_heads"], z.heads);
    EXPECT_EQ(n["patch_size"], 1);
    EXPECT_EQ(n["input_size"], 16);
    EXPECT_EQ(n["in_channels"], 32);
    EXPECT_EQ(n["mlp_ratio"], 4.0);
    EXPECT_EQ(n["learn_sigma"], false);
    EXPECT_EQ(n["use_qknorm"], false);
    EXPECT_EQ(n["use_swiglu"], true);
    EXPECT_EQ(n["use_rope"], true);
    EXPECT_EQ(n["use_rmsnorm"], true);
    EXPECT_EQ(n["wo_shift"], false);
    EXPECT_EQ(c.spec.out_chans, 32);
    EXPECT_EQ(c.spec.num_classes, 1001);
    EXPECT_EQ(c.spec.null_class, 1000);
    EXPECT_EQ(c.spec.guidance_channels, 3);
    EXPECT_EQ(c.json["schedule"], "flow");
    EXPECT_EQ(c.json["z_shape"], json({32, 16, 16}));
    EXPECT_EQ(c.json["transport"]["time_dist"], "logit_normal");
    EXPECT_EQ(c.json["transport"]["cos_loss"], true);
    EXPECT_EQ(c.json["optimizer"]["lr"], 2e-4);
    EXPECT_EQ(c.json["optimizer"]["betas"], json({0.9, 0.95}));
    EXPECT_EQ(c.json["optimizer"]["weight_decay"], 0.0);
    EXPECT_EQ(c.json["lr_scheduler"]["warmup_steps"], 0);
    EXPECT_EQ(c.json["grad_clip"], 0.0);
    EXPECT_EQ(c.json["ema_rate"], 0.9999);
    EXPECT_EQ(c.json["train"]["batch_size"], 1024);
    EXPECT_EQ(c.json["train"]["n_steps"], 80000);
    EXPECT_EQ(c.json["dataset"]["p_uncond"], 0.1);
    const json& s = c.json["sample"];
    EXPECT_EQ(s["algorithm"], "euler");
    EXPECT_EQ(s["sample_steps"], 250);
    EXPECT_EQ(s["shift"], 0.3);
    EXPECT_EQ(s["cfg"], true);
    EXPECT_EQ(s["scale"], 5.7);  // cfg 6.7 = 1 + scale
    EXPECT_EQ(s["cfg_interval"], 0.125);
    // The VA-VAE f16d32 by name, with its per-channel latent statistics (docs/autoencoder.md).
    const json& ae = c.json["autoencoder"];
    EXPECT_EQ(ae["config"], "vavae_f16d32");
    EXPECT_EQ(ae["latent_stats"], "assets/vavae/latents_stats.pt");
    const uvit::AutoencoderConfig a =
        uvit::autoencoder_config_from(ae["config"].get<std::string>());
    EXPECT_EQ(a.embed_dim, 32);
    EXPECT_EQ(a.z_channels, 32);
    EXPECT_EQ(a.ch_mult, std::vector<int>({1, 1, 2, 2, 4}));
    EXPECT_EQ(a.attn_resolutions, std::vector<int>({16}));
    EXPECT_EQ(a.scale_factor, 1.0);
  }
  const Config t = load_config("fmnist_lightningdit_tiny");
  EXPECT_EQ(t.json["schedule"], "flow");
  EXPECT_EQ(t.spec.in_chans, 1);
  EXPECT_EQ(t.spec.img_size, 28);
  EXPECT_EQ(t.spec.num_classes, 11);
  EXPECT_EQ(t.json["dataset"]["name"], "fashion_mnist");
  // No cosine term on 1-channel pixels (docs/flow.md): the cosine over one channel is a sign.
  EXPECT_EQ(t.json["transport"]["cos_loss"], false);
  EXPECT_EQ(t.json["transport"]["time_dist"], "logit_normal");
}

TEST(ConfigPresets, EveryPresetLoadsWithTheOfficialValues) {
  use_source_configs();
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(kConfigDir))
    files += e.path().extension() == ".json" && load_config(e.path().string()).is_uvit();
  EXPECT_EQ(files, std::size(kRows)) << "a U-ViT preset in configs/ has no row here";

  for (const Row& r : kRows) {
    SCOPED_TRACE(r.name);
    Config c = load_config(r.name);
    const NetConfig& n = c.net;
    const json& j = c.json;
    EXPECT_EQ(c.config_name, r.name);
    EXPECT_EQ(j["name"], r.name);
    EXPECT_EQ(n.name, r.t2i ? "uvit_t2i" : "uvit");
    EXPECT_EQ(n.img_size, r.img);
    EXPECT_EQ(n.patch_size, r.patch);
    EXPECT_EQ(n.in_chans, r.chans);
    EXPECT_EQ(n.embed_dim, r.dim);
    EXPECT_EQ(n.depth, r.depth);
    EXPECT_EQ(n.num_heads, r.heads);
    if (!r.t2i) {
      EXPECT_EQ(n.num_classes, r.num_classes);
    }
    EXPECT_EQ(n.use_checkpoint, r.ckpt);
    EXPECT_EQ(n.conv, r.conv);
    // Set explicitly in every official config, or constructor defaults.
    EXPECT_EQ(n.mlp_ratio, 4.0);
    EXPECT_FALSE(n.qkv_bias);
    EXPECT_FALSE(n.mlp_time_embed);
    EXPECT_EQ(n.qk_scale, 0.0);
    EXPECT_TRUE(j["nnet"]["qk_scale"].is_null());
    EXPECT_TRUE(n.skip);
    if (r.t2i) {
      EXPECT_EQ(n.clip_dim, 768);
      EXPECT_EQ(n.num_clip_token, 77);
      EXPECT_FALSE(j["nnet"].contains("num_classes"));
    }

    EXPECT_EQ(j["schedule"], r.schedule);
    EXPECT_EQ(j["seed"], 1234);
    EXPECT_EQ(j["pred"], "noise_pred");
    EXPECT_DOUBLE_EQ(j["ema_rate"].get<double>(),
                     std::string(r.name) == "fmnist_uvit_tiny" ? 0.998 : 0.9999);
    EXPECT_EQ(j["train"]["n_steps"], r.n_steps);
    EXPECT_EQ(j["train"]["batch_size"], r.batch);
    EXPECT_EQ(j["train"]["mode"], r.num_classes > 0 || r.t2i ? "cond" : "uncond");
    EXPECT_EQ(j["optimizer"]["name"], "adamw");
    EXPECT_DOUBLE_EQ(j["optimizer"]["lr"].get<double>(), r.lr);
    EXPECT_DOUBLE_EQ(j["optimizer"]["weight_decay"].get<double>(), 0.03);
    EXPECT_EQ(j["optimizer"]["betas"], json({r.beta1, r.beta2}));
    EXPECT_EQ(j["lr_scheduler"]["name"], "customized");
    EXPECT_EQ(j["lr_scheduler"]["warmup_steps"], r.warmup);
    EXPECT_EQ(j["sample"]["algorithm"], r.algorithm);
    EXPECT_EQ(j["sample"]["sample_steps"], r.sample_steps);
    EXPECT_EQ(j["sample"]["n_samples"], r.n_samples);
    EXPECT_EQ(j["sample"]["mini_batch_size"], r.mini_batch);
    EXPECT_EQ(j["sample"]["cfg"], r.guidance > 0);
    EXPECT_DOUBLE_EQ(j["sample"]["scale"].get<double>(), r.guidance);
    EXPECT_EQ(j["dataset"]["cfg"], r.p_uncond > 0);
    EXPECT_DOUBLE_EQ(j["dataset"]["p_uncond"].get<double>(), r.p_uncond);
    if (r.scale_factor > 0) {
      EXPECT_DOUBLE_EQ(j["autoencoder"]["scale_factor"].get<double>(), r.scale_factor);
      EXPECT_EQ(j["z_shape"], json({r.chans, r.img, r.img}));
      // The H models decode with the EMA autoencoder (SPEC 20 item 16).
      bool huge = r.dim == 1152;
      EXPECT_EQ(j["autoencoder"]["pretrained_path"],
                huge ? "assets/stable-diffusion/autoencoder_kl_ema.pth"
                     : "assets/stable-diffusion/autoencoder_kl.pth");
    } else {
      EXPECT_FALSE(j.contains("z_shape"));
      EXPECT_FALSE(j.contains("autoencoder"));
    }
    // The nnet section round-trips through NetConfig unchanged.
    EXPECT_EQ(n.to_json(), j["nnet"]);
  }
}

TEST(ConfigPresets, DerivedSizes) {
  use_source_configs();
  NetConfig c = load_config("cifar10_uvit_small").net;
  EXPECT_EQ(c.grid(), 16);
  EXPECT_EQ(c.num_patches(), 256);
  EXPECT_EQ(c.extras(), 1);
  EXPECT_EQ(c.tokens(), 257);
  EXPECT_EQ(c.head_dim(), 64);
  EXPECT_EQ(c.mlp_hidden(), 2048);
  EXPECT_EQ(c.patch_dim(), 12);
  EXPECT_EQ(c.blocks_per_side(), 6);
  EXPECT_FLOAT_EQ(c.attn_scale(), 0.125f);

  NetConfig h = load_config("imagenet256_uvit_huge").net;
  EXPECT_EQ(h.tokens(), 258);
  EXPECT_EQ(h.extras(), 2);
  EXPECT_FALSE(h.conv);
  EXPECT_EQ(h.num_classes, 1001);
  EXPECT_EQ(h.head_dim(), 72);
  EXPECT_EQ(h.patch_dim(), 16);
  EXPECT_FLOAT_EQ(h.attn_scale(), float(1 / std::sqrt(72.0)));

  NetConfig m = load_config("mscoco_uvit_small").net;
  EXPECT_TRUE(m.t2i());
  EXPECT_EQ(m.tokens(), 334);
  EXPECT_EQ(m.extras(), 78);
  EXPECT_EQ(m.head_dim(), 64);

  NetConfig f = load_config("fmnist_uvit_tiny").net;
  EXPECT_EQ(f.tokens(), 7 * 7 + 2);
  EXPECT_EQ(f.head_dim(), 32);
  EXPECT_EQ(f.patch_dim(), 16);
  EXPECT_EQ(f.blocks_per_side(), 3);
}

TEST(ConfigNet, ParsesDefaultsAndNullQkScale) {
  // Missing keys take the constructor defaults (SPEC 3.1).
  NetConfig d = uvit::net_config_from_json(json{{"name", "uvit"}});
  EXPECT_EQ(d.img_size, 224);
  EXPECT_EQ(d.patch_size, 16);
  EXPECT_EQ(d.embed_dim, 768);
  EXPECT_EQ(d.num_classes, -1);
  EXPECT_EQ(d.tokens(), 197);

  NetConfig s = uvit::net_config_from_json(json{
      {"name", "uvit"}, {"embed_dim", 64}, {"num_heads", 4}, {"qk_scale", 0.5}, {"mlp_ratio", 2}});
  EXPECT_FLOAT_EQ(s.attn_scale(), 0.5f);
  EXPECT_EQ(s.mlp_hidden(), 128);
  EXPECT_EQ(s.to_json()["qk_scale"], 0.5);
  NetConfig n =
      uvit::net_config_from_json(json{{"qk_scale", nullptr}, {"embed_dim", 64}, {"num_heads", 4}});
  EXPECT_FLOAT_EQ(n.attn_scale(), 0.25f);  // 1/sqrt(16)

  // num_classes 0 behaves like -1: no label token.
  NetConfig z = uvit::net_config_from_json(json{{"num_classes", 0}});
  EXPECT_EQ(z.extras(), 1);
  EXPECT_EQ(uvit::net_config_from_json(json{{"num_classes", 1}}).extras(), 2);
}

TEST(ConfigNet, ValidationNamesTheField) {
  auto parse = [](json j) { return [j] { uvit::net_config_from_json(j); }; };
  expect_error(parse({{"img_size", 30}, {"patch_size", 4}}),
               {"nnet.img_size 30 is not divisible by nnet.patch_size 4"});
  expect_error(parse({{"embed_dim", 100}, {"num_heads", 3}}),
               {"nnet.embed_dim 100 is not divisible by nnet.num_heads 3"});
  expect_error(parse({{"depth", -1}}), {"nnet.depth", "non-negative", "-1"});
  expect_error(parse({{"patch_size", 0}}), {"nnet.patch_size", "positive"});
  expect_error(parse({{"num_heads", 0}}), {"nnet.num_heads", "positive"});
  expect_error(parse({{"name", "vit"}}), {"nnet.name", "\"vit\""});
  expect_error(parse({{"depth", "12"}}), {"nnet.depth", "expected an integer", "string"});
  expect_error(parse({{"depth", 12.5}}), {"nnet.depth", "expected an integer"});
  expect_error(parse({{"conv", 1}}), {"nnet.conv", "expected true or false"});
  expect_error(parse({{"mlp_ratio", "4"}}), {"nnet.mlp_ratio", "expected a number"});
  expect_error(parse({{"qk_scale", -1.0}}), {"nnet.qk_scale"});
  expect_error(parse({{"depth", 1ll << 40}}), {"nnet.depth", "out of range"});
  expect_error(parse({{"img_size", 1 << 20}, {"patch_size", 1}}), {"nnet.img_size", "limit"});
  expect_error(parse({{"img_size", 8192}, {"patch_size", 1}}), {"tokens", "limit"});
  expect_error(parse({{"dropout", 0.1}}), {"nnet.dropout", "unknown key"});
  // Arguments of the other network are unknown, as in the official constructors.
  expect_error(parse({{"name", "uvit"}, {"clip_dim", 768}}), {"nnet.clip_dim", "unknown key"});
  expect_error(parse({{"name", "uvit_t2i"}, {"num_classes", 10}}),
               {"nnet.num_classes", "unknown key"});
  expect_error(parse(json::array()), {"nnet", "expected an object"});

  NetConfig bad;
  bad.img_size = 30;
  bad.patch_size = 4;
  expect_error([&] { bad.validate(); }, {"nnet.img_size 30 is not divisible by nnet.patch_size 4"});
}

// The paper's ablation fields: official defaults stay implicit, others round-trip, bad values list
// the valid ones.
TEST(ConfigNet, AblationVariantFields) {
  NetConfig d = uvit::net_config_from_json(json{{"name", "uvit"}});
  EXPECT_EQ(d.skip_mode, "concat_linear");
  EXPECT_EQ(d.pos_embed, "learned_1d");
  EXPECT_EQ(d.conv_position, "after_linear");
  EXPECT_EQ(d.time_cond, "token");
  EXPECT_EQ(d.patch_embed, "linear");
  for (const char* k : {"skip_mode", "pos_embed", "conv_position", "time_cond", "patch_embed"})
    EXPECT_FALSE(d.to_json().contains(k)) << k;
  json v = {{"skip_mode", "linear_add"},
            {"pos_embed", "sincos_2d"},
            {"conv_position", "before_linear"},
            {"time_cond", "adaln"},
            {"patch_embed", "conv_stack"},
            {"embed_dim", 64},
            {"num_heads", 4}};
  NetConfig n = uvit::net_config_from_json(v);
  EXPECT_EQ(n.skip_mode, "linear_add");
  EXPECT_TRUE(n.conv_before());
  EXPECT_FALSE(n.learned_pos());
  json back = n.to_json();
  for (const char* k : {"skip_mode", "pos_embed", "conv_position", "time_cond", "patch_embed"})
    EXPECT_EQ(back[k], v[k]) << k;
  // adaln drops the time token: [label] for class-conditional, nothing for unconditional.
  EXPECT_EQ(n.extras(), 0);
  EXPECT_EQ(uvit::net_config_from_json(json{{"time_cond", "adaln"}, {"num_classes", 10}}).extras(),
            1);
  EXPECT_EQ(uvit::net_config_from_json(back).to_json(), back);

  auto parse = [](json j) { return [j] { uvit::net_config_from_json(j); }; };
  expect_error(parse({{"skip_mode", "concat"}}),
               {"nnet.skip_mode \"concat\"", "concat_linear, add, add_linear, linear_add"});
  expect_error(parse({{"pos_embed", "rope"}}),
               {"nnet.pos_embed \"rope\"", "learned_1d, sincos_2d, none"});
  expect_error(parse({{"conv_position", "before"}}),
               {"nnet.conv_position \"before\"", "after_linear, before_linear"});
  expect_error(parse({{"time_cond", "film"}}), {"nnet.time_cond \"film\"", "token, adaln"});
  expect_error(parse({{"patch_embed", "conv"}}),
               {"nnet.patch_embed \"conv\"", "linear, conv_stack"});
  expect_error(parse({{"patch_embed", "conv_stack"}, {"img_size", 24}, {"patch_size", 3}}),
               {"nnet.patch_size 3", "power of two"});
  expect_error(parse({{"patch_embed", "conv_stack"},
                      {"img_size", 32},
                      {"patch_size", 8},
                      {"embed_dim", 6},
                      {"num_heads", 1}}),
               {"nnet.embed_dim 6", "multiple of 4"});
  expect_error(parse({{"skip_mode", 1}}), {"nnet.skip_mode", "expected a string"});
  expect_error(parse({{"pos_embed", "sincos_2d"}, {"embed_dim", 6}, {"num_heads", 1}}),
               {"nnet.embed_dim 6", "multiple of 4"});
  use_source_configs();
  Config c = load_config("cifar10_uvit_small");
  expect_error([&] { uvit::apply_override(c, "nnet.skip_mode=sum"); },
               {"nnet.skip_mode \"sum\"", "concat_linear"});
}

TEST(ConfigOverride, DepthTurnsSmallIntoDeep) {
  use_source_configs();
  Config c = load_config("mscoco_uvit_small");
  uvit::apply_override(c, "nnet.depth=16");
  EXPECT_EQ(c.net.depth, 16);
  EXPECT_EQ(c.net.blocks_per_side(), 8);
  Config deep = load_config("mscoco_uvit_small_deep");
  json a = c.json, b = deep.json;
  a.erase("name");
  b.erase("name");
  EXPECT_EQ(a, b);
}

TEST(ConfigOverride, ValuesAndTypes) {
  use_source_configs();
  Config c = load_config("cifar10_uvit_small");
  uvit::apply_override(c, "optimizer.lr=1e-4");
  EXPECT_DOUBLE_EQ(c.json["optimizer"]["lr"].get<double>(), 1e-4);
  uvit::apply_override(c, "optimizer.betas=[0.9, 0.95]");
  EXPECT_EQ(c.json["optimizer"]["betas"], json({0.9, 0.95}));
  uvit::apply_override(c, "train.n_steps=1e3");  // an integral number becomes an integer
  EXPECT_TRUE(c.json["train"]["n_steps"].is_number_integer());
  EXPECT_EQ(c.json["train"]["n_steps"], 1000);
  uvit::apply_override(c, "sample.path=out/samples");  // not JSON: taken as a string
  EXPECT_EQ(c.json["sample"]["path"], "out/samples");
  uvit::apply_override(c, "dataset.path=123");  // a string field stays a string
  EXPECT_EQ(c.json["dataset"]["path"], "123");
  uvit::apply_override(c, "sample.cfg=true");
  EXPECT_EQ(c.json["sample"]["cfg"], true);
  uvit::apply_override(c, "seed=7");
  EXPECT_EQ(c.json["seed"], 7);
  uvit::apply_override(c, "nnet.qk_scale=0.25");
  EXPECT_FLOAT_EQ(c.net.attn_scale(), 0.25f);
  uvit::apply_override(c, "nnet.qk_scale=null");
  EXPECT_FLOAT_EQ(c.net.attn_scale(), 0.125f);
  uvit::apply_override(c, " nnet.num_classes =11");
  EXPECT_EQ(c.net.num_classes, 11);
  EXPECT_EQ(c.net.tokens(), 258);
  EXPECT_EQ(c.json["nnet"]["num_classes"], 11);
}

TEST(ConfigOverride, RejectsAndLeavesConfigUnchanged) {
  use_source_configs();
  Config c = load_config("cifar10_uvit_small");
  const json before = c.json;
  expect_error([&] { uvit::apply_override(c, "optimizer.lrr=1e-4"); },
               {"optimizer.lrr", "unknown key", "lr", "weight_decay"});
  expect_error([&] { uvit::apply_override(c, "optimiser.lr=1e-4"); },
               {"unknown section optimiser", "optimizer"});
  expect_error([&] { uvit::apply_override(c, "nnet.dropout=0.1"); },
               {"nnet.dropout", "unknown key"});
  expect_error([&] { uvit::apply_override(c, "optimizer.lr"); }, {"section.key=value"});
  expect_error([&] { uvit::apply_override(c, "optimizer..lr=1"); }, {"malformed key"});
  expect_error([&] { uvit::apply_override(c, "optimizer.lr=fast"); },
               {"optimizer.lr", "expects a number"});
  expect_error([&] { uvit::apply_override(c, "train.n_steps=1.5"); }, {"train.n_steps", "integer"});
  expect_error([&] { uvit::apply_override(c, "dataset.random_flip=1"); },
               {"dataset.random_flip", "true or false"});
  expect_error([&] { uvit::apply_override(c, "optimizer=1"); }, {"optimizer is a section"});
  expect_error([&] { uvit::apply_override(c, "optimizer.lr=-1"); }, {"optimizer.lr", "positive"});
  expect_error([&] { uvit::apply_override(c, "schedule=cosine"); }, {"schedule", "cosine"});
  expect_error([&] { uvit::apply_override(c, "nnet.patch_size=3"); },
               {"config cifar10_uvit_small: nnet.img_size 32 is not divisible by nnet.patch_size 3",
                "nnet.patch_size=3"});
  expect_error([&] { uvit::apply_override(c, "nnet.depth=deep"); },
               {"nnet.depth", "expected an integer"});
  EXPECT_EQ(c.json, before);
  EXPECT_EQ(c.net.patch_size, 2);

  // The latent shape follows the network input; set on its own it must agree with it.
  Config l = load_config("imagenet256_uvit_large");
  expect_error([&] { uvit::apply_override(l, "z_shape=[4,64,64]"); },
               {"z_shape [4,64,64]", "in_chans 4, img_size 32"});
  uvit::apply_override(l, "nnet.img_size=64");
  EXPECT_EQ(l.net.tokens(), 32 * 32 + 2);
  EXPECT_EQ(l.json["z_shape"], json({4, 64, 64}));
  uvit::apply_override(l, "nnet.in_chans=8");
  EXPECT_EQ(l.json["z_shape"], json({8, 64, 64}));
}

TEST(ConfigLoad, PathsAndNetworkOnlyFiles) {
  use_source_configs();
  TempDir t;
  // A preset copied elsewhere is loaded by path; the stem names it.
  Config src = load_config("cifar10_uvit_small");
  std::string p = t.write("my_run.json", src.json.dump(2));
  Config c = load_config(p);
  EXPECT_EQ(c.config_name, "my_run");
  EXPECT_EQ(c.json, src.json);

  // A bare object of constructor arguments is wrapped as {"nnet": ...}.
  std::string q = t.write("tiny.json", R"({"name": "uvit", "img_size": 8, "patch_size": 2,
      "embed_dim": 32, "depth": 2, "num_heads": 2, "num_classes": 5})");
  Config n = load_config(q);
  EXPECT_EQ(n.config_name, "tiny");
  ASSERT_TRUE(n.json.contains("nnet"));
  EXPECT_EQ(n.json.size(), 1u);
  EXPECT_EQ(n.net.tokens(), 16 + 2);
  uvit::apply_override(n, "nnet.depth=4");
  EXPECT_EQ(n.net.depth, 4);

  // UVIT_CONFIG_DIR is searched first.
  t.write("cifar10_uvit_small.json", R"({"name": "uvit", "img_size": 8, "patch_size": 4})");
  ::setenv("UVIT_CONFIG_DIR", t.dir.c_str(), 1);
  EXPECT_EQ(load_config("cifar10_uvit_small").net.img_size, 8);
  use_source_configs();
  EXPECT_EQ(load_config("cifar10_uvit_small").net.img_size, 32);
}

TEST(ConfigLoad, ErrorsNameTheFileAndField) {
  use_source_configs();
  TempDir t;
  expect_error([] { load_config("no_such_preset"); },
               {"config 'no_such_preset' not found", "presets: ", "fmnist_uvit_tiny"});
  expect_error([&] { load_config((t.dir / "missing.json").string()); },
               {"missing.json", "not found"});

  // The second ',' is byte 23 (1-based).
  std::string bad = t.write("bad.json", "{\"nnet\": {\"depth\": 12,,\n}}");
  expect_error([&] { load_config(bad); }, {bad + ": invalid JSON at byte 23: ", "syntax error"});
  std::string empty = t.write("empty.json", "");
  expect_error([&] { load_config(empty); }, {"empty.json: invalid JSON at byte "});
  std::string arr = t.write("arr.json", "[1, 2]");
  expect_error([&] { load_config(arr); }, {"arr.json", "top level", "an array"});
  std::string nonet = t.write("nonet.json", R"({"name": "x", "seed": 1})");
  expect_error([&] { load_config(nonet); }, {"nonet.json", "no \"nnet\" section"});

  std::string div =
      t.write("div.json", R"({"nnet": {"name": "uvit", "img_size": 30, "patch_size": 4}})");
  expect_error([&] { load_config(div); },
               {"config div: nnet.img_size 30 is not divisible by nnet.patch_size 4"});
  std::string type = t.write("type.json", R"({"nnet": {"name": "uvit", "embed_dim": "big"}})");
  expect_error([&] { load_config(type); },
               {"config type: nnet.embed_dim: expected an integer, got a string"});
  std::string unk = t.write("unk.json", R"({"nnet": {"name": "uvit", "dropout": 0.1}})");
  expect_error([&] { load_config(unk); }, {"config unk: nnet.dropout: unknown key"});
  std::string sec =
      t.write("sec.json", R"({"nnet": {"name": "uvit"}, "train": {"batch_size": 0}})");
  expect_error([&] { load_config(sec); }, {"config sec: train.batch_size must be positive"});
  std::string lr = t.write("lr.json", R"({"nnet": {"name": "uvit"}, "optimizer": {"lr": "1e-4"}})");
  expect_error([&] { load_config(lr); }, {"optimizer.lr: expected a number, got a string"});
  std::string betas = t.write("betas.json", R"({"nnet": {}, "optimizer": {"betas": [0.9]}})");
  expect_error([&] { load_config(betas); }, {"optimizer.betas", "two numbers"});
  std::string sched = t.write("sched.json", R"({"nnet": {}, "schedule": "linear"})");
  expect_error([&] { load_config(sched); }, {"schedule \"linear\""});
  expect_error([] { load_config(""); }, {"empty name"});
}

}  // namespace
