// The whole network, the samplers and the trainer on the CUDA backend against the CPU backend:
// fp32 to 1e-5 (outputs) / 1e-4 (gradients), bf16 (also with cuDNN's attention,
// UVIT_ATTENTION=cudnn) to the tolerances in docs/kernels.md.
// Skipped, saying so, without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "model_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/generate.hpp"
#include "uvit/model.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;
using namespace uvit;
using namespace uvit::test;

namespace {

// The network of config c on every GPU precision against the CPU (fp32): forward (training and
// inference) and every parameter gradient.
void expect_matches_cpu(const Config& c) {
  const int B = 3;
  auto cpu = make_cpu_backend();
  const Result ref = run_net(*cpu, c, B, true);
  const Result ref_inf = run_net(*cpu, c, B, false);
  const ParamTable table = network_param_table(c);
  for (const char* prec : {"fp32", "bf16", "tf32", "bf16+cudnn"}) {
    // bf16+cudnn: bf16 with cuDNN's SDPA as the attention, held to the bf16 bounds.
    auto gpu = std::string(prec) == "bf16+cudnn" ? make_cudnn_attention_backend()
                                                 : make_backend("cuda", prec);
    const Result g = run_net(*gpu, c, B, true);
    const Result gi = run_net(*gpu, c, B, false);
    // tf32 (fp32 activations, TF32 GEMMs) is held to the bf16 bounds: between the two in error.
    const bool bf = std::string(prec) != "fp32";
    std::string worst;
    const double eo = rel(g.out, ref.out), ei = rel(gi.out, ref_inf.out);
    const double eg = worst_grad(table, g.grads, ref.grads, &worst);
    std::printf("[%s %s] forward %.3g (inference %.3g), worst gradient %.3g (%s)\n",
                c.config_name.c_str(), prec, eo, ei, eg, worst.c_str());
    EXPECT_LE(eo, bf ? 3e-2 : 1e-5) << prec;
    EXPECT_LE(ei, bf ? 3e-2 : 1e-5) << prec;
    EXPECT_LE(eg, bf ? 1e-1 : 1e-4) << prec << " " << worst;
  }
}

}  // namespace

class CudaModel : public ::testing::TestWithParam<int> {};

TEST_P(CudaModel, ForwardAndGradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  expect_matches_cpu(config_from(kConfigs[GetParam()]));
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaModel, ::testing::Range(0, int(std::size(kConfigs))));

// FiT's other norm options (docs/fit.md "Options"), composed on the GPU from the LayerNorm,
// RMSNorm, copy and axpy kernels (CudaModel's fit_norms has RMSNorms over D and the gathered q
// RMSNorm + k LayerNorm pair): weighted LayerNorms over D (a zero bias whose gradient goes to a
// sink) with SwiGLU modulations; and on FiTv1 (learned sigma) norm_type none (identities) with a
// k RMSNorm alone (one gathered part, at column D) and RoPE on v.
TEST(CudaModelFitNorms, WeightedLayerNormAndIdentityMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (const char* json : {
           R"({"name": "fit_norm_mix", "nnet": {"name": "fitv2", "input_size": [8, 16],
               "patch_size": 2, "in_channels": 4, "hidden_size": 144, "depth": 2,
               "num_heads": 2, "num_classes": 10, "adaln_type": "swiglu",
               "norm_type": "w_layernorm", "q_norm": "w_rmsnorm", "k_norm": "layernorm"}})",
           R"({"name": "fitv1_norm_none", "nnet": {"name": "fitv1", "input_size": 8,
               "patch_size": 2, "in_channels": 4, "hidden_size": 144, "depth": 2,
               "num_heads": 2, "num_classes": 10, "norm_type": null, "k_norm": "w_rmsnorm",
               "add_rel_pe_to_v": true}})"}) {
    SCOPED_TRACE(json);
    expect_matches_cpu(config_from(json));
  }
}

TEST(CudaModelCheckpointing, SameGradients) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  Config c = config_from(kConfigs[0]);
  auto gpu = make_backend("cuda", "bf16");
  const Result a = run_net(*gpu, c, 2, true);
  c.json["nnet"]["use_checkpoint"] = true;
  c.net.use_checkpoint = true;
  const Result b = run_net(*gpu, c, 2, true);
  EXPECT_LE(rel(b.grads, a.grads), 1e-6);
  EXPECT_EQ(rel(b.out, a.out), 0.0);
}

TEST(CudaSample, SamplerOnGpuMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  // Label dropout in the file, so that the loaded config has a null class for guidance (setting
  // c.json afterwards leaves c.spec without one: generate() then refuses the guidance).
  std::string json = kConfigs[0];
  json.insert(1, R"("dataset": {"cfg": true}, )");
  const Config c = config_from(json.c_str());
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "fp32");
  UViT a(c.net, *cpu, null_class(c)), b(c.net, *gpu, null_class(c));
  a.init_random(2);
  b.init_random(2);
  for (const char* sampler : {"dpm-solver++", "euler-maruyama"}) {
    GenerateOptions o;
    o.sampler = sampler;
    o.steps = 12;
    o.cfg_scale = 0.7;
    o.seed = 4;
    o.mini_batch = 3;
    const std::vector<int> labels = {0, 4, 9, 2, 7};
    const auto xa = generate(a, c, o, 5, labels), xb = generate(b, c, o, 5, labels);
    const double e = rel(xb, xa);
    std::printf("[%s] GPU fp32 vs CPU: %.3g\n", sampler, e);
    EXPECT_LE(e, 1e-4) << sampler;
  }
}

