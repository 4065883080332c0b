// Checks on a model's parameter list, its (name, shape) pairs in state_dict order: how many values
// it holds, and whether a loaded state_dict has the same names, shapes and order.
#pragma once
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "uvit/array.hpp"

namespace uvit_test {

using NamedShapes = std::vector<std::pair<std::string, std::vector<int64_t>>>;

inline int64_t param_count(const NamedShapes& shapes) {
  int64_t n = 0;
  for (const auto& [name, s] : shapes) {
    int64_t e = 1;
    for (int64_t v : s) e *= v;
    n += e;
  }
  return n;
}

inline void expect_state_dict_layout(const uvit::NamedArrays& w, const NamedShapes& shapes) {
  ASSERT_EQ(w.size(), shapes.size());
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_EQ(w[i].first, shapes[i].first);
    EXPECT_EQ(w[i].second.shape, shapes[i].second) << w[i].first;
  }
}

}  // namespace uvit_test
