// Shared helpers of the GPU-vs-CPU tests (tests/unit/test_cuda_*.cpp): the skip guards, random
// vectors, and the comparison that prints its errors either way, so that one GPU run shows every
// deviation at once.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "uvit/backend.hpp"

#define REQUIRE_CUDA() \
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU"
#define REQUIRE_CPU_BF16() \
  if (!uvit::cpu_has_bf16()) GTEST_SKIP() << "this CPU has no bf16 units (AVX512-BF16 or AMX)"

namespace uvit::test {

inline std::vector<float> randv(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

// Expects max |got - ref| <= tol * max|ref| and every output finite; prints the errors either way.
inline void compare(const std::string& what, const std::vector<float>& got,
                    const std::vector<float>& ref, double tol) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double max_err = 0, max_ref = 0;
  size_t worst = 0, nonfinite = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(got[i])) ++nonfinite;
    const double e = std::fabs(double(got[i]) - ref[i]);
    if (e > max_err || std::isnan(e)) max_err = e, worst = i;
    max_ref = std::max(max_ref, std::fabs(double(ref[i])));
  }
  const double scale = max_ref > 0 ? max_ref : 1.0;
  std::printf("  %-62s n=%-8zu max_abs_err=%.3g max|ref|=%.3g rel=%.3g\n", what.c_str(), ref.size(),
              max_err, max_ref, max_err / scale);
  EXPECT_EQ(nonfinite, 0u) << what << ": non-finite outputs";
  EXPECT_LE(max_err, tol * scale)  // (got[worst] is only read on failure, so never when empty)
      << what << ": worst at [" << worst << "] got " << got[worst] << " expected " << ref[worst];
}

// Max abs error relative to max(max|ref|, floor) (1 when both are 0; floor: for parts whose
// reference is ~0), NaN counting as worst; prints it and checks tol (the kernel-level tests).
inline void expect_close(const std::vector<float>& got, const std::vector<float>& ref, double tol,
                         const std::string& what, double floor = 0) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double mx = 0, err = 0;
  size_t worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    mx = std::max(mx, double(std::fabs(ref[i])));
    const double e = std::fabs(double(got[i]) - ref[i]);
    if (!(e <= err)) {
      err = std::isnan(e) ? INFINITY : e;
      worst = i;
    }
  }
  const double den = std::max(mx, floor);
  const double rel = err / (den > 0 ? den : 1.0);
  std::printf("  %-64s max|ref| %.3g  max abs err %.3g  rel %.3g\n", what.c_str(), mx, err, rel);
  EXPECT_LE(rel, tol) << what << ": worst at " << worst << " got " << got[worst] << " want "
                      << ref[worst];
}

// Device copies of host vectors on a backend, freed when this goes out of scope.
class DeviceBuffers {
 public:
  explicit DeviceBuffers(Backend& be) : be_(be) {}
  ~DeviceBuffers() {
    for (void* p : bufs_) be_.free_bytes(p);
  }
  DeviceBuffers(const DeviceBuffers&) = delete;
  DeviceBuffers& operator=(const DeviceBuffers&) = delete;
  float* up(const std::vector<float>& h) {
    float* p = static_cast<float*>(be_.alloc_bytes(std::max<size_t>(h.size(), 1) * 4));
    bufs_.push_back(p);
    be_.upload(p, h.data(), h.size() * 4);
    return p;
  }
  std::vector<float> down(const float* p, size_t n) {
    std::vector<float> h(n);
    be_.download(h.data(), p, n * 4);
    return h;
  }

 private:
  Backend& be_;
  std::vector<void*> bufs_;
};

}  // namespace uvit::test
