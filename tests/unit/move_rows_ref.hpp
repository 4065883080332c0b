// The reference of Backend::move_rows for its tests (test_move_rows.cpp on the CPU,
// test_cuda_move_rows.cpp on the GPU): random act values and index lists, and the row loop.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "uvit/array.hpp"

namespace uvit::test {

inline float round_act(float x, bool bf16) { return bf16 ? bf16_to_float(float_to_bf16(x)) : x; }

// Values exact in the act type (bf16-rounded for bf16), so the loop sees what the kernel does.
inline std::vector<float> act_values(size_t n, unsigned seed, bool bf16) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  std::vector<float> v(n);
  for (auto& x : v) x = round_act(u(g), bf16);
  return v;
}

// n distinct rows of [0, rows) in shuffled order (a destination list).
inline std::vector<int32_t> distinct_rows(int n, int rows, unsigned seed) {
  std::vector<int32_t> all(static_cast<size_t>(rows));
  for (int i = 0; i < rows; ++i) all[size_t(i)] = i;
  std::shuffle(all.begin(), all.end(), std::mt19937(seed));
  all.resize(size_t(n));
  return all;
}
// n rows of [0, rows), repeats allowed (a source list).
inline std::vector<int32_t> any_rows(int n, int rows, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> u(0, rows - 1);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& r : v) r = u(g);
  return v;
}

// dst row (didx ? didx[i] : i) = (+=) src row (sidx ? sidx[i] : i), zeros when src is null; an
// accumulation rounds the fp32 sum to the act type once.
inline void move_rows_ref(std::vector<float>& dst, const int32_t* didx,
                          const std::vector<float>* src, const int32_t* sidx, int n, int len,
                          bool accumulate, bool bf16) {
  for (int i = 0; i < n; ++i) {
    const size_t dr = size_t(didx ? didx[i] : i), sr = size_t(sidx ? sidx[i] : i);
    for (int k = 0; k < len; ++k) {
      float& w = dst[dr * len + k];
      const float v = src ? (*src)[sr * len + k] : 0.f;
      w = accumulate ? round_act(w + v, bf16) : v;
    }
  }
}

// The cases both tests run: which lists are given, zero rows, accumulation.
struct MoveRowsCase {
  const char* name;
  bool use_didx, use_sidx, zero, accumulate;
};
inline const std::vector<MoveRowsCase>& move_rows_cases() {
  static const std::vector<MoveRowsCase> c = {
      {"gather", false, true, false, false},     {"scatter", true, false, false, false},
      {"both", true, true, false, false},        {"zero rows", true, false, true, false},
      {"scatter-add", true, false, false, true}, {"both, add", true, true, false, true}};
  return c;
}

}  // namespace uvit::test
