// The C++ U-ViT against the PyTorch twin (tests/reference): outputs to 1e-5 and every parameter
// gradient to 1e-4 relative (max-abs error over max-abs reference, per tensor).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <tuple>

#include "models/mdt.hpp"
#include "rel_err.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/model.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

struct Fixture {
  Config cfg;
  std::map<std::string, Array> t;
};

Fixture load_fixture(const std::string& name) {
  const std::string dir = UVIT_TEST_FIXTURES;
  Fixture f;
  f.cfg = load_config(dir + "/" + name + ".json");
  for (auto& [k, a] : load_safetensors(dir + "/" + name + ".safetensors")) f.t[k] = std::move(a);
  return f;
}

using uvit_test::rel_err;

struct NetRun {
  std::vector<float> out, grads;
  size_t arena = 0;
};

NetRun run_net(Network& m, const Fixture& f, bool train) {
  NamedArrays sd;
  for (const auto& e : m.table().entries()) sd.emplace_back(e.name, f.t.at("param." + e.name));
  m.load(sd, "fixture");
  std::vector<float> x = f.t.at("input.x").to_f32(), t = f.t.at("input.t").to_f32();
  std::vector<float> gout = f.t.at("input.gout").to_f32(), ctx;
  std::vector<int32_t> y;
  if (f.t.count("input.y"))
    for (auto v : f.t.at("input.y").to_i64()) y.push_back(int32_t(v));
  if (f.t.count("input.context")) ctx = f.t.at("input.context").to_f32();
  const int B = int(f.t.at("input.x").shape[0]);
  NetRun r;
  r.out.resize(gout.size());
  m.forward(x.data(), t.data(), y.empty() ? nullptr : y.data(), ctx.empty() ? nullptr : ctx.data(),
            r.out.data(), B, train);
  if (train) {
    m.zero_grad();
    m.backward(gout.data());
    r.grads.assign(m.grads(), m.grads() + m.num_params());
  }
  r.arena = m.arena_bytes();
  return r;
}

NetRun run(const Fixture& f, const NetConfig& net, bool train = true) {
  auto be = make_cpu_backend();
  UViT m(net, *be);
  return run_net(m, f, train);
}

// Output to 1e-5 and every parameter gradient to 1e-4 of the twin's (one that is zero by symmetry:
// below 1e-6 of the largest gradient).
void expect_parity(const Fixture& f, const NetRun& r, const ParamTable& table) {
  EXPECT_LE(rel_err(r.out.data(), f.t.at("output").to_f32()), 1e-5) << "output";
  double scale = 0;
  for (float g : r.grads) scale = std::max(scale, double(std::fabs(g)));
  for (const auto& e : table.entries()) {
    ASSERT_TRUE(f.t.count("grad." + e.name)) << e.name;
    if (uvit_test::zero_gradient_by_symmetry(e.name)) {
      for (size_t i = 0; i < e.numel; ++i)
        EXPECT_LE(std::fabs(r.grads[e.offset + i]), 1e-6 * scale) << "grad of " << e.name;
      continue;
    }
    EXPECT_LE(rel_err(r.grads.data() + e.offset, f.t.at("grad." + e.name).to_f32()), 1e-4)
        << "grad of " << e.name;
  }
}

class ModelParity : public ::testing::TestWithParam<std::string> {};

TEST_P(ModelParity, OutputAndGradientsMatchTorch) {
  Fixture f = load_fixture(GetParam());
  NetRun r = run(f, f.cfg.net);
  expect_parity(f, r, build_param_table(f.cfg.net));
  // Inference forward (a different buffer plan) gives the same output.
  EXPECT_EQ(run(f, f.cfg.net, false).out, r.out);
}

INSTANTIATE_TEST_SUITE_P(Cases, ModelParity,
                         ::testing::Values("cond_p2", "uncond_p4_h64", "uncond_p1_mlptime", "t2i",
                                           "cond_ckpt", "noskip_qkscale", "fmnist", "skip_add",
                                           "skip_add_linear", "skip_linear_add", "pos_sincos",
                                           "pos_none_t2i", "conv_before", "time_adaln",
                                           "time_adaln_uncond", "time_adaln_t2i", "patch_conv_p2",
                                           "patch_conv_p4"));

