// The simulated device (docs/gpu.md, "The simulated device"): its memory is not the host's (a
// host access faults, a host pointer given to a kernel is refused, upload/download check both
// sides), its allocator reuses and coalesces freed blocks and runs out with the usual error, and
// its kernels are the CPU's bit for bit.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "error_of.hpp"
#include "models/param_stage.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

using namespace uvit;

TEST(SimDev, IsADeviceNotTheCpu) {
  auto be = make_backend("simdev");
  EXPECT_EQ(be->name(), "simdev");
  EXPECT_EQ(be->precision(), "fp32");
  EXPECT_FALSE(ParamStage::host_memory(*be));
  EXPECT_TRUE(ParamStage::host_memory(*make_cpu_backend()));
  EXPECT_THROW(make_backend("simdev", "tf32"), Error);  // the CPU's precisions only
}

TEST(SimDev, HostReadOfDeviceMemoryFaults) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        auto be = make_backend("simdev");
        volatile float* p = be->alloc(16);
        std::printf("%f\n", double(p[3]));
      },
      "simdev: host code touched device memory");
}

TEST(SimDev, UploadDownloadAndKernelsMatchTheCpu) {
  auto dev = make_backend("simdev");
  auto cpu = make_cpu_backend();
  const int M = 5, N = 7, K = 9;
  std::vector<float> a(M * K), b(N * K);
  for (size_t i = 0; i < a.size(); ++i) a[i] = 0.1f * float(i % 13) - 0.6f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = 0.07f * float(i % 11) - 0.3f;
  auto run = [&](Backend& be) {
    float *da = be.alloc(a.size()), *db = be.alloc(b.size()), *dc = be.alloc(M * N);
    be.upload(da, a.data(), a.size() * 4);
    be.upload(db, b.data(), b.size() * 4);
    be.gemm(false, true, M, N, K, 1.f, da, K, db, K, 0.f, dc, N);
    be.gelu_fwd(dc, dc, M * N);
    std::vector<float> c(M * N);
    be.download(c.data(), dc, c.size() * 4);
    for (float* p : {da, db, dc}) be.free_bytes(p);
    return c;
  };
  EXPECT_EQ(run(*dev), run(*cpu));
}

TEST(SimDev, RefusesHostPointersWhereDeviceMemoryBelongs) {
  auto be = make_backend("simdev");
  std::vector<float> host(64, 1.f);
  float* d = be->alloc(64);
  EXPECT_NE(uvit_test::error_of([&] {
              be->fill(host.data(), 0.f, 64);
            }).find("simdev: fill was given host memory as dst"),
            std::string::npos);
  EXPECT_NE(uvit_test::error_of([&] { be->download(d, d, 16); }).find("device memory, not host"),
            std::string::npos);
  EXPECT_NE(uvit_test::error_of([&] {
              be->upload(host.data(), host.data(), 16);
            }).find("not inside one device buffer"),
            std::string::npos);
  EXPECT_NE(uvit_test::error_of([&] {
              be->download(host.data(), d, 65 * 4);
            }).find("not inside one device buffer"),
            std::string::npos);
  be->free_bytes(d);
  EXPECT_NE(uvit_test::error_of([&] { be->free_bytes(d); }).find("a double free?"),
            std::string::npos);
}

TEST(SimDev, FreshMemoryIsGarbageNotZeros) {
  auto be = make_backend("simdev");
  float* d = be->alloc(4);
  std::vector<float> h(4, 0.f);
  be->download(h.data(), d, 16);
  for (float v : h) EXPECT_TRUE(std::isnan(v));
  be->free_bytes(d);
}

TEST(SimDev, AllocatorReusesCoalescesAndRunsOut) {
  setenv("UVIT_SIMDEV_BYTES", "1048576", 1);
  auto be = make_backend("simdev");
  unsetenv("UVIT_SIMDEV_BYTES");
  void* a = be->alloc_bytes(300 << 10);
  void* b = be->alloc_bytes(300 << 10);
  void* c = be->alloc_bytes(300 << 10);
  EXPECT_EQ(be->peak_bytes(), size_t(900) << 10);
  EXPECT_NE(uvit_test::error_of([&] { be->alloc_bytes(300 << 10); }).find("out of memory"),
            std::string::npos);
  be->free_bytes(a);
  be->free_bytes(b);
  void* ab = be->alloc_bytes(600 << 10);  // the two freed neighbours, merged
  EXPECT_EQ(ab, a);
  be->free_bytes(ab);
  be->free_bytes(c);
  EXPECT_EQ(be->alloc_bytes(1 << 20), a);  // everything free again: one block
}
