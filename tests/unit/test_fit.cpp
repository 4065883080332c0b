// FiTv2 and FiTv1 (docs/fit.md): the released sizes and state_dict order, the presets' official
// values, the official initialisation, the refused switches, and the RoPE with its extrapolation
// scalings against hand-computed values and the PyTorch twin's tables
// (tests/reference/fit_fixtures.py, fixture fit_rope). The network's forward and backward parity is
// NetworkParity's fit_* cases (test_model.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "error_of.hpp"
#include "models/fit_rope.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

// Whether every value of parameter `name` satisfies `pred`.
template <class Pred>
bool all_params(const Network& m, const std::string& name, Pred pred) {
  const ParamEntry& e = m.table().at(name);
  for (size_t i = 0; i < e.numel; ++i)
    if (!pred(m.params()[e.offset + i])) return false;
  return true;
}

// adaLN-Zero: a Fashion-MNIST-shaped network's output is exactly zero at initialisation.
void expect_zero_output(Network& m) {
  const int B = 2;
  std::vector<float> x(B * 28 * 28, 0.5f), t = {0.3f, 0.9f}, out(x.size(), 1.f);
  std::vector<int32_t> y = {1, 10};
  m.forward(x.data(), t.data(), y.data(), nullptr, out.data(), B);
  for (float v : out) ASSERT_EQ(v, 0.f);
}

nlohmann::json preset_nnet(const std::string& name) {
  const auto b = read_file(std::string(UVIT_TEST_SOURCE) + "/../configs/" + name + ".json");
  return nlohmann::json::parse(std::string(b.begin(), b.end())).at("nnet");
}

const NetworkFamily& fit() { return network_family("fitv2"); }

TEST(FiT, ReleasedSizesAndStateDictOrder) {
  // FiTv2-XL/2: 517 tensors, 671.05 M (the README's 671M); 3B/2: 573 tensors, 2.97 B.
  ParamTable t = fit().table(preset_nnet("fitv2_xl_2"));
  EXPECT_EQ(t.entries().size(), 517u);
  EXPECT_EQ(t.total(), 671045776u);
  nlohmann::json b3 = preset_nnet("fitv2_xl_2");
  b3["hidden_size"] = 2304;
  b3["depth"] = 40;
  b3["num_heads"] = 24;
  b3["adaln_lora_dim"] = 576;
  const ParamTable t3 = fit().table(b3);
  EXPECT_EQ(t3.entries().size(), 573u);
  EXPECT_EQ(t3.total(), 2971928080u);
  const auto& e = t.entries();
  EXPECT_EQ(e[0].name, "x_embedder.proj.weight");
  EXPECT_EQ(e[0].shape, (std::vector<int64_t>{1152, 16}));
  EXPECT_EQ(e[7].name, "global_adaLN_modulation.1.weight");
  EXPECT_EQ(e[7].shape, (std::vector<int64_t>{6912, 1152}));
  const char* block[] = {"attn.qkv.weight",
                         "attn.qkv.bias",
                         "attn.proj.weight",
                         "attn.proj.bias",
                         "mlp.fc1_g.weight",
                         "mlp.fc1_g.bias",
                         "mlp.fc1_x.weight",
                         "mlp.fc1_x.bias",
                         "mlp.fc2.weight",
                         "mlp.fc2.bias",
                         "adaLN_modulation.1.weight",
                         "adaLN_modulation.1.bias",
                         "adaLN_modulation.2.weight",
                         "adaLN_modulation.2.bias"};
  for (size_t i = 0; i < 14; ++i) EXPECT_EQ(e[9 + i].name, std::string("blocks.0.") + block[i]);
  EXPECT_EQ(t.at("blocks.0.mlp.fc1_g.weight").shape, (std::vector<int64_t>{3072, 1152}));
  EXPECT_EQ(t.at("blocks.35.adaLN_modulation.1.weight").shape, (std::vector<int64_t>{288, 1152}));
  EXPECT_EQ(t.at("blocks.35.adaLN_modulation.2.weight").shape, (std::vector<int64_t>{6912, 288}));
  EXPECT_EQ(e[e.size() - 4].name, "final_layer.linear.weight");
  EXPECT_EQ(e[e.size() - 4].shape, (std::vector<int64_t>{16, 1152}));
  EXPECT_EQ(e.back().name, "final_layer.adaLN_modulation.1.bias");
  // The README's 147 GFLOPs are the multiply-adds of the linear layers at 256 tokens (a counter
  // that skips the attention products); ours, 2 per multiply-add, add QK^T and AV: 2 L^2 D each.
  const double attention = 36 * 2 * 256.0 * 256 * 1152;
  EXPECT_NEAR((fit().flops(preset_nnet("fitv2_xl_2")) / 2 - attention) / 1e9, 147, 0.5);
}