// DiT, Skip-DiT, LightningDiT, MDT, FiTv2 and SVG through the registry (make_network), against
// their twins in tests/reference/ (dit_torch.py, lightningdit_torch.py, ..., svg_torch.py).
class NetworkParity : public ::testing::TestWithParam<std::string> {};

TEST_P(NetworkParity, OutputAndGradientsMatchTorch) {
  Fixture f = load_fixture(GetParam());
  auto be = make_cpu_backend();
  auto m = make_network(f.cfg, *be);
  NetRun r = run_net(*m, f, true);
  expect_parity(f, r, m->table());
  auto m2 = make_network(f.cfg, *be);
  EXPECT_EQ(run_net(*m2, f, false).out, r.out);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, NetworkParity,
    ::testing::Values("dit_p2", "dit_p4_nosigma", "dit_p8", "dit_h24", "skipdit_p2",
                      "skipdit_sigma_off", "ldit_p1", "ldit_p2_qknorm_sigma",
                      "ldit_p2_plain_woshift", "ldit_p1_qknorm_norope", "mdt_p2", "mdt_odd_nosigma",
                      "fit_p2", "fit_p1_plain", "fit_rect", "fit_rect_dynntk", "fit_ntkpro2",
                      "fitv1_p2", "fitv1_rect", "fit_qkw", "fit_ada_swiglu", "fitv1_ada_swiglu",
                      "fit_online", "fit_rope_v", "fit_rms", "fit_norm_mix", "fitv1_norm_none",
                      "svg_qknorm_sigma", "svg_plain", "lavin_tiny", "lavin_p1_mqa", "mdtv1_p2",
                      "diffit_p2", "diffit_odd_nosigma"));

// MDT's masked pass (docs/mdt.md) with the twin's shuffle injected: the kept tokens through the
// encoder with the gathered relative bias, the side-interpolater, mask_token's gradient (MDTv2,
// and MDTv1 with its plain blocks and fixed len_keep).
class MdtMaskedParity : public ::testing::TestWithParam<std::string> {};

TEST_P(MdtMaskedParity, OutputAndGradientsMatchTorch) {
  Fixture f = load_fixture(GetParam());
  auto be = make_cpu_backend();
  auto m = make_network(f.cfg, *be);
  EXPECT_EQ(m->train_passes(), 2);
  std::vector<int32_t> ids;
  for (auto v : f.t.at("input.ids_shuffle").to_i64()) ids.push_back(int32_t(v));
  const int keep = int(f.t.at("input.len_keep").to_i64()[0]);
  mdt_set_mask(*m, ids, keep);
  NetRun r = run_net(*m, f, true);
  expect_parity(f, r, m->table());
  const ParamEntry& tok = m->table().at("mask_token");
  double g = 0;
  for (size_t i = 0; i < tok.numel; ++i) g += std::fabs(r.grads[tok.offset + i]);
  EXPECT_GT(g, 0) << "mask_token got no gradient";
  // The mask lasts one forward: the next training forward is the plain pass again.
  mdt_set_mask(*m, ids, keep);
  NetRun masked = run_net(*m, f, true), plain = run_net(*m, f, true);
  EXPECT_EQ(masked.out, r.out);
  EXPECT_NE(plain.out, r.out);
  EXPECT_THROW(mdt_set_mask(*m, std::vector<int32_t>(ids.size(), 0), keep), Error);
}

INSTANTIATE_TEST_SUITE_P(Cases, MdtMaskedParity,
                         ::testing::Values("mdt_p2_masked", "mdtv1_p2_masked"));

