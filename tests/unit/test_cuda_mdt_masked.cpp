// MDT's masked training pass (docs/mdt.md) on the CUDA backend against the CPU backend: the kept
// tokens gathered through Backend::move_rows (the mask's int32 lists uploaded by RowLists), the
// relative bias through the kept tokens' ids, the side-interpolater's scatter of mask_token and
// the encoder output, and the backward's scatter-adds. CudaModel runs MDT's plain pass only. Same
// bounds as CudaModel: fp32 1e-5 (output) / 1e-4 (gradients), bf16 and tf32 3e-2 / 1e-1. Skipped
// without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "model_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/network.hpp"

using namespace uvit;
using namespace uvit::test;

namespace {

// MDTv2 (skip linears, en_in/en_out blocks) on 16 tokens, and MDTv1 (plain blocks, decode_layer
// 2) on an odd 5 x 5 grid (25 tokens, 17 kept: odd attention lengths in the encoder).
const char* kMasked[] = {
    R"({"name": "mdt_masked", "nnet": {"name": "mdt", "input_size": 8, "patch_size": 2,
        "in_channels": 4, "hidden_size": 128, "depth": 5, "num_heads": 2, "num_classes": 10,
        "decode_layer": 1, "mask_ratio": 0.3}})",
    R"({"name": "mdtv1_masked", "nnet": {"name": "mdtv1", "input_size": 10, "patch_size": 2,
        "in_channels": 4, "hidden_size": 64, "depth": 4, "num_heads": 2, "num_classes": 10,
        "learn_sigma": true, "decode_layer": 2, "mask_ratio": 0.3}})",
};

}  // namespace

class CudaMdtMasked : public ::testing::TestWithParam<int> {};

TEST_P(CudaMdtMasked, MaskedPassMatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = config_from(kMasked[GetParam()]);
  const int B = 3;
  auto cpu = make_cpu_backend();
  const Result ref = run_net(*cpu, c, B, true, {}, 1);
  // The pass really masked: the plain pass of the same weights and inputs differs.
  const Result plain = run_net(*cpu, c, B, true);
  ASSERT_GT(rel(plain.out, ref.out), 1e-3) << "the masked pass ran as the plain one";
  const ParamTable table = network_param_table(c);
  const ParamEntry& tok = table.at("mask_token");
  for (const char* prec : {"fp32", "bf16", "tf32"}) {
    SCOPED_TRACE(prec);
    auto gpu = make_backend("cuda", prec);
    const Result g = run_net(*gpu, c, B, true, {}, 1);
    const bool bf = std::string(prec) != "fp32";
    std::string worst;
    const double eo = rel(g.out, ref.out), eg = worst_grad(table, g.grads, ref.grads, &worst);
    double gt = 0;
    for (size_t i = 0; i < tok.numel; ++i) gt += std::fabs(g.grads[tok.offset + i]);
    std::printf("[%s %s masked] forward %.3g, worst gradient %.3g (%s), |d mask_token| %.3g\n",
                c.config_name.c_str(), prec, eo, eg, worst.c_str(), gt);
    EXPECT_LE(eo, bf ? 3e-2 : 1e-5);
    EXPECT_LE(eg, bf ? 1e-1 : 1e-4) << worst;
    EXPECT_GT(gt, 0) << "mask_token got no gradient";
  }
}

INSTANTIATE_TEST_SUITE_P(Cuda, CudaMdtMasked, ::testing::Range(0, int(std::size(kMasked))));
