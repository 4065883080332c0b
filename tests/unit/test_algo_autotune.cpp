// Opt-in GEMM autotuning's host logic (src/backend/algo_autotune.hpp): timing each candidate,
// the median of its runs, the 1% rule that keeps the heuristic's choice on a near tie, unusable
// candidates, the per-key cache and the environment variable, with a fake timer.
#include <gtest/gtest.h>

#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/algo_autotune.hpp"
#include "uvit/error.hpp"

namespace {

// A fake timer: candidate i's runs return the listed times in turn (the first is the untimed
// run), and every call is logged.
struct FakeTimer {
  std::map<int, std::vector<double>> times;
  std::vector<int> calls;
  std::map<int, size_t> next;
  double operator()(int i) {
    calls.push_back(i);
    const auto& t = times.at(i);
    const double v = t[std::min(next[i]++, t.size() - 1)];
    if (v == -2) throw std::runtime_error("launch failed");
    return v;
  }
};

}  // namespace

TEST(AlgoAutotune, PicksTheFastestMedian) {
  FakeTimer f;
  // Untimed run, then 3 timed runs: medians 1.0, 0.8 (despite one 0.1 outlier... median of
  // {0.9, 0.1, 0.8} is 0.8), 0.85.
  f.times = {{0, {5.0, 1.0, 1.1, 0.9}}, {1, {5.0, 0.9, 0.1, 0.8}}, {2, {5.0, 0.85}}};
  uvit::AlgoAutotuner t(3, 0.01);
  const auto& c = t.choose("gemm NT M=8", 3, [&](int i) { return f(i); });
  EXPECT_EQ(c.winner, 1);
  ASSERT_EQ(c.ms.size(), 3u);
  EXPECT_DOUBLE_EQ(c.ms[0], 1.0);
  EXPECT_DOUBLE_EQ(c.ms[1], 0.8);
  EXPECT_DOUBLE_EQ(c.ms[2], 0.85);
  EXPECT_DOUBLE_EQ(c.heuristic_ms(), 1.0);
  EXPECT_DOUBLE_EQ(c.best_ms(), 0.8);
  EXPECT_EQ(f.calls.size(), 12u);  // 3 candidates x (1 untimed + 3 timed)
}

TEST(AlgoAutotune, NearTieKeepsTheHeuristic) {
  FakeTimer f;
  f.times = {{0, {1.0}}, {1, {0.995}}};  // 0.5% faster: within the 1% rule
  uvit::AlgoAutotuner t(3, 0.01);
  EXPECT_EQ(t.choose("k", 2, [&](int i) { return f(i); }).winner, 0);
  FakeTimer g;
  g.times = {{0, {1.0}}, {1, {0.98}}};  // 2% faster: taken
  uvit::AlgoAutotuner u(3, 0.01);
  EXPECT_EQ(u.choose("k", 2, [&](int i) { return g(i); }).winner, 1);
}

TEST(AlgoAutotune, UnusableCandidatesAreSkipped) {
  FakeTimer f;
  // 0: unusable at its untimed run (negative); 1: throws; 2: usable; 3: faster but unusable once.
  f.times = {{0, {-1.0}}, {1, {-2.0}}, {2, {2.0}}, {3, {1.0, 1.0, -1.0, 1.0}}};
  uvit::AlgoAutotuner t(3, 0.01);
  const auto& c = t.choose("k", 4, [&](int i) { return f(i); });
  EXPECT_EQ(c.winner, 2);
  EXPECT_LT(c.ms[0], 0);
  EXPECT_LT(c.ms[1], 0);
  EXPECT_LT(c.ms[3], 0);
  EXPECT_NE(t.report().find("heuristic unusable, #2 2.0000 ms, 1 of 4 usable"), std::string::npos)
      << t.report();
  // None usable: the heuristic's index, marked by a negative time.
  FakeTimer g;
  g.times = {{0, {-1.0}}};
  uvit::AlgoAutotuner u;
  const auto& d = u.choose("k", 1, [&](int i) { return g(i); });
  EXPECT_EQ(d.winner, 0);
  EXPECT_LT(d.best_ms(), 0);
}

TEST(AlgoAutotune, CachesPerKeyAndReportsInOrder) {
  FakeTimer f;
  f.times = {{0, {2.0}}, {1, {1.0}}};
  uvit::AlgoAutotuner t(1, 0.01);
  auto timer = [&](int i) { return f(i); };
  EXPECT_EQ(t.choose("b key", 2, timer).winner, 1);
  const size_t after_first = f.calls.size();
  EXPECT_EQ(after_first, 4u);  // 2 candidates x (untimed + 1 timed)
  EXPECT_EQ(t.choose("b key", 2, timer).winner, 1);
  EXPECT_EQ(f.calls.size(), after_first);  // cached: nothing timed again
  EXPECT_TRUE(t.has("b key"));
  EXPECT_FALSE(t.has("a key"));
  t.choose("a key", 2, timer);
  ASSERT_EQ(t.keys().size(), 2u);
  EXPECT_EQ(t.keys()[0], "b key");
  EXPECT_EQ(t.report(),
            "  b key: heuristic 2.0000 ms, best #1 1.0000 ms (-50.0%), 2 of 2 usable\n"
            "  a key: heuristic 2.0000 ms, best #1 1.0000 ms (-50.0%), 2 of 2 usable\n");
}

TEST(AlgoAutotune, EnvironmentValue) {
  EXPECT_EQ(uvit::autotune_candidates(nullptr), 0);
  EXPECT_EQ(uvit::autotune_candidates(""), 0);
  EXPECT_EQ(uvit::autotune_candidates("0"), 0);
  EXPECT_EQ(uvit::autotune_candidates("1"), 16);
  EXPECT_EQ(uvit::autotune_candidates("8"), 8);
  EXPECT_EQ(uvit::autotune_candidates("64"), 64);
  for (const char* bad : {"65", "-1", "yes", "4x"}) {
    try {
      uvit::autotune_candidates(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const uvit::Error& e) {
      EXPECT_NE(std::string(e.what()).find("UVIT_CUBLASLT_AUTOTUNE"), std::string::npos);
    }
  }
}
