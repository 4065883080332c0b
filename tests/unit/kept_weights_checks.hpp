// The checks shared by the CPU GEMMs' kept-blocked-weights tests (test_cpu_fp32_kept_weights.cpp,
// test_cpu_bf16_kept_weights.cpp): a weight's products equal a reference however often they are
// taken, and a blocked copy is kept after three uses where the GEMM blocks weights.
#pragma once
#include <gtest/gtest.h>

#include <cstddef>
#include <cstdio>

#include "backend/cpu/cpu_backend.hpp"

namespace uvit::test {

// Three products (product()) equal `ref`, bit for bit: the third reads a kept copy where one is
// made. `when` ends each failure's "use N ".
template <class Product, class Y>
void expect_three_uses(const Product& product, const Y& ref, const char* when) {
  for (int i = 0; i < 3; ++i) EXPECT_EQ(product(), ref) << "use " << i + 1 << " " << when;
}

// After three uses of an N x K weight of `bytes` bytes (`dtype`: "fp32", "bf16"): a kept blocked
// copy of at least its size where the GEMM takes the weight blocked (`blocked`), none elsewhere.
inline void expect_kept_copy(bool blocked, size_t bytes, int N, int K, const char* dtype) {
  const size_t kept = gemm_kept_weight_bytes();
  std::printf("kept blocked weights: %zu bytes for a %d x %d %s weight (%zu bytes)\n", kept, N, K,
              dtype, bytes);
  if (blocked) {
    EXPECT_GE(kept, bytes) << "the third use reads a kept blocked copy";
  } else {
    EXPECT_EQ(kept, 0u);
  }
}

}  // namespace uvit::test