// A drawn mask (the trainer's pass 1): the same draw for the same key, another for another key;
// inference ignores the pass.
TEST(MdtMasked, DrawnMaskIsKeyed) {
  Fixture f = load_fixture("mdt_p2_masked");
  auto be = make_cpu_backend();
  auto m = make_network(f.cfg, *be);
  auto run = [&](uint64_t first) {
    m->set_train_pass(1, 1234, first);
    return run_net(*m, f, false).out;  // (inference: the pass is ignored)
  };
  const std::vector<float> eval = run(0);
  NetRun plain = run_net(*m, f, false);
  EXPECT_EQ(eval, plain.out);
  auto masked = [&](uint64_t first) {
    m->set_train_pass(1, 1234, first);
    return run_net(*m, f, true).out;
  };
  EXPECT_EQ(masked(3), masked(3));
  EXPECT_NE(masked(3), masked(4));
  EXPECT_THROW(m->set_train_pass(2, 1, 0), Error);
  auto dit = make_network(load_fixture("dit_p2").cfg, *be);
  EXPECT_EQ(dit->train_passes(), 1);
  EXPECT_THROW(dit->set_train_pass(1, 1, 0), Error);
}

// relative_position_index is a buffer of the official state_dict: loaded, and checked against the
// formula (a wrong value is refused with the tensor's name).
TEST(MdtMasked, RelativeIndexIsCheckedOnLoad) {
  Fixture f = load_fixture("mdt_p2");
  auto be = make_cpu_backend();
  auto m = make_network(f.cfg, *be);
  NamedArrays sd;
  for (const auto& e : m->table().entries()) sd.emplace_back(e.name, f.t.at("param." + e.name));
  m->load(sd, "fixture");
  for (auto& [name, a] : sd)
    if (name == "de_blocks.0.attn.rel_pos_bias.relative_position_index") {
      std::vector<float> v = a.to_f32();
      v[5] += 1;
      a = Array::from_f32(a.shape, v.data());
    }
  try {
    m->load(sd, "fixture");
    ADD_FAILURE() << "a wrong relative_position_index was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("de_blocks.0.attn.rel_pos_bias.relative_position_index"),
              std::string::npos)
        << e.what();
  }
}

TEST(ModelCheckpointing, SameGradientsLessMemory) {
  Fixture f = load_fixture("cond_p2");
  NetConfig a = f.cfg.net, b = f.cfg.net;
  a.use_checkpoint = false;
  b.use_checkpoint = true;
  NetRun ra = run(f, a), rb = run(f, b);
  EXPECT_EQ(ra.out, rb.out);
  EXPECT_EQ(ra.grads, rb.grads);
  EXPECT_LT(rb.arena, ra.arena);
}

TEST(ModelTable, OfficialParameterCounts) {
  struct Want {
    const char* preset;
    size_t tensors, params;
  };
  for (auto w :
       {Want{"cifar10_uvit_small", 164, 44255328}, Want{"celeba64_uvit_small", 164, 44292228},
        Want{"imagenet64_uvit_mid", 213, 130940292}, Want{"imagenet64_uvit_large", 261, 286827652},
        Want{"imagenet256_uvit_large", 261, 286763172},
        Want{"imagenet256_uvit_huge", 355, 500832016},
        Want{"imagenet512_uvit_large", 261, 286861524},
        Want{"imagenet512_uvit_huge", 355, 500942656}, Want{"mscoco_uvit_small", 166, 44692644},
        Want{"mscoco_uvit_small_deep", 214, 58345636}}) {
    ParamTable t = build_param_table(load_config(w.preset).net);
    EXPECT_EQ(t.entries().size(), w.tensors) << w.preset;
    EXPECT_EQ(t.total(), w.params) << w.preset;
  }
  ParamTable t = build_param_table(load_config("cifar10_uvit_small").net);
  EXPECT_EQ(t.entries().front().name, "pos_embed");
  EXPECT_EQ(t.entries()[3].name, "in_blocks.0.norm1.weight");
  EXPECT_EQ(t.entries().back().name, "final_layer.bias");
}

TEST(ModelTable, DiTParameterCounts) {
  // The official models' counts (pos_embed included: it is a Parameter there).
  struct Want {
    const char* preset;
    size_t tensors, params;
  };
  for (auto w : {Want{"dit_xl_2", 292, 675129632}, Want{"dit_s_2", 132, 32963360},
                 Want{"skip_dit_xl_2", 348, 712369184}}) {
    ParamTable t = network_param_table(load_config(w.preset));
    EXPECT_EQ(t.entries().size(), w.tensors) << w.preset;
    EXPECT_EQ(t.total(), w.params) << w.preset;
  }
  ParamTable t = network_param_table(load_config("skip_dit_xl_2"));
  EXPECT_EQ(t.entries().front().name, "pos_embed");
  EXPECT_EQ(t.entries().back().name, "skip_linears.13.linear.bias");
}

