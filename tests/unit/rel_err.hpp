// The relative error the comparisons against references bound: max |got - want| / max |want|, in
// double (the max error itself when want is all zero).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace uvit_test {

inline double rel_err(const float* got, const float* want, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    num = std::max(num, std::fabs(double(got[i]) - double(want[i])));
    den = std::max(den, std::fabs(double(want[i])));
  }
  return den > 0 ? num / den : num;
}

// A parameter whose exact gradient is zero: a key norm's bias (SVG's affine LayerNorm of k) adds
// the same vector to every key of a head, which the softmax over the keys cancels. Its computed
// gradient is rounding noise on both sides, so it is bounded against the network's gradient scale
// rather than compared.
inline bool zero_gradient_by_symmetry(const std::string& name) {
  const std::string s = "attn.k_norm.bias";
  return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
}

inline double rel_err(const float* got, const std::vector<float>& want) {
  return rel_err(got, want.data(), want.size());
}

// (A size mismatch is a failure; the common prefix is compared.)
inline double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  return rel_err(got.data(), want.data(), std::min(got.size(), want.size()));
}

}  // namespace uvit_test