// configs/fitv2/config_fitv2_xl.yaml and the README's FID command (docs/fit.md), and our tiny
// model.
TEST(FiT, PresetsHaveTheOfficialValues) {
  const std::string dir = std::string(UVIT_TEST_SOURCE) + "/../configs";
  ::setenv("UVIT_CONFIG_DIR", dir.c_str(), 1);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    files += e.path().extension() == ".json" && load_config(e.path().string()).spec.name == "fitv2";
  EXPECT_EQ(files, 2u) << "a FiTv2 preset in configs/ is not checked here";
  const Config c = load_config("fitv2_xl_2");
  const nlohmann::json& j = c.json;
  EXPECT_EQ(j["schedule"], "flow");
  EXPECT_EQ(j["transport"]["time_dist"], "logit_normal");
  EXPECT_EQ(j["transport"]["cos_loss"], false);
  EXPECT_EQ(j["z_shape"], nlohmann::json({4, 32, 32}));
  EXPECT_DOUBLE_EQ(j["autoencoder"]["scale_factor"].get<double>(), 0.18215);
  EXPECT_DOUBLE_EQ(j["optimizer"]["lr"].get<double>(), 1e-4);
  EXPECT_EQ(j["optimizer"]["betas"], nlohmann::json({0.9, 0.999}));
  EXPECT_DOUBLE_EQ(j["optimizer"]["weight_decay"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["optimizer"]["eps"].get<double>(), 1e-8);
  EXPECT_EQ(j["lr_scheduler"]["warmup_steps"], 50000);
  EXPECT_DOUBLE_EQ(j["grad_clip"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["ema_rate"].get<double>(), 0.9999);
  EXPECT_EQ(j["train"]["batch_size"], 256);
  EXPECT_EQ(j["train"]["n_steps"], 2000000);
  EXPECT_EQ(j["dataset"]["p_uncond"], 0.1);
  const nlohmann::json& sm = j["sample"];
  EXPECT_EQ(sm["algorithm"], "dopri5");
  EXPECT_DOUBLE_EQ(sm["atol"].get<double>(), 1e-6);
  EXPECT_DOUBLE_EQ(sm["rtol"].get<double>(), 1e-3);
  EXPECT_DOUBLE_EQ(sm["scale"].get<double>(), 0.5);  // cfg 1.5
  EXPECT_EQ(sm["cfg"], true);
  EXPECT_EQ(c.spec.guidance_channels, 3);  // the first 3 p^2 features of each (c, p1, p2) token
  const GenerateOptions g = with_preset_defaults(c, GenerateOptions{});
  EXPECT_EQ(g.sampler, "dopri5");
  EXPECT_DOUBLE_EQ(g.cfg_scale, 0.5);
  const Config t = load_config("fmnist_fit_tiny");
  EXPECT_EQ(t.spec.img_size, 28);
  EXPECT_EQ(t.spec.in_chans, 1);
  EXPECT_EQ(t.json["dataset"]["name"], "fashion_mnist");
}

TEST(FiT, OfficialInitialisation) {
  nlohmann::json n = preset_nnet("fmnist_fit_tiny");
  Config cfg = load_config("fmnist_fit_tiny");
  auto be = make_cpu_backend();
  auto m = make_network(cfg, *be);
  m->init_random(5);
  auto all = [&](const std::string& name, auto pred) { return all_params(*m, name, pred); };
  auto zero = [](float v) { return v == 0.f; };
  for (const char* z :
       {"global_adaLN_modulation.1.weight", "global_adaLN_modulation.1.bias",
        "blocks.0.adaLN_modulation.2.weight", "blocks.5.adaLN_modulation.2.bias",
        "blocks.0.adaLN_modulation.1.bias", "final_layer.adaLN_modulation.1.weight",
        "final_layer.linear.weight", "final_layer.linear.bias", "blocks.0.mlp.fc1_g.bias"})
    EXPECT_TRUE(all(z, zero)) << z;
  // The LoRA down projection is xavier_uniform (bound sqrt(6 / (128 + 32))), not zero.
  const double bound = std::sqrt(6.0 / (128 + 32));
  EXPECT_FALSE(all("blocks.0.adaLN_modulation.1.weight", zero));
  EXPECT_TRUE(
      all("blocks.0.adaLN_modulation.1.weight", [&](float v) { return std::abs(v) <= bound; }));
  EXPECT_FALSE(all("blocks.0.mlp.fc1_x.weight", zero));
  // adaLN-Zero: the output is exactly zero at initialisation.
  expect_zero_output(*m);
}

// adaln_type "swiglu" and qk_norm_weight (docs/fit.md "Options"): initialize_weights zeroes only
// each SwiGLU modulation's fc2 (fc1_g, fc1_x xavier_uniform, zero bias); the q/k LayerNorm weights
// start at one; the output is exactly zero.
TEST(FiT, OptionsInitialisation) {
  Config cfg = load_config("fmnist_fit_tiny");  // width 128, 6 blocks, 4 heads
  apply_override(cfg, "nnet.adaln_type=swiglu");
  apply_override(cfg, "nnet.qk_norm_weight=true");
  auto be = make_cpu_backend();
  auto m = make_network(cfg, *be);
  EXPECT_FALSE(m->table().find("global_adaLN_modulation.1.weight"));
  EXPECT_EQ(m->table().at("blocks.0.adaLN_modulation.fc1_g.weight").shape,
            (std::vector<int64_t>{96, 128}));  // (D // 4) * 3
  EXPECT_EQ(m->table().at("final_layer.adaLN_modulation.fc2.weight").shape,
            (std::vector<int64_t>{256, 64}));  // SwiGLU(D, D // 2, 2D)
  m->init_random(5);
  auto all = [&](const std::string& name, auto pred) { return all_params(*m, name, pred); };
  auto zero = [](float v) { return v == 0.f; };
  for (const char* z :
       {"blocks.0.adaLN_modulation.fc2.weight", "blocks.5.adaLN_modulation.fc2.bias",
        "blocks.0.adaLN_modulation.fc1_g.bias", "final_layer.adaLN_modulation.fc2.weight",
        "final_layer.adaLN_modulation.fc1_x.bias"})
    EXPECT_TRUE(all(z, zero)) << z;
  const double bound = std::sqrt(6.0 / (128 + 96));
  for (const char* x :
       {"blocks.0.adaLN_modulation.fc1_g.weight", "blocks.3.adaLN_modulation.fc1_x.weight"}) {
    EXPECT_FALSE(all(x, zero)) << x;
    EXPECT_TRUE(all(x, [&](float v) { return std::abs(v) <= bound; })) << x;
  }
  EXPECT_TRUE(all("blocks.2.attn.q_norm.weight", [](float v) { return v == 1.f; }));
  EXPECT_TRUE(all("blocks.2.attn.k_norm.weight", [](float v) { return v == 1.f; }));
  expect_zero_output(*m);
}

// The norm options and add_rel_pe_to_v (docs/fit.md "Options"): create_norm's weights where the
// official modules register them (norm1, norm2 before attn; q_norm, k_norm between qkv and proj;
// norm_final before final_layer.linear), [D] or [head_dim], initialised to one; RoPE on v adds
// nothing; the output is exactly zero at initialisation.
TEST(FiT, NormOptionsStateDictAndInitialisation) {
  Config cfg = load_config("fmnist_fit_tiny");  // width 128, 6 blocks, 4 heads
  apply_override(cfg, "nnet.norm_type=w_rmsnorm");
  apply_override(cfg, "nnet.q_norm=w_rmsnorm");
  apply_override(cfg, "nnet.qk_norm_weight=true");  // k_norm "layernorm" becomes w_layernorm
  apply_override(cfg, "nnet.add_rel_pe_to_v=true");
  auto be = make_cpu_backend();
  auto m = make_network(cfg, *be);
  const auto& e = m->table().entries();
  size_t i = 0;
  while (e[i].name != "blocks.0.norm1.weight") ++i;
  const char* block[] = {"norm1.weight",     "norm2.weight",       "attn.qkv.weight",
                         "attn.qkv.bias",    "attn.q_norm.weight", "attn.k_norm.weight",
                         "attn.proj.weight", "attn.proj.bias"};
  for (const char* n : block) EXPECT_EQ(e[i++].name, std::string("blocks.0.") + n);
  EXPECT_EQ(m->table().at("blocks.0.norm2.weight").shape, (std::vector<int64_t>{128}));
  EXPECT_EQ(m->table().at("blocks.5.attn.q_norm.weight").shape, (std::vector<int64_t>{32}));
  while (e[i].name != "final_layer.norm_final.weight") ++i;
  EXPECT_EQ(e[i + 1].name, "final_layer.linear.weight");
  // 6 blocks x 4 weights + norm_final over the plain network's tensors.
  Config plain = load_config("fmnist_fit_tiny");
  EXPECT_EQ(e.size(), make_network(plain, *be)->table().entries().size() + 6 * 4 + 1);
  m->init_random(3);
  for (const char* n :
       {"blocks.0.norm1.weight", "blocks.5.norm2.weight", "blocks.2.attn.q_norm.weight",
        "blocks.2.attn.k_norm.weight", "final_layer.norm_final.weight"})
    EXPECT_TRUE(all_params(*m, n, [](float v) { return v == 1.f; })) << n;
  expect_zero_output(*m);
  // norm_type "none" (nn.Identity) and "w_layernorm": no weights, or one [D] per norm.
  apply_override(plain, "nnet.norm_type=none");
  EXPECT_FALSE(make_network(plain, *be)->table().find("blocks.0.norm1.weight"));
  apply_override(plain, "nnet.norm_type=w_layernorm");
  EXPECT_EQ(make_network(plain, *be)->table().at("final_layer.norm_final.weight").shape,
            (std::vector<int64_t>{128}));
}

TEST(FiT, RefusesWhatIsNotFiTv2) {
  const nlohmann::json n = {{"name", "fitv2"},  {"input_size", 8}, {"hidden_size", 64},
                            {"num_heads", 4},   {"depth", 1},      {"adaln_lora_dim", 8},
                            {"num_classes", 10}};
  EXPECT_NO_THROW(fit().table(n));
  auto err = [&](const char* key, nlohmann::json v) {
    nlohmann::json j = n;
    j[key] = v;
    return error_of([&] { fit().table(j); });
  };
  EXPECT_NE(err("learn_sigma", true).find("learn_sigma"), std::string::npos);
  // FiTv1's ADM variant: use_sit false with or without the variance output; the official assert.
  nlohmann::json v1 = n;
  v1["use_sit"] = false;
  EXPECT_EQ(fit().spec({{"nnet", v1}}).out_chans, 4);
  v1["learn_sigma"] = true;
  EXPECT_EQ(fit().spec({{"nnet", v1}}).out_chans, 8);
  EXPECT_NE(err("learn_sigma", true).find("use_sit"), std::string::npos);
  nlohmann::json tc = n;
  tc["time_shifting"] = 2;
  tc["time_clamp"] = false;
  EXPECT_NE(error_of([&] { fit().table(tc); }).find("nnet.time_clamp"), std::string::npos);
  EXPECT_NE(err("adaln_type", "gated").find("nnet.adaln_type"), std::string::npos);
  // create_norm's "rmsnorm" fails officially (RMSNorm takes no include_weight): refused, saying so.
  for (const char* k : {"norm_type", "q_norm", "k_norm"}) {
    EXPECT_NE(
        err(k, "rmsnorm").find(std::string("nnet.") + k + ": \"rmsnorm\" fails in the official"),
        std::string::npos);
    EXPECT_NE(err(k, "batchnorm").find(std::string("nnet.") + k), std::string::npos);
    EXPECT_NE(err(k, "LayerNorm").find("lower case"), std::string::npos);
  }
  EXPECT_NE(err("add_rel_pe_to_v", 1).find("nnet.add_rel_pe_to_v"), std::string::npos);
  EXPECT_NE(err("custom_freqs", "ntk").find("ntk-aware-pro2"), std::string::npos);
  EXPECT_NE(err("custom_freqs", "ntk-aware").find("ori_max_pe_len"), std::string::npos);
  EXPECT_NE(err("input_size", nlohmann::json{8, 5}).find("patch_size"), std::string::npos);
  EXPECT_NE(err("adaln_lora_dim", nullptr).find("adaln_lora_dim"), std::string::npos);
  EXPECT_NE(err("online_rope", true).find("nnet.online_rope"), std::string::npos);
  // online_rope with yarn: the official online path reads an mscale only the cached path sets.
  nlohmann::json on = n;
  on["online_rope"] = true;
  on["ori_max_pe_len"] = 16;
  on["custom_freqs"] = "yarn";
  EXPECT_NE(error_of([&] { fit().table(on); }).find("online_rope needs"), std::string::npos);
  on["custom_freqs"] = "ntk-aware";
  on["input_size"] = 600;  // past the 256 cached positions: fine online
  EXPECT_EQ(fit().spec({{"nnet", on}}).img_size, 600);
  EXPECT_NE(err("pos_embed", 1).find("unknown key"), std::string::npos);
  // A non-square input reaches the NetSpec as height and width.
  nlohmann::json r = n;
  r["input_size"] = {4, 8};
  const NetSpec s = fit().spec({{"nnet", r}});
  EXPECT_EQ(s.img_size, 4);
  EXPECT_EQ(s.width(), 8);
  EXPECT_EQ(s.in_numel(), 4u * 4 * 8);
}

// FiTv1-XL/2 (configs/fit/config_fit_xl.yaml): 347 tensors, 823,599,392 values (the README's
// 824M), adaLN "normal" (one Linear(D, 6D) per block, no global modulation), SwiGLU-large (hidden
// 4D) and the learned-sigma head (p^2 2C = 32 outputs).
TEST(FiT, V1ReleasedSizesAndStateDictOrder) {
  const NetworkFamily& v1 = network_family("fitv1");
  const nlohmann::json nn = preset_nnet("fitv1_xl_2");
  const ParamTable t = v1.table(nn);
  EXPECT_EQ(t.entries().size(), 347u);
  EXPECT_EQ(t.total(), 823599392u);
  const auto& e = t.entries();
  EXPECT_EQ(e[6].name, "y_embedder.embedding_table.weight");
  EXPECT_EQ(e[6].shape, (std::vector<int64_t>{1001, 1152}));
  const char* block[] = {
      "attn.qkv.weight",  "attn.qkv.bias",  "attn.proj.weight",          "attn.proj.bias",
      "mlp.fc1_g.weight", "mlp.fc1_g.bias", "mlp.fc1_x.weight",          "mlp.fc1_x.bias",
      "mlp.fc2.weight",   "mlp.fc2.bias",   "adaLN_modulation.1.weight", "adaLN_modulation.1.bias"};
  for (size_t i = 0; i < 12; ++i) EXPECT_EQ(e[7 + i].name, std::string("blocks.0.") + block[i]);
  EXPECT_EQ(t.at("blocks.27.mlp.fc1_x.weight").shape, (std::vector<int64_t>{4608, 1152}));
  EXPECT_EQ(t.at("blocks.27.adaLN_modulation.1.weight").shape, (std::vector<int64_t>{6912, 1152}));
  EXPECT_EQ(e[e.size() - 4].name, "final_layer.linear.weight");
  EXPECT_EQ(e[e.size() - 4].shape, (std::vector<int64_t>{32, 1152}));
  // The README's 153 GFLOPs: the linear layers' multiply-adds at 256 tokens (as for FiTv2).
  const double attention = 28 * 2 * 256.0 * 256 * 1152;
  EXPECT_NEAR((v1.flops(nn) / 2 - attention) / 1e9, 153, 1.0);
  // The preset spells out the constructor's defaults: the same network from {"name": "fitv1"}.
  const ParamTable d = v1.table({{"name", "fitv1"}});
  EXPECT_EQ(d.total(), t.total());
  EXPECT_EQ(v1.full_config({{"name", "fitv1"}}), v1.full_config(nn));
}

// config_fit_xl.yaml and the README's FiTv1 FID command (sample_fit_ddp.py: ADM p_sample_loop over
// 250 respaced steps, cfg 1.5 on 3 channels), and the tiny model.
TEST(FiT, V1PresetsHaveTheOfficialValues) {
  const std::string dir = std::string(UVIT_TEST_SOURCE) + "/../configs";
  ::setenv("UVIT_CONFIG_DIR", dir.c_str(), 1);
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    files += e.path().extension() == ".json" && load_config(e.path().string()).spec.name == "fitv1";
  EXPECT_EQ(files, 2u) << "a FiTv1 preset in configs/ is not checked here";
  const Config c = load_config("fitv1_xl_2");
  const nlohmann::json& j = c.json;
  EXPECT_EQ(j["schedule"], "adm");
  EXPECT_EQ(j["pred"], "noise_pred");
  EXPECT_EQ(j["z_shape"], nlohmann::json({4, 32, 32}));
  EXPECT_DOUBLE_EQ(j["autoencoder"]["scale_factor"].get<double>(), 0.18215);
  EXPECT_DOUBLE_EQ(j["optimizer"]["lr"].get<double>(), 1e-4);
  EXPECT_EQ(j["optimizer"]["betas"], nlohmann::json({0.9, 0.999}));
  EXPECT_DOUBLE_EQ(j["optimizer"]["weight_decay"].get<double>(), 0.0);
  // lr_scheduler "constant" (get_constant_schedule) ignores lr_warmup_steps 500.
  EXPECT_EQ(j["lr_scheduler"]["warmup_steps"], 0);
  EXPECT_DOUBLE_EQ(j["grad_clip"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(j["ema_rate"].get<double>(), 0.9999);
  EXPECT_EQ(j["train"]["batch_size"], 256);
  EXPECT_EQ(j["train"]["n_steps"], 2000000);
  // data.params.train.target_len: packed native-aspect latents of at most 256 tokens.
  EXPECT_EQ(j["dataset"]["max_tokens"], 256);
  EXPECT_EQ(c.spec.in_chans, 4);
  EXPECT_EQ(c.spec.out_chans, 8);          // learn_sigma: eps, then the variance values
  EXPECT_EQ(c.spec.guidance_channels, 3);  // forward_with_cfg's C_cfg = 3 p^2 of (B, C, N)
  const GenerateOptions g = with_preset_defaults(c, GenerateOptions{});
  EXPECT_EQ(g.sampler, "ddpm");
  EXPECT_EQ(g.steps, 250);
  EXPECT_DOUBLE_EQ(g.cfg_scale, 0.5);  // cfg 1.5
  const Config t = load_config("fmnist_fitv1_tiny");
  EXPECT_EQ(t.spec.in_chans, 1);
  EXPECT_EQ(t.spec.out_chans, 2);
  EXPECT_EQ(t.json["schedule"], "adm");
  EXPECT_EQ(t.json["dataset"]["max_tokens"], 49);  // the whole 7 x 7 grid
}

// adaLN-Zero with the learned-sigma head: both halves of the output are exactly zero at
// initialisation, and the ADM objective takes the 2C output.
TEST(FiT, V1OfficialInitialisation) {
  Config cfg = load_config("fmnist_fitv1_tiny");
  auto be = make_cpu_backend();
  auto m = make_network(cfg, *be);
  m->init_random(7);
  EXPECT_THROW(m->table().at("global_adaLN_modulation.1.weight"), Error);
  const int B = 2;
  std::vector<float> x(B * 28 * 28, 0.5f), t = {3.f, 900.f}, out(2 * x.size(), 1.f);
  std::vector<int32_t> y = {1, 10};
  m->forward(x.data(), t.data(), y.data(), nullptr, out.data(), B);
  for (float v : out) ASSERT_EQ(v, 0.f);
}

// Hand values (Python float64): ntk-aware base' = 1e4 * 1.25^(36/34) = 12665.1577069347 for a
// 20-token axis trained at 16; pair k's frequency base'^(-2k/36).
TEST(FiT, RopeFrequenciesByHand) {
  FitRope r;
  const auto normal = fit_rope_freqs(r, 36, 20);
  EXPECT_FLOAT_EQ(normal[1], float(std::pow(1e4, -2.0 / 36)));
  r.custom_freqs = "ntk-aware";
  r.ori_max_pe_len = 16;
  const auto f = fit_rope_freqs(r, 36, 20);
  ASSERT_EQ(f.size(), 18u);
  EXPECT_FLOAT_EQ(f[0], 1.f);
  EXPECT_NEAR(f[1], 0.5916667839740939, 2e-7);
  EXPECT_NEAR(f[5], 0.0725080029734142, 2e-8);
  EXPECT_NEAR(f[17], 0.0001334480429760047, 2e-10);
  // An axis no longer than the training one is not scaled (the scale is clamped at 1).
  EXPECT_EQ(fit_rope_freqs(r, 36, 10), normal);
  r.custom_freqs = "linear";
  EXPECT_NEAR(fit_rope_freqs(r, 36, 20)[1], normal[1] / 1.25, 1e-7);
  // Magnitudes: sqrt(ln(2 L) / ln(L_train)) with the official doubling of L.
  r.custom_freqs = "ntk-aware-pro2";
  EXPECT_NEAR(fit_rope_magnitude(r, 20, 20), 1.0979444538417418, 1e-6);
  EXPECT_NEAR(fit_rope_magnitude(r, 16, 16), 1.0606601717798212, 1e-6);  // sqrt(9/8)
  EXPECT_EQ(fit_rope_magnitude(r, 8, 8), 1.f);                           // 2 * 64 <= 256
  r.custom_freqs = "ntk-aware-pro1";
  r.ori_max_pe_len = 4;
  EXPECT_NEAR(fit_rope_magnitude(r, 6, 4), 1.3388357817001226, 1e-6);
  r.custom_freqs = "yarn";
  EXPECT_NEAR(fit_rope_magnitude(r, 8, 30), 1.2014903020542265, 1e-6);
  r.custom_freqs = "ntk-aware";
  EXPECT_EQ(fit_rope_magnitude(r, 8, 30), 1.f);
}

// Every scaling's cos and sin tables against the twin's module (float32 both; cos/sin may differ
// by an ulp of the argument's rounding).
TEST(FiT, RopeTablesMatchTheTwin) {
  std::map<std::string, Array> t;
  std::map<std::string, std::string> meta;
  for (auto& [k, a] : load_safetensors(std::string(UVIT_TEST_FIXTURES) + "/fit_rope.safetensors"))
    t[k] = a;
  meta = read_safetensors_metadata(std::string(UVIT_TEST_FIXTURES) + "/fit_rope.safetensors");
  int cases = 0;
  for (int i = 0; meta.count("case" + std::to_string(i)); ++i, ++cases) {
    const std::string spec = meta.at("case" + std::to_string(i));
    SCOPED_TRACE(spec);
    std::vector<std::string> f;
    size_t a = 0;
    for (size_t b; (b = spec.find(',', a)) != std::string::npos; a = b + 1)
      f.push_back(spec.substr(a, b - a));
    f.push_back(spec.substr(a));
    ASSERT_EQ(f.size(), 8u);
    FitRope r;
    r.custom_freqs = f[0];
    const int gh = std::stoi(f[1]), gw = std::stoi(f[2]), dh = std::stoi(f[3]);
    r.decouple = f[4] == "True";
    r.ori_max_pe_len = std::stoi(f[5]);
    r.max_pe_len_h = std::stoi(f[6]);
    r.max_pe_len_w = std::stoi(f[7]);
    std::vector<float> c(size_t(gh) * gw * dh), s(c.size());
    fit_rope_tables(r, gh, gw, dh, c.data(), s.data());
    const auto wc = t.at("case" + std::to_string(i) + ".cos").to_f32();
    const auto ws = t.at("case" + std::to_string(i) + ".sin").to_f32();
    ASSERT_EQ(wc.size(), c.size());
    double d = 0;
    for (size_t k = 0; k < c.size(); ++k)
      d = std::max({d, double(std::abs(c[k] - wc[k])), double(std::abs(s[k] - ws[k]))});
    EXPECT_LE(d, 2e-6);
  }
  EXPECT_EQ(cases, 10);
}

}  // namespace