TEST(ModelTable, MDTParameterCounts) {
  // The official MDTv2 state_dicts (the int64 relative_position_index buffers included).
  for (auto [preset, tensors, params] :
       {std::tuple<const char*, size_t, size_t>{"mdt_xl_2", 394, 744164448},
        {"mdt_s_2", 188, 39306840}}) {
    ParamTable t = network_param_table(load_config(preset));
    EXPECT_EQ(t.entries().size(), tensors) << preset;
    EXPECT_EQ(t.total(), params) << preset;
  }
  ParamTable t = network_param_table(load_config("mdt_xl_2"));
  EXPECT_EQ(t.entries()[2].name, "mask_token");
  EXPECT_FALSE(t.entries()[2].frozen);  // trained with mask_ratio
  EXPECT_TRUE(t.at("sideblocks.0.attn.rel_pos_bias.relative_position_index").frozen);
  EXPECT_EQ(t.at("en_inblocks.0.attn.rel_pos_bias.relative_position_bias_table").shape,
            (std::vector<int64_t>{964, 16}));
  EXPECT_EQ(t.entries().back().name, "final_layer.adaLN_modulation.1.bias");
}

TEST(ModelTable, MDTv1ParameterCounts) {
  // MDT-XL/2 of the mdtv1 branch (decode_layer 2, the released mdt_xl2_v1_ckpt.pt's): 28 plain
  // `blocks` and the side block, no skip_linear.
  ParamTable t = network_param_table(load_config("mdtv1_xl_2"));
  EXPECT_EQ(t.entries().size(), 362u);
  EXPECT_EQ(t.total(), 701678688u);
  EXPECT_EQ(t.entries()[2].name, "mask_token");
  EXPECT_EQ(t.entries()[10].name, "blocks.0.attn.qkv.weight");
  EXPECT_TRUE(t.at("blocks.27.attn.rel_pos_bias.relative_position_index").frozen);
  EXPECT_EQ(t.at("sideblocks.0.adaLN_modulation.1.weight").shape,
            (std::vector<int64_t>{6912, 1152}));
  for (const auto& e : t.entries()) EXPECT_EQ(e.name.find("skip_linear"), std::string::npos);
  // decode_layer has no usable default, and must leave the decoder a block.
  const nlohmann::json n = {{"name", "mdtv1"}, {"input_size", 8}, {"hidden_size", 32},
                            {"num_heads", 2},  {"depth", 2},      {"num_classes", 10}};
  EXPECT_THROW(network_family("mdtv1").table(n), Error);
  nlohmann::json d = n;
  d["decode_layer"] = 0;
  EXPECT_THROW(network_family("mdtv1").table(d), Error);
  d["decode_layer"] = 1;
  EXPECT_EQ(network_family("mdtv1").table(d).entries().size(),
            3u + 7u + 3u * 12u + 4u);  // 2 blocks + side
}

// DiffiT-XL/2 (docs/diffit.md), as the official module's state_dict: 561,035,232 trained values,
// the frozen pos_embed and the 28 int64 index buffers of 256^2 entries.
TEST(ModelTable, DiffiTParameterCounts) {
  const ParamTable t = network_param_table(load_config("diffit_xl_2"));
  EXPECT_EQ(t.entries().size(), 346u);
  EXPECT_EQ(t.total(), 563165152u);
  EXPECT_EQ(t.entries()[8].name, "blocks.0.attn.relative_position_bias_table");
  EXPECT_EQ(t.entries()[10].name, "blocks.0.attn.qkv_temb.weight");
  EXPECT_EQ(t.entries().back().name, "final_layer.linear.bias");
}

