// The whole network on the CUDA backend with cuDNN's SDPA (UVIT_ATTENTION=cudnn, bf16) against
// the CPU backend, with the bf16 bounds of test_cuda_model.cpp; its backward is deterministic
// (two runs, identical gradients), and bf16 training resumes bit-identically with it. Skipped,
// saying so, without a GPU.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "model_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/network.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;
using namespace uvit;
using namespace uvit::test;

namespace {

// A bf16 CUDA backend whose attention is cuDNN's (the context reads UVIT_ATTENTION once, when
// the backend is made).
std::unique_ptr<Backend> cudnn_backend() {
  setenv("UVIT_ATTENTION", "cudnn", 1);
  auto be = make_backend("cuda", "bf16");
  unsetenv("UVIT_ATTENTION");
  return be;
}

}  // namespace

class CudaModelCudnn : public ::testing::TestWithParam<int> {};

TEST_P(CudaModelCudnn, ForwardAndGradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = config_from(kConfigs[GetParam()]);
  const int B = 3;
  auto cpu = make_cpu_backend();
  const Result ref = run_net(*cpu, c, B, true);
  const Result ref_inf = run_net(*cpu, c, B, false);
  const ParamTable table = network_param_table(c);
  auto gpu = cudnn_backend();
  const Result g = run_net(*gpu, c, B, true);
  const Result again = run_net(*gpu, c, B, true);
  const Result gi = run_net(*gpu, c, B, false);
  std::string worst;
  const double eo = rel(g.out, ref.out), ei = rel(gi.out, ref_inf.out);
  const double eg = worst_grad(table, g.grads, ref.grads, &worst);
  std::printf("[%s bf16 cudnn attention] forward %.3g (inference %.3g), worst gradient %.3g (%s)\n",
              c.config_name.c_str(), eo, ei, eg, worst.c_str());
  EXPECT_LE(eo, 3e-2);
  EXPECT_LE(ei, 3e-2);
  EXPECT_LE(eg, 1e-1) << worst;
  EXPECT_EQ(again.grads, g.grads) << "cuDNN attention backward is not deterministic";
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaModelCudnn, ::testing::Values(0, 1, 2, 3, 4, 5, 6, 7));

TEST(CudaTrainCudnn, ResumeIsBitIdentical) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = train_config();
  auto data = std::make_shared<NoiseDataset>();
  const fs::path root = fs::temp_directory_path() / "uvit_cuda_train_cudnn";
  fs::remove_all(root);
  auto be = cudnn_backend();
  const auto [l1, p1] = train_run(c, *be, data, (root / "straight").string(), 6, false);
  train_run(c, *be, data, (root / "resumed").string(), 3, false);
  const auto [l2, p2] = train_run(c, *be, data, (root / "resumed").string(), 6, true);
  EXPECT_EQ(p1, p2) << "bf16 resume with cuDNN attention is not bit-identical";
  fs::remove_all(root);
}
