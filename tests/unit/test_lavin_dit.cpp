// LaVin-DiT (docs/lavin_dit.md) beyond the network parity of NetworkParity: the official preset's
// parameter count, the sampler against the twin's float64 run of inference.py's loop, the time
// tables, the latent normalisation and the one-line errors.
#include <gtest/gtest.h>

#include <cmath>

#include "models/lavin_dit.hpp"
#include "rel_err.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/lavin.hpp"
#include "uvit/network.hpp"

using namespace uvit;

namespace {

nlohmann::json preset_3b() {
  return {{"name", "lavin_dit"}, {"input_size", 64},  {"num_frames", 9},
          {"patch_size", 2},     {"in_channels", 16}, {"hidden_size", 2304},
          {"depth", 22},         {"num_heads", 32},   {"kv_group", 4}};
}

TEST(LavinDiT, PresetHasTheOfficialCounts) {
  // LaVinDiT_3B_2: 502 tensors, 3,398,976,064 values (the twin's state_dict on the meta device).
  const ParamTable t = network_family("lavin_dit").table(preset_3b());
  EXPECT_EQ(t.entries().size(), 502u);
  EXPECT_EQ(t.total(), size_t(3398976064ull));
  EXPECT_EQ(t.entries().front().name, "prompt_embed");
  EXPECT_EQ(t.entries().back().name, "final_layer.adaLN_modulation.1.bias");
  EXPECT_EQ(t.at("blocks.0.joint_attn.x_k.weight").shape, (std::vector<int64_t>{576, 2304}));
  EXPECT_EQ(t.at("blocks.21.cond_mlp.gate_proj.weight").shape, (std::vector<int64_t>{6144, 2304}));
}

TEST(LavinDiT, PresetsLoad) {
  const Config c = load_config("lavin_dit_3b_2");
  EXPECT_EQ(c.json["nnet"], preset_3b());
  EXPECT_EQ(c.spec.context_tokens, 9);
  EXPECT_EQ(c.spec.context_dim, 16 * 64 * 64);
  EXPECT_EQ(c.spec.in_chans, 16);
  EXPECT_FALSE(c.spec.class_conditional());
  const Config t = load_config("lavin_dit_tiny");
  EXPECT_EQ(network_param_table(t).entries().size(), 2u * 7 + 2u * 22 + 4);
}

TEST(LavinDiT, BadFieldsAreOneLineErrors) {
  const auto& f = network_family("lavin_dit");
  auto bad = [&](const char* k, nlohmann::json v) {
    nlohmann::json j = preset_3b();
    j[k] = v;
    try {
      f.table(j);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_NE(bad("kv_group", 5).find("kv_group"), std::string::npos);
  EXPECT_NE(bad("num_heads", 256).find("head_dim"), std::string::npos);  // Dh 9: no even thirds
  EXPECT_NE(bad("input_size", 63).find("patch_size"), std::string::npos);
  EXPECT_NE(bad("mlp_ratio", 4).find("unknown field"), std::string::npos);
}

TEST(LavinSampling, TimeTablesAndLatentNormalisation) {
  const std::vector<double> t = lavin_time_table(20);
  ASSERT_EQ(t.size(), 20u);
  EXPECT_EQ(t.front(), 0.0);
  EXPECT_EQ(t.back(), 1.0);
  EXPECT_EQ(t[10], double(0.0524f));
  EXPECT_EQ(lavin_time_table(30).size(), 30u);
  EXPECT_EQ(lavin_time_table(40).size(), 40u);
  EXPECT_THROW(lavin_time_table(25), Error);
  std::vector<float> z = {1.032470703125f, 0.032470703125f, -2.f};
  lavin_normalize_latents(z);
  EXPECT_NEAR(z[0], 1.08936170213, 1e-6);
  EXPECT_EQ(z[1], 0.f);
  lavin_denormalize_latents(z);
  EXPECT_NEAR(z[2], -2.f, 1e-6);
}

TEST(LavinSampling, MatchesTheOfficialLoop) {
  const std::string dir = UVIT_TEST_FIXTURES;
  const Config cfg = load_config(dir + "/lavin_tiny.json");
  std::map<std::string, Array> f;
  for (auto& [k, a] : load_safetensors(dir + "/lavin_sampling.safetensors")) f[k] = std::move(a);
  auto be = make_cpu_backend();
  auto net = make_network(cfg, *be);
  NamedArrays sd;
  for (const auto& e : net->table().entries()) sd.emplace_back(e.name, f.at("param." + e.name));
  net->load(sd, "lavin_sampling");
  const std::vector<float> frames = f.at("input.frames").to_f32(),
                           noise = f.at("input.noise").to_f32();
  // cfg 1.5: 19 steps, each a 3-frame conditional and a 2-frame unconditional pass.
  EXPECT_LE(uvit_test::rel_err(lavin_sample(*net, frames, noise, 20, 1.5).data(),
                               f.at("output").to_f32()),
            1e-5);
  EXPECT_LE(uvit_test::rel_err(lavin_sample(*net, frames, noise, 20, 1.0).data(),
                               f.at("output_nocfg").to_f32()),
            1e-5);
  EXPECT_EQ(net->spec().context_tokens, 3);  // the preset's frames again after sampling
  EXPECT_THROW(lavin_sample(*net, frames, noise, 21, 1.5), Error);
  EXPECT_THROW(lavin_sample(*net, std::vector<float>(7), noise, 20, 1.5), Error);
}

TEST(LavinSampling, OtherNetworksHaveNoFrames) {
  const std::string dir = UVIT_TEST_FIXTURES;
  auto be = make_cpu_backend();
  auto dit = make_network(load_config(dir + "/dit_p2.json"), *be);
  EXPECT_THROW(lavin_set_frames(*dit, 2), Error);
}

}  // namespace
