// UVIT_CUDA_OPTIME (src/backend/cuda/op_timer.*, docs/gpu.md "Profiling") on a real device: the
// report printed when the backend goes, its intervals cut at synchronize(), the operations named
// by kind and shape with their calls per interval, and silence when the variable is unset. The
// report's arithmetic is unit-tested on the CPU (test_op_profile.cpp); this checks the CUDA
// events around the backend's operations. Skips without a GPU.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "uvit/backend.hpp"

namespace {

// Three intervals: construction + uploads, then two of (fill, layernorm, linear, attention).
std::string run_timed_backend(const char* optime) {
  if (optime)
    setenv("UVIT_CUDA_OPTIME", optime, 1);
  else
    unsetenv("UVIT_CUDA_OPTIME");
  testing::internal::CaptureStderr();
  {
    auto be = uvit::make_backend("cuda", "bf16");
    const int M = 64, D = 128, B = 2, N = 32, H = 2, Dh = 64;
    const size_t nx = size_t(M) * D;
    const std::vector<float> w(D, 1.f), b(D, 0.f);
    uvit::DeviceBuffer dx(*be, nx * 4), dy(*be, nx * 4), dw(*be, D * 4), db(*be, D * 4),
        mean(*be, M * 4), rstd(*be, M * 4), wt(*be, size_t(D) * D * 4),
        qkv(*be, size_t(B) * N * 3 * H * Dh * 4), out(*be, size_t(B) * N * H * Dh * 4),
        lse(*be, size_t(B) * H * N * 4);
    be->upload(dw.as(), w.data(), D * 4);
    be->upload(db.as(), b.data(), D * 4);
    be->zero_act(wt.f32(), size_t(D) * D);  // finite contents; only the timing is checked
    be->synchronize();
    for (int it = 0; it < 2; ++it) {
      be->fill(dx.f32(), 0.5f, nx);
      be->layernorm_fwd(dx.f32(), dw.f32(), db.f32(), dy.f32(), mean.f32(), rstd.f32(), M, D,
                        1e-6f);
      be->linear(dy.f32(), D, wt.f32(), D, nullptr, nullptr, dx.f32(), D, M, D, D);
      be->zero_act(qkv.f32(), size_t(B) * N * 3 * H * Dh);
      be->attention_fwd(qkv.f32(), out.f32(), lse.f32(), B, N, H, Dh, 0.125f);
      be->synchronize();
    }
  }
  std::string err = testing::internal::GetCapturedStderr();
  unsetenv("UVIT_CUDA_OPTIME");
  return err;
}

TEST(CudaOpTime, ReportsEveryOperationPerInterval) {
  REQUIRE_CUDA();
  const std::string r = run_timed_backend("1");
  std::printf("%s", r.c_str());
  EXPECT_NE(r.find("uvit cuda op profile (UVIT_CUDA_OPTIME)"), std::string::npos) << r;
  // Three synchronize() calls: the first interval (construction, uploads) is left out.
  EXPECT_NE(r.find("the mean of 2 intervals"), std::string::npos) << r;
  EXPECT_NE(r.find("  wall "), std::string::npos) << r;
  EXPECT_NE(r.find("by kind:"), std::string::npos) << r;
  for (const char* op : {"fill n=8192", "layernorm_fwd M=64 D=128", "linear M=64 N=128 K=128",
                         "zero_act n=24576", "attention_fwd B=2 N=32 H=2 Dh=64"}) {
    const size_t at = r.find(op);
    ASSERT_NE(at, std::string::npos) << op << "\n" << r;
    // "ms % calls us/call operation": one call per interval each.
    const size_t line = r.rfind('\n', at) + 1;
    EXPECT_NE(r.substr(line, at - line).find(" 1.0 "), std::string::npos)
        << op << ": " << r.substr(line, at - line + 40);
  }
  // The uploads ran before the first synchronize(): left out.
  EXPECT_EQ(r.find("upload bytes="), std::string::npos) << r;
}

TEST(CudaOpTime, SilentWhenOff) {
  REQUIRE_CUDA();
  for (const char* v : {static_cast<const char*>(nullptr), "0", ""}) {
    const std::string r = run_timed_backend(v);
    EXPECT_EQ(r.find("uvit cuda op profile"), std::string::npos) << (v ? v : "(unset)") << r;
  }
}

}  // namespace
