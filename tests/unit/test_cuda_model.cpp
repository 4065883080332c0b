// The whole network, the samplers and the trainer on the CUDA backend against the CPU backend:
// fp32 to 1e-5 (outputs) / 1e-4 (gradients), bf16 (also with cuDNN's attention,
// UVIT_ATTENTION=cudnn) to the tolerances in docs/kernels.md.
// Skipped, saying so, without a GPU.
#include <gtest/gtest.h>

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

class CudaModel : public ::testing::TestWithParam<int> {};

TEST_P(CudaModel, ForwardAndGradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = config_from(kConfigs[GetParam()]);
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

INSTANTIATE_TEST_SUITE_P(Cuda, CudaModel, ::testing::Range(0, int(std::size(kConfigs))));

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
  Config c = config_from(kConfigs[0]);
  c.json["dataset"] = {{"cfg", true}};
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "fp32");
  UViT a(c.net, *cpu), b(c.net, *gpu);
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
