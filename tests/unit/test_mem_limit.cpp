// The CPU backend's memory check (src/core/mem_limit.hpp, docs/memory.md): live bytes balance over
// alloc/free from several threads, an allocation above the limit (UVIT_TEST_MEM_LIMIT) is refused
// with the "out of memory: ..." line main's hint applies to, a MemPlan refuses the sum of a run's
// buffers as a whole, Network::reserve allocates all a step will, and the limit's sources parse.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "core/mem_limit.hpp"
#include "error_of.hpp"
#include "uvit/config.hpp"
#include "uvit/network.hpp"

namespace uvit {
namespace {

// Sets (or with nullptr unsets) an environment variable for one scope; the limit is read again.
struct ScopedEnv {
  const char* name;
  ScopedEnv(const char* n, const char* v) : name(n) {
    v ? setenv(n, v, 1) : unsetenv(n);
    forget_process_mem_limit();
  }
  ~ScopedEnv() {
    unsetenv(name);
    forget_process_mem_limit();
  }
};

TEST(MemLimit, LiveBytesBalanceOverAllocAndFree) {
  CpuBackend be;
  const size_t before = CpuBackend::live_bytes();
  void* p = be.alloc_bytes(1000);
  EXPECT_GE(CpuBackend::live_bytes(), before + 1024);  // rounded up to the 64-byte alignment
  EXPECT_LT(CpuBackend::live_bytes(), before + 1024 + 256);
  be.free_bytes(p);
  EXPECT_EQ(CpuBackend::live_bytes(), before);
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&be, t] {
      for (int i = 0; i < 2000; ++i) be.free_bytes(be.alloc_bytes(size_t(64 * t + i % 300)));
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(CpuBackend::live_bytes(), before);
  be.free_bytes(nullptr);
  EXPECT_EQ(CpuBackend::live_bytes(), before);
}

TEST(MemLimit, RefusesAboveTheLimitWithOneLine) {
  CpuBackend be;
  const size_t live = CpuBackend::live_bytes(), MiB = size_t{1} << 20;
  const std::string limit = std::to_string(live + 3 * MiB);
  ScopedEnv env("UVIT_TEST_MEM_LIMIT", limit.c_str());
  EXPECT_EQ(process_mem_limit(), live + 3 * MiB);
  void* a = be.alloc_bytes(2 * MiB);  // fits
  EXPECT_EQ(uvit_test::error_of([&] { be.alloc_bytes(2 * MiB); }),
            "out of memory: the buffers need at least " + gib(live + 4 * MiB) +
                ", this machine has " + gib(live + 3 * MiB) + " (UVIT_TEST_MEM_LIMIT)");
  EXPECT_GE(CpuBackend::live_bytes(), live + 2 * MiB);  // the refused one is not counted
  EXPECT_LT(CpuBackend::live_bytes(), live + 2 * MiB + 4096);
  be.free_bytes(a);
  void* b = be.alloc_bytes(2 * MiB);  // freed memory is available again
  be.free_bytes(b);
  EXPECT_EQ(CpuBackend::live_bytes(), live);
}

TEST(MemLimit, APlanRefusesTheWholeNeedAtItsCheck) {
  CpuBackend be;
  const size_t live = CpuBackend::live_bytes(), MiB = size_t{1} << 20;
  const std::string limit = std::to_string(live + 3 * MiB);
  ScopedEnv env("UVIT_TEST_MEM_LIMIT", limit.c_str());
  {
    MemPlan plan;
    void* a = be.alloc_bytes(2 * MiB);  // fits
    void* b = be.alloc_bytes(2 * MiB);  // together they do not: allocated, untouched, not refused
    EXPECT_NE(b, nullptr);
    EXPECT_EQ(be.alloc_bytes(8 * MiB), nullptr);  // alone above the limit: not allocated
    EXPECT_EQ(uvit_test::error_of([&] { plan.check(); }),
              "out of memory: the buffers need " + gib(live + 12 * MiB) + ", this machine has " +
                  gib(live + 3 * MiB) + " (UVIT_TEST_MEM_LIMIT)");
    // check() closed the plan: buffers are refused one by one again.
    EXPECT_EQ(uvit_test::error_of([&] {
                be.alloc_bytes(MiB);
              }).rfind("out of memory: the buffers need at least ", 0),
              0u);
    be.free_bytes(a);
    be.free_bytes(b);
  }
  EXPECT_EQ(CpuBackend::live_bytes(), live);
  MemPlan fits;
  be.free_bytes(be.alloc_bytes(2 * MiB));
  EXPECT_EQ(uvit_test::error_of([&] { fits.check(); }), "(no error)");
}

// A training step's inputs at B (on the backend) and the gradient fed back, allocated before the
// network's reserve() so that they are not part of what the step must not allocate.
struct StepInputs {
  std::vector<float> g;
  DeviceBuffer dx, dt, dy, out;
  StepInputs(Backend& be, const NetSpec& n, int B)
      : g(size_t(B) * n.out_numel(), 1e-3f),
        dx(be, size_t(B) * n.in_numel() * 4),
        dt(be, size_t(B) * 4),
        dy(be, size_t(B) * 4),
        out(be, g.size() * 4) {
    const std::vector<float> x(size_t(B) * n.in_numel(), 0.1f), t(size_t(B), 0.5f);
    const std::vector<int32_t> y(size_t(B), 1);
    be.upload(dx.f32(), x.data(), x.size() * 4);
    be.upload(dt.f32(), t.data(), t.size() * 4);
    be.upload(dy.as(), y.data(), y.size() * 4);
  }
};

// reserve(B, train) allocates every buffer a training step at B holds: the step allocates nothing.
TEST(MemLimit, ReserveAllocatesAllOfAStep) {
  for (const char* name : {"fmnist_uvit_tiny", "fmnist_dit_tiny", "fmnist_mdt_tiny"}) {
    CpuBackend be;
    const Config c = load_config(name);
    auto net = make_network(c, be);
    const int B = 2;
    const NetSpec& n = c.spec;
    const StepInputs in(be, n, B);
    net->init_random(1);
    net->reserve(B, true);
    const size_t live = CpuBackend::live_bytes();
    net->zero_grad();
    for (int pass = 0; pass < net->train_passes(); ++pass) {
      net->set_train_pass(pass, 1, 0);
      net->forward(in.dx.f32(), in.dt.f32(), n.class_conditional() ? in.dy.as<int32_t>() : nullptr,
                   nullptr, in.out.f32(), B, true);
      be.upload(in.out.f32(), in.g.data(), in.g.size() * 4);
      net->backward(in.out.f32());
    }
    EXPECT_EQ(CpuBackend::live_bytes(), live) << name;
    for (size_t i = 0; i < 64; ++i) ASSERT_TRUE(std::isfinite(net->grads()[i])) << name;
  }
}

// reserve(B, true, packed) allocates every buffer a packed training step at B holds, whatever the
// sizes (FiT, docs/fit.md): the largest grid, several distinct grids (online RoPE's tables).
TEST(MemLimit, PackedReserveAllocatesAllOfAnyPackedStep) {
  for (const bool online : {false, true}) {
    CpuBackend be;
    Config c = load_config("fmnist_fit_tiny");
    if (online)
      for (const char* a :
           {"nnet.ori_max_pe_len=7", "nnet.custom_freqs=ntk-aware", "nnet.online_rope=true"})
        apply_override(c, a);
    auto net = make_network(c, be);
    const int B = 4;
    const NetSpec& n = c.spec;
    const StepInputs in(be, n, B);
    net->init_random(1);
    net->reserve(B, true, true);
    const size_t live = CpuBackend::live_bytes();
    // 7 x 7 tokens is the largest grid; then the four largest distinct ones (49, 42, 42, 36 rows).
    for (const std::vector<std::array<int, 2>>& sizes :
         {std::vector<std::array<int, 2>>{{4, 4}, {8, 28}, {28, 28}, {12, 12}},
          {{28, 28}, {28, 28}, {28, 28}, {28, 28}},
          {{28, 28}, {28, 24}, {24, 28}, {24, 24}}}) {
      net->zero_grad();
      net->set_valid_sizes(sizes);
      net->forward(in.dx.f32(), in.dt.f32(), in.dy.as<int32_t>(), nullptr, in.out.f32(), B, true);
      be.upload(in.out.f32(), in.g.data(), in.g.size() * 4);
      net->backward(in.out.f32());
      EXPECT_EQ(CpuBackend::live_bytes(), live) << (online ? "online" : "cached");
    }
  }
  CpuBackend be;  // a network that does not pack refuses, in set_valid_sizes' words
  auto dit = make_network(load_config("fmnist_dit_tiny"), be);
  EXPECT_NE(uvit_test::error_of([&] { dit->reserve(2, true, true); }).find("variable-size"),
            std::string::npos);
}

// MemPlan::count_host: host bytes count towards the plan's need, not as live buffers.
TEST(MemLimit, APlanCountsHostBytes) {
  const size_t live = CpuBackend::live_bytes(), MiB = size_t{1} << 20;
  const std::string limit = std::to_string(live + 3 * MiB);
  ScopedEnv env("UVIT_TEST_MEM_LIMIT", limit.c_str());
  MemPlan plan;
  plan.count_host(4 * MiB);
  EXPECT_EQ(CpuBackend::live_bytes(), live);
  EXPECT_EQ(uvit_test::error_of([&] { plan.check(); }),
            "out of memory: the buffers need " + gib(live + 4 * MiB) + ", this machine has " +
                gib(live + 3 * MiB) + " (UVIT_TEST_MEM_LIMIT)");
  MemPlan fits;
  fits.count_host(2 * MiB);
  EXPECT_EQ(uvit_test::error_of([&] { fits.check(); }), "(no error)");
}

TEST(MemLimit, RanksOnANodeShareIt) {
  ScopedEnv env("UVIT_TEST_MEM_LIMIT", "8589934592");
  ScopedEnv ranks("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
  const MemLimit m = read_mem_limit();
  EXPECT_EQ(m.bytes(), size_t{2} << 30);
  EXPECT_EQ(process_mem_limit(), size_t{2} << 30);
  EXPECT_EQ(
      m.describe(),
      "each of the 4 ranks on this machine has 2.0 GiB (8.0 GiB, UVIT_TEST_MEM_LIMIT, shared)");
}

TEST(MemLimit, ParsesMeminfoAndCgroupFiles) {
  const std::string info =
      "MemTotal:       24683792 kB\nMemFree:        18799676 kB\n"
      "SwapTotal:        1048576 kB\n";
  EXPECT_EQ(meminfo_bytes(info, "MemTotal"), size_t{24683792} * 1024);
  EXPECT_EQ(meminfo_bytes(info, "SwapTotal"), size_t{1} << 30);
  EXPECT_EQ(meminfo_bytes(info, "Total"), 0u);  // a whole field name only
  EXPECT_EQ(cgroup_limit_bytes("max\n"), size_t(-1));
  EXPECT_EQ(cgroup_limit_bytes("8589934592\n"), size_t{8} << 30);
  EXPECT_EQ(gib(size_t{24683792} * 1024), "23.5 GiB");
  EXPECT_EQ(gib(size_t{80} << 20), "80.0 MiB");
  // This machine: the real files give a limit, at most its MemTotal + SwapTotal.
  const MemLimit m = read_mem_limit();
  EXPECT_GT(m.machine, size_t{64} << 20) << m.source;
}

}  // namespace
}  // namespace uvit
