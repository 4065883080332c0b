// The CPU backend's memory check (src/core/mem_limit.hpp, docs/memory.md): live bytes balance over
// alloc/free from several threads, an allocation above the limit (UVIT_TEST_MEM_LIMIT) is refused
// with the "out of memory: ..." line main's hint applies to, and the limit's sources parse.
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "core/mem_limit.hpp"
#include "error_of.hpp"

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
