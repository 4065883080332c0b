// FiTv2 on the CUDA backend against the CPU: fit_time_shift, and the packed batch (docs/fit.md
// "Packed batches": the token gathers, the per-token RoPE rows and the varlen attention) in fp32,
// bf16 and tf32, forward and every gradient (the bounds of CudaModel). Skips without a GPU.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "model_compare.hpp"
#include "uvit/backend.hpp"

using namespace uvit;
using namespace uvit::test;

TEST(CudaFitPacked, ForwardAndGradientsMatchCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const Config c = config_from(kFitPacked);
  const int B = int(kFitPackedSizes.size());
  auto cpu = make_cpu_backend();
  const Result ref = run_net(*cpu, c, B, true, kFitPackedSizes);
  const Result ref_inf = run_net(*cpu, c, B, false, kFitPackedSizes);
  const ParamTable table = network_param_table(c);
  for (const char* prec : {"fp32", "bf16", "tf32"}) {
    auto gpu = make_backend("cuda", prec);
    const Result g = run_net(*gpu, c, B, true, kFitPackedSizes);
    const Result gi = run_net(*gpu, c, B, false, kFitPackedSizes);
    const bool bf = std::string(prec) != "fp32";
    std::string worst;
    const double eo = rel(g.out, ref.out), ei = rel(gi.out, ref_inf.out);
    const double eg = worst_grad(table, g.grads, ref.grads, &worst);
    std::printf("[fit_packed %s] forward %.3g (inference %.3g), worst gradient %.3g (%s)\n", prec,
                eo, ei, eg, worst.c_str());
    EXPECT_LE(eo, bf ? 3e-2 : 1e-5) << prec;
    EXPECT_LE(ei, bf ? 3e-2 : 1e-5) << prec;
    EXPECT_LE(eg, bf ? 1e-1 : 1e-4) << prec << " " << worst;
  }
}

// Backend::fit_time_shift on the GPU against the CPU. The kernel rounds each operation (no
// contraction); the CPU's 1 + (s - 1) t becomes one FMA where the compiler may use one
// (-march=native: UVIT_NATIVE=ON), so the two may differ by a rounding of the denominator: within
// 4 float epsilons relative. The large n (more than grid_for's 65536 blocks of 256) checks that
// every element is written.
TEST(CudaFitTime, MatchesCpu) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  auto cpu = make_cpu_backend();
  auto gpu = make_backend("cuda", "fp32");
  for (size_t n : {size_t{301}, (size_t{65536} * 256) + 1001}) {
    std::vector<float> t(n);
    for (size_t i = 0; i < n; ++i) t[i] = 1.05f * float(i % 301) / 300.f;
    for (float s : {1.f, 2.f, 0.5f}) {
      std::vector<float> want(n), got(n, -1.f);
      cpu->fit_time_shift(t.data(), want.data(), int(n), s);
      DeviceBuffer d(*gpu, n * 4), o(*gpu, n * 4);
      gpu->upload(d.as(), t.data(), n * 4);
      gpu->fill(o.f32(), -1.f, n);
      gpu->fit_time_shift(d.f32(), o.f32(), int(n), s);
      gpu->download(got.data(), o.f32(), n * 4);
      size_t bad = 0, first = n;
      for (size_t i = 0; i < n; ++i)
        if (!(std::fabs(got[i] - want[i]) <= 4 * FLT_EPSILON * std::fabs(want[i])) && bad++ == 0)
          first = i;
      EXPECT_EQ(bad, 0u) << "n " << n << " s " << s << ": first at " << first << ": "
                         << (first < n ? got[first] : 0.f) << " vs "
                         << (first < n ? want[first] : 0.f);
    }
  }
}
