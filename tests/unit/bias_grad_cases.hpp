// The shapes both tests of Backend::bias_grad_strided run (test_bias_grad_strided.cpp on the CPU
// against the old per-row calls and the compacted rows, test_cuda_bias_grad_strided.cpp on the
// GPU against the CPU): U-ViT's time token (the first D of rows E*D wide), odd widths, strides
// that break the CUDA kernel's 16-byte path, and enough rows for several partial chunks.
#pragma once
#include <vector>

namespace uvit::test {

struct BiasGradCase {
  int M, N;
  long ld;
};

inline const std::vector<BiasGradCase>& bias_grad_cases() {
  static const std::vector<BiasGradCase> c = {
      {4, 32, 3 * 32},    // U-ViT: B = 4 time tokens of D = 32 in rows of E = 3 tokens
      {1, 7, 7},          // contiguous (bias_grad itself)
      {5, 13, 29},        // odd width and stride
      {16, 64, 66},       // the row length a multiple of 8, the stride not
      {300, 96, 4 * 96},  // several chunks of rows
      {129, 1000, 1003},
      {260, 2050, 2053}};  // U-ViT's fc1 width and over: the CPU splits columns between threads
  return c;
}

}  // namespace uvit::test
