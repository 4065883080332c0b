// Raw device buffers of act elements (fp32 or bf16) for the kernel-level CUDA tests, which call the
// backend's internals (test_cuda_gemm.cpp, test_cuda_attention.cpp): allocation, random values,
// bf16 rounding, and host floats to and from a buffer at an element offset.
#pragma once
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "uvit/array.hpp"

namespace uvit::test {

struct Dev {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Dev(size_t b) : bytes(b) { EXPECT_EQ(cudaMalloc(&p, b ? b : 1), cudaSuccess); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

// n values uniform in [-amp, amp) from g.
inline std::vector<float> randv(size_t n, std::mt19937& g, float amp = 1.f) {
  std::uniform_real_distribution<float> u(-amp, amp);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

inline void round_bf16(std::vector<float>& v) {
  for (auto& x : v) x = bf16_to_float(float_to_bf16(x));
}

// The address of element off of an act buffer.
inline void* at(const Dev& d, size_t off, bool bf16) {
  return static_cast<char*>(d.p) + off * (bf16 ? 2 : 4);
}

// Host floats -> act elements [off, off + size) of a device buffer.
inline void upload(const Dev& d, size_t off, const std::vector<float>& v, bool bf16) {
  if (bf16) {
    std::vector<uint16_t> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
    ASSERT_EQ(cudaMemcpy(at(d, off, true), h.data(), h.size() * 2, cudaMemcpyHostToDevice),
              cudaSuccess);
  } else {
    ASSERT_EQ(cudaMemcpy(at(d, off, false), v.data(), v.size() * 4, cudaMemcpyHostToDevice),
              cudaSuccess);
  }
}
inline void upload(const Dev& d, const std::vector<float>& v, bool bf16) { upload(d, 0, v, bf16); }

// Act elements [off, off + n) of a device buffer -> host floats (after the device is idle).
inline std::vector<float> download(const Dev& d, size_t off, size_t n, bool bf16) {
  std::vector<float> v(n);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  if (bf16) {
    std::vector<uint16_t> h(n);
    EXPECT_EQ(cudaMemcpy(h.data(), at(d, off, true), n * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t i = 0; i < n; ++i) v[i] = bf16_to_float(h[i]);
  } else {
    EXPECT_EQ(cudaMemcpy(v.data(), at(d, off, false), n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  }
  return v;
}
inline std::vector<float> download(const Dev& d, size_t n, bool bf16) {
  return download(d, 0, n, bf16);
}

}  // namespace uvit::test