// No adaLN: with every qkv_temb zero, the output no longer depends on t or y; and the time
// token's key part (rows D..2D of qkv_temb) is the same for every key of a sample, so softmax
// cancels it: its gradient is zero (the twin's too).
TEST(DiffiT, TimeEntersOnlyThroughTmsa) {
  Fixture f = load_fixture("diffit_p2");
  auto be = make_cpu_backend();
  auto m = make_network(f.cfg, *be);
  const NetRun r = run_net(*m, f, true);
  const int D = 64;
  for (int k = 0; k < 2; ++k) {
    const ParamEntry& w = m->table().at("blocks." + std::to_string(k) + ".attn.qkv_temb.weight");
    double gk = 0, gq = 0;
    for (size_t i = 0; i < size_t(D) * D; ++i) {
      gq += std::fabs(r.grads[w.offset + i]);
      gk += std::fabs(r.grads[w.offset + size_t(D) * D + i]);
    }
    EXPECT_GT(gq, 1.0);
    EXPECT_LE(gk, 1e-5 * gq) << "block " << k;  // fp32 rounding (the twin: 1e-15)
  }
  for (auto& [name, a] : f.t)
    if (name.find("qkv_temb") != std::string::npos && name.rfind("param.", 0) == 0)
      a = Array::from_f32(a.shape, std::vector<float>(a.numel(), 0.f).data());
  const NetRun base = run_net(*m, f, false);
  EXPECT_NE(base.out, r.out);
  Fixture g = f;
  std::vector<float> t = g.t.at("input.t").to_f32();
  for (float& v : t) v = 999.f - v;
  g.t["input.t"] = Array::from_f32(g.t.at("input.t").shape, t.data());
  std::vector<int64_t> y = g.t.at("input.y").to_i64();
  for (auto& v : y) v = (v + 3) % 10;
  g.t["input.y"] = Array::from_i64(g.t.at("input.y").shape, y.data());
  EXPECT_EQ(run_net(*m, g, false).out, base.out);
}

// relative_position_index is a buffer of the official state_dict: checked against the formula on
// load (the helper MDT uses too).
TEST(DiffiT, RelativeIndexIsCheckedOnLoad) {
  Fixture f = load_fixture("diffit_odd_nosigma");
  auto be = make_cpu_backend();
  auto m = make_network(f.cfg, *be);
  std::vector<float> v = f.t.at("param.blocks.2.attn.relative_position_index").to_f32();
  v[7] += 1;
  f.t["param.blocks.2.attn.relative_position_index"] =
      Array::from_f32(f.t.at("param.blocks.2.attn.relative_position_index").shape, v.data());
  try {
    run_net(*m, f, false);
    ADD_FAILURE() << "a wrong relative_position_index was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.2.attn.relative_position_index[0, 7]"),
              std::string::npos)
        << e.what();
  }
}

// LightningDiT: the released sizes (configs/lightningdit_*_1.json's nnet sections, read as JSON so
// the network is checked apart from the rest of the preset), RoPE buffers included.
nlohmann::json preset_nnet(const std::string& name) {
  const auto b = read_file(std::string(UVIT_TEST_SOURCE) + "/../configs/" + name + ".json");
  return nlohmann::json::parse(std::string(b.begin(), b.end())).at("nnet");
}

TEST(ModelTable, LightningDiTParameterCounts) {
  struct Want {
    const char* preset;
    size_t tensors, params;
    int64_t rope_dh;
  };
  const NetworkFamily& f = network_family("lightningdit");
  for (auto w : {Want{"lightningdit_xl_1", 351, 675293600, 72},
                 Want{"lightningdit_b_1", 159, 130588960, 64}}) {
    ParamTable t = f.table(preset_nnet(w.preset));
    EXPECT_EQ(t.entries().size(), w.tensors) << w.preset;
    EXPECT_EQ(t.total(), w.params) << w.preset;
    EXPECT_EQ(t.at("feat_rope.freqs_cos").shape, (std::vector<int64_t>{256, w.rope_dh}));
  }
  ParamTable t = f.table(preset_nnet("lightningdit_xl_1"));
  EXPECT_EQ(t.entries()[8].name, "feat_rope.freqs_cos");
  EXPECT_EQ(t.entries()[10].name, "blocks.0.norm1.weight");
  EXPECT_EQ(t.at("blocks.0.mlp.w12.weight").shape, (std::vector<int64_t>{6144, 1152}));
  EXPECT_EQ(t.at("blocks.0.mlp.w3.weight").shape, (std::vector<int64_t>{1152, 3072}));
  EXPECT_EQ(t.entries().back().name, "final_layer.adaLN_modulation.1.bias");
  // 2 L D (3D + D + 3 Hs) + 4 L^2 D + 12 D^2 per block, L 256, D 1152, Hs 3072, plus the
  // embeddings and the final layer: 237.25 GFLOP (2 x the ~119 G multiply-adds of DiT-XL/2's size)
  EXPECT_NEAR(f.flops(preset_nnet("lightningdit_xl_1")) / 1e9, 237.25, 0.01);
}

