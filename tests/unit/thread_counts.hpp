// The same bits at any thread count (docs/cli.md, "Reproducibility"): a computation run at several
// OpenMP thread counts, and its results compared to the bit.
#pragma once
#include <gtest/gtest.h>
#include <omp.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace uvit_test {

// f() at each OpenMP thread count of `counts`, in order; the process's count restored after.
template <class F>
auto at_thread_counts(std::initializer_list<int> counts, F f) {
  const int saved = omp_get_max_threads();
  std::vector<decltype(f())> out;
  for (const int t : counts) {
    omp_set_num_threads(t);
    out.push_back(f());
  }
  omp_set_num_threads(saved);
  return out;
}

// Each result equal to the first (at_thread_counts' first count), `what` naming the case.
template <class T>
void expect_same_bits(const std::vector<T>& out, const std::string& what = "") {
  for (size_t i = 1; i < out.size(); ++i)
    EXPECT_EQ(out[i], out[0]) << what << "thread count #" << i;
}

}  // namespace uvit_test