TEST(CudaTrain, ResumeIsBitIdenticalAndLossTracksCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = train_config();
  auto data = std::make_shared<NoiseDataset>();
  const fs::path root = fs::temp_directory_path() / "uvit_cuda_train";
  fs::remove_all(root);
  auto losses = [&](Backend& be, const std::string& dir, int steps, bool resume) {
    return train_run(c, be, data, dir, steps, resume);
  };
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "fp32");
  const auto [lc, pc] = losses(*cpu, (root / "cpu").string(), 6, false);
  const auto [lg, pg] = losses(*gpu, (root / "gpu").string(), 6, false);
  for (size_t i = 0; i < lc.size(); ++i) {
    std::printf("step %zu loss cpu %.6f gpu %.6f\n", i + 1, lc[i], lg[i]);
    EXPECT_NEAR(lg[i], lc[i], 1e-3 * std::fabs(lc[i])) << "step " << i + 1;
  }
  auto bf = make_backend("cuda", "bf16");
  const auto [l1, p1] = losses(*bf, (root / "straight").string(), 6, false);
  losses(*bf, (root / "resumed").string(), 3, false);
  const auto [l2, p2] = losses(*bf, (root / "resumed").string(), 6, true);
  EXPECT_EQ(p1, p2) << "bf16 resume on the GPU is not bit-identical";
  for (size_t i = 0; i < l1.size(); ++i)
    EXPECT_NEAR(l1[i], lc[i], 5e-2 * std::fabs(lc[i])) << "bf16 step " << i + 1;
  fs::remove_all(root);
}

// train.finetune partial on the GPU (docs/cli.md "Fine-tuning"): the trainer zeroes the frozen
// gradients on the device (Backend::fill over the gaps between the trained ranges) and runs AdamW
// over each trained range (slices starting at any offset: AdamW's unaligned path too). Frozen
// parameters keep their initial bits in fp32 and bf16; the clipping norm over the trained part
// and the losses follow the CPU's run, and in fp32 the updates of the trained parameters too (in
// the 2-norm: AdamW's first steps move each parameter by about lr sign(g), so a gradient within
// rounding of zero may flip one).
TEST(CudaTrain, PartialFineTuneFreezesTheRestAndTracksCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  Config c = train_config();
  const std::vector<std::string> keys = {"mid_block", "norm", "decoder_pred", "final_layer.bias"};
  c.json["train"]["ignore_keys"] = keys;
  c.json["train"]["finetune"] = "partial";
  c.json["grad_clip"] = 0.5;
  auto data = std::make_shared<NoiseDataset>();
  const fs::path root = fs::temp_directory_path() / "uvit_cuda_partial";
  fs::remove_all(root);
  struct Run {
    std::vector<StepStats> steps;
    std::vector<float> p0, p1;
  };
  auto run = [&](Backend& be, const std::string& name) {
    Trainer tr(c, be, data, (root / name).string());
    tr.init();
    const size_t P = tr.net().num_params();
    Run r;
    r.p0.resize(P);
    r.p1.resize(P);
    be.download(r.p0.data(), tr.net().params(), P * 4);
    for (int k = 0; k < 4; ++k) r.steps.push_back(tr.step());
    be.download(r.p1.data(), tr.net().params(), P * 4);
    return r;
  };
  auto cpu = make_cpu_backend();
  const Run ref = run(*cpu, "cpu");
  const ParamTable table = network_param_table(c);
  auto named = [&](const std::string& n) {
    for (const auto& k : keys)
      if (n.find(k) != std::string::npos) return true;
    return false;
  };
  for (const char* prec : {"fp32", "bf16"}) {
    SCOPED_TRACE(prec);
    const bool fp32 = std::string(prec) == "fp32";
    auto gpu = make_backend("cuda", prec);
    const Run g = run(*gpu, prec);
    ASSERT_EQ(g.p0, ref.p0);    // the initialisation is drawn on the host
    std::vector<float> dg, dc;  // the trained parameters' updates
    int frozen = 0, unaligned = 0;
    bool in_range = false;  // the previous entry is trained: this one extends its range
    for (const ParamEntry& e : table.entries()) {
      const auto a = g.p1.begin() + long(e.offset), b = a + long(e.numel);
      const bool trained = named(e.name) && !e.frozen && e.numel > 0;
      if (trained) {
        unaligned += !in_range && e.offset % 4 != 0;
        for (size_t i = e.offset; i < e.offset + e.numel; ++i) {
          dg.push_back(g.p1[i] - g.p0[i]);
          dc.push_back(ref.p1[i] - ref.p0[i]);
        }
      } else {
        ++frozen;
        EXPECT_TRUE(std::equal(a, b, g.p0.begin() + long(e.offset))) << e.name << " moved";
      }
      in_range = trained;
    }
    EXPECT_GT(frozen, 8);
    EXPECT_GT(unaligned, 0);  // a trained range off the 16-byte grid (AdamW's scalar path)
    if (fp32) {
      double d2 = 0, c2 = 0;
      for (size_t i = 0; i < dc.size(); ++i) {
        d2 += double(dg[i] - dc[i]) * (dg[i] - dc[i]);
        c2 += double(dc[i]) * dc[i];
      }
      EXPECT_GT(c2, 0);
      EXPECT_LE(std::sqrt(d2 / c2), 1e-2);
    }
    for (size_t k = 0; k < ref.steps.size(); ++k) {
      const double tol = fp32 ? 1e-3 : 5e-2;
      EXPECT_NEAR(g.steps[k].loss, ref.steps[k].loss, tol * std::fabs(ref.steps[k].loss))
          << "step " << k + 1;
      EXPECT_NEAR(g.steps[k].grad_norm, ref.steps[k].grad_norm, tol * ref.steps[k].grad_norm)
          << "step " << k + 1;
    }
  }
  fs::remove_all(root);
}
