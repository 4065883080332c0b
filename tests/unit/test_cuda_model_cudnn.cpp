// cuDNN's SDPA (UVIT_ATTENTION=cudnn) in the whole network on the CUDA backend: its backward is
// deterministic (two runs, identical gradients) and bf16 training resumes bit-identically with it,
// as with our kernels (test_cuda_model.cpp checks its accuracy against the CPU). Skipped, saying
// so, without a GPU.
#include <gtest/gtest.h>

#include <filesystem>

#include "model_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;
using namespace uvit;
using namespace uvit::test;

TEST(CudaModelCudnn, GradientsAreDeterministic) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  auto gpu = make_cudnn_attention_backend();
  for (int k : {0, 3}) {
    const Config c = config_from(kConfigs[k]);
    const Result a = run_net(*gpu, c, 3, true), b = run_net(*gpu, c, 3, true);
    EXPECT_EQ(a.grads, b.grads) << c.config_name << ": cuDNN attention backward not deterministic";
    EXPECT_EQ(a.out, b.out) << c.config_name;
  }
}

TEST(CudaTrainCudnn, ResumeIsBitIdentical) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = train_config();
  auto data = std::make_shared<NoiseDataset>();
  const fs::path root = fs::temp_directory_path() / "uvit_cuda_train_cudnn";
  fs::remove_all(root);
  auto be = make_cudnn_attention_backend();
  const auto [l1, p1] = train_run(c, *be, data, (root / "straight").string(), 6, false);
  train_run(c, *be, data, (root / "resumed").string(), 3, false);
  const auto [l2, p2] = train_run(c, *be, data, (root / "resumed").string(), 6, true);
  EXPECT_EQ(p1, p2) << "bf16 resume with cuDNN attention is not bit-identical";
  fs::remove_all(root);
}