// Official initialisation: RMSNorm weights 1, adaLN and the output layer zero, and the RoPE tables
// equal to the PyTorch twin's (VisionRotaryEmbeddingFast in float32).
TEST(ModelTable, LightningDiTInitialisation) {
  Fixture fx = load_fixture("ldit_p2_qknorm_sigma");
  auto be = make_cpu_backend();
  auto m = make_network(fx.cfg, *be);
  m->init_random(3);
  const float* p = m->params();
  for (const auto& e : m->table().entries()) {
    const float* v = p + e.offset;
    const std::string& n = e.name;
    if (n.find("feat_rope") == 0) {
      EXPECT_LE(rel_err(v, fx.t.at("param." + n).to_f32()), 1e-6) << n;
    } else if (n.find("norm") != std::string::npos) {
      for (size_t i = 0; i < e.numel; ++i) ASSERT_EQ(v[i], 1.f) << n;
    } else if (n.find("adaLN") != std::string::npos || n.find("final_layer.linear") == 0) {
      for (size_t i = 0; i < e.numel; ++i) ASSERT_EQ(v[i], 0.f) << n;
    }
  }
}

TEST(ModelTable, LightningDiTRejectsUnsupportedSwitches) {
  const NetworkFamily& f = network_family("lightningdit");
  nlohmann::json n = {{"name", "lightningdit"}, {"input_size", 8}, {"patch_size", 1},
                      {"hidden_size", 48},      {"num_heads", 4},  {"depth", 1}};
  EXPECT_NO_THROW(f.table(n));
  auto fails = [&](nlohmann::json j, const char* what) {
    try {
      f.table(j);
      ADD_FAILURE() << "no error for " << j.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  nlohmann::json r = n;
  r["use_rope"] = true;  // head size 12, not a multiple of 4
  r["num_heads"] = 4;
  r["hidden_size"] = 40;
  fails(r, "use_rope");
  nlohmann::json q = n;
  q["use_qknorm"] = true;  // the LayerNorm form
  fails(q, "use_qknorm");
  nlohmann::json d = {{"name", "dit"}, {"use_swiglu", true}};  // a LightningDiT switch on DiT
  try {
    network_family("dit").table(d);
    ADD_FAILURE() << "dit accepted use_swiglu";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nnet.use_swiglu"), std::string::npos) << e.what();
  }
}

TEST(ModelTable, ForwardFlopsMatchTheIssue) {
  // One U-ViT-S/2 training image ~73 GFLOP (3x forward); U-ViT-H/2 ~799 GFLOP.
  EXPECT_NEAR(3 * forward_flops(load_config("cifar10_uvit_small").net) / 1e9, 73, 1.0);
  EXPECT_NEAR(3 * forward_flops(load_config("imagenet256_uvit_huge").net) / 1e9, 799, 8.0);
}

// The ablation variants change exactly the parameters they should (cifar10_uvit_small: D 512,
// 6 long skips, 257 tokens, 3 channels).
TEST(ModelTable, AblationVariantCounts) {
  const NetConfig base = load_config("cifar10_uvit_small").net;
  const ParamTable official = build_param_table(base);
  const size_t D = 512, skips = 6, N = 257, C = 3;
  auto count = [&](const char* field, const char* value) {
    NetConfig n = base;
    (std::string(field) == "skip_mode"     ? n.skip_mode
     : std::string(field) == "pos_embed"   ? n.pos_embed
     : std::string(field) == "time_cond"   ? n.time_cond
     : std::string(field) == "patch_embed" ? n.patch_embed
                                           : n.conv_position) = value;
    return build_param_table(n);
  };
  ASSERT_EQ(official.total(), 44255328u);
  EXPECT_EQ(count("skip_mode", "add").total(), official.total() - skips * (2 * D * D + D));
  EXPECT_EQ(count("skip_mode", "add").entries().size(), official.entries().size() - 2 * skips);
  for (const char* m : {"add_linear", "linear_add"}) {
    const ParamTable t = count("skip_mode", m);
    EXPECT_EQ(t.total(), official.total() - skips * D * D) << m;
    EXPECT_EQ(t.at("out_blocks.0.skip_linear.weight").shape, (std::vector<int64_t>{512, 512}));
  }
  for (const char* p : {"sincos_2d", "none"}) {
    const ParamTable t = count("pos_embed", p);
    EXPECT_EQ(t.total(), official.total() - N * D) << p;
    EXPECT_FALSE(t.find("pos_embed")) << p;
  }
  const ParamTable before = count("conv_position", "before_linear");
  EXPECT_EQ(before.total(), official.total() - (C * C * 9 + C) + (D * D * 9 + D));
  EXPECT_FALSE(before.find("final_layer.weight"));
  EXPECT_EQ(before.at("token_conv.weight").shape, (std::vector<int64_t>{512, 512, 3, 3}));
  // conv: false stays "no conv" whatever the position.
  NetConfig none = base;
  none.conv = false;
  none.conv_position = "before_linear";
  EXPECT_EQ(build_param_table(none).total(), official.total() - (C * C * 9 + C));
  // adaln: one Linear(D -> 4D) per block (13), no time token (one position fewer).
  const ParamTable ada = count("time_cond", "adaln");
  EXPECT_EQ(ada.total(), official.total() + 13 * (4 * D * D + 4 * D) - D);
  EXPECT_EQ(ada.at("mid_block.adaLN_modulation.weight").shape, (std::vector<int64_t>{2048, 512}));
  EXPECT_EQ(ada.at("pos_embed").shape, (std::vector<int64_t>{1, 256, 512}));
  // conv_stack at patch size 2: one stride-2 3x3 conv C -> D, then the 1x1 D -> D (replacing the
  // 2x2 patch conv's D x C x 4 weights).
  const ParamTable stem = count("patch_embed", "conv_stack");
  EXPECT_EQ(stem.total(), official.total() - D * C * 4 + (D * C * 9 + D) + D * D);
  EXPECT_EQ(stem.at("patch_embed.convs.0.weight").shape, (std::vector<int64_t>{512, 3, 3, 3}));
  EXPECT_EQ(stem.at("patch_embed.proj.weight").shape, (std::vector<int64_t>{512, 512, 1, 1}));
  // ... and at patch size 8: three convs of D/4, D/2, D channels.
  NetConfig p8 = base;
  p8.patch_size = 8;
  p8.patch_embed = "conv_stack";
  const ParamTable t8 = build_param_table(p8);
  EXPECT_EQ(t8.at("patch_embed.convs.0.weight").shape, (std::vector<int64_t>{128, 3, 3, 3}));
  EXPECT_EQ(t8.at("patch_embed.convs.2.weight").shape, (std::vector<int64_t>{512, 256, 3, 3}));
  EXPECT_FALSE(t8.find("patch_embed.convs.3.weight"));
}

TEST(ModelLoad, StrictNamesAndShapes) {
  auto be = make_cpu_backend();
  NetConfig n = load_config("cifar10_uvit_small").net;
  n.depth = 2;
  n.embed_dim = 64;
  n.num_heads = 2;
  UViT m(n, *be);
  NamedArrays sd = m.export_weights();
  auto expect_error = [&](NamedArrays bad, const std::string& needle) {
    try {
      m.load(bad, "w.safetensors");
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  NamedArrays missing(sd.begin() + 1, sd.end());
  expect_error(missing, "missing tensor 'pos_embed'");
  NamedArrays extra = sd;
  extra.emplace_back("module.extra", Array(DType::F32, {2}));
  expect_error(extra, "unexpected tensor 'module.extra'");
  NamedArrays wrong = sd;
  wrong[1].second = Array(DType::F32, {64, 3, 4, 4});
  expect_error(wrong, "has shape [64, 3, 4, 4]");
}

}  // namespace
