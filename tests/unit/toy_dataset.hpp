// A tiny in-memory dataset for loader tests (test_data.cpp, test_dist.cpp).
#pragma once
#include <array>
#include <cstdint>
#include <string>

#include "uvit/data.hpp"

namespace uvit::testing {

// Item i: value i + j/1000 at element j of a [1, 2, 3] image; label i % 10.
class Toy : public Dataset {
 public:
  explicit Toy(int64_t n) : n_(n) {}
  int64_t size() const override { return n_; }
  std::array<int64_t, 3> item_shape() const override { return {1, 2, 3}; }
  int num_classes() const override { return 10; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    for (int j = 0; j < 6; ++j) x[j] = float(i) + j / 1000.0f;
    return i % 10;
  }
  std::string describe() const override { return "toy"; }

 private:
  int64_t n_;
};

}  // namespace uvit::testing
