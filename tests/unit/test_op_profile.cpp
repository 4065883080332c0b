// The host half of UVIT_CUDA_OPTIME (src/backend/op_profile.hpp): intervals at synchronize(),
// the warm-up interval left out, sums by operation and by kind, the gap against the wall clock,
// on a fake clock with hand-computed figures.
#include <gtest/gtest.h>

#include <string>

#include "backend/op_profile.hpp"

namespace {

// The line of `report` that contains `needle` (empty when none does).
std::string line_with(const std::string& report, const std::string& needle) {
  const size_t at = report.find(needle);
  if (at == std::string::npos) return "";
  const size_t b = report.rfind('\n', at) + 1, e = report.find('\n', at);
  return report.substr(b, e - b);
}

}  // namespace

TEST(OpProfile, SteadyIntervalsLeaveOutTheFirst) {
  double now = 10.0;
  uvit::OpProfile p([&] { return now; });
  // Warm-up interval: one slow GEMM and an allocation, 2 s of wall.
  p.add("gemm NT M=4 N=8 K=16", 1500.0);
  p.count("cudaMalloc");
  now = 12.0;
  p.end_interval();
  // Two steady intervals of 10 ms wall each: 6 + 2 ms and 4 + 1 ms timed (+ one allocation).
  p.add("gemm NT M=4 N=8 K=16", 5.0);
  p.add("gemm NT M=4 N=8 K=16", 1.0);
  p.add("layernorm_fwd M=4 D=8", 2.0);
  now = 12.010;
  p.end_interval();
  p.add("gemm NN M=4 N=8 K=16 +C", 4.0);
  p.add("layernorm_fwd M=4 D=8", 1.0);
  p.count("cudaMalloc");
  now = 12.020;
  p.end_interval();
  EXPECT_EQ(p.intervals(), 3);
  const std::string r = p.report();
  // Per interval: wall 10 ms, timed (6 + 2 + 4 + 1) / 2 = 6.5 ms, 65%, gap 3.5 ms.
  EXPECT_NE(r.find("the mean of 2 intervals"), std::string::npos) << r;
  EXPECT_NE(r.find("2000.00 ms wall, left out"), std::string::npos) << r;
  EXPECT_NE(line_with(r, "wall 10.000 ms, timed operations 6.500 ms (65.0%), gap 3.500 ms"), "")
      << r;
  EXPECT_NE(line_with(r, "host: 0.5 x cudaMalloc per interval"), "") << r;
  // By kind: gemm (6 + 4) / 2 = 5 ms, 76.9%, 1.5 calls; layernorm_fwd 1.5 ms, 23.1%, 1 call.
  EXPECT_EQ(line_with(r, "  76.9     1.5  gemm"), "      5.000  76.9     1.5  gemm") << r;
  EXPECT_NE(line_with(r, "    1.500  23.1     1.0  layernorm_fwd"), "") << r;
  // By operation: gemm NT 3 ms/interval (2 calls of 3 ms -> 1 call/interval, 3000 us/call).
  EXPECT_NE(line_with(r, "    3.000  46.2     1.0   3000.0  gemm NT M=4 N=8 K=16"), "") << r;
  EXPECT_NE(line_with(r, "    2.000  30.8     0.5   4000.0  gemm NN M=4 N=8 K=16 +C"), "") << r;
  // Sorted slowest first within each table.
  EXPECT_LT(r.find("  gemm\n"), r.find("  layernorm_fwd\n"));
  EXPECT_LT(r.find("gemm NT M=4"), r.find("gemm NN M=4"));
  EXPECT_LT(r.find("gemm NN M=4"), r.find("layernorm_fwd M=4"));
  // The warm-up GEMM's 1500 ms is nowhere.
  EXPECT_EQ(r.find("1500.000"), std::string::npos) << r;
}

TEST(OpProfile, WithoutSteadyIntervalsReportsEverything) {
  double now = 0.0;
  uvit::OpProfile p([&] { return now; });
  p.add("conv2d 3x3/1 4->8 16x16 B2", 3.0);
  p.add("group_norm C8 HW256 B2", 1.0);
  now = 0.008;  // no synchronize(): the report covers the 8 ms since construction
  const std::string r = p.report();
  EXPECT_NE(r.find("everything timed"), std::string::npos) << r;
  EXPECT_NE(line_with(r, "wall 8.000 ms, timed operations 4.000 ms (50.0%), gap 4.000 ms"), "")
      << r;
  EXPECT_NE(line_with(r, "    3.000  75.0     1.0  conv2d"), "") << r;
  EXPECT_NE(line_with(r, "    1.000  25.0     1.0   1000.0  group_norm C8 HW256 B2"), "") << r;
}

TEST(OpProfile, OneIntervalPlusOpenOps) {
  double now = 1.0;
  uvit::OpProfile p([&] { return now; });
  p.add("fill n=4", 0.5);
  now = 1.002;
  p.end_interval();
  p.add("fill n=4", 0.5);  // not yet closed by a synchronize(): still reported
  now = 1.004;
  const std::string r = p.report();
  EXPECT_NE(line_with(r, "wall 4.000 ms, timed operations 1.000 ms (25.0%), gap 3.000 ms"), "")
      << r;
  EXPECT_NE(line_with(r, "    1.000 100.0     2.0    500.0  fill n=4"), "") << r;
}
