// Checks of arrays that a dataset trains on as stored (npy_folder items, pre-encoded features):
// an integer array would train as raw counts, and a NaN surfaces as "training diverged" naming no
// file (docs/data.md).
#pragma once
#include <string>
#include <vector>

#include "uvit/array.hpp"

namespace uvit::data {

// float16, float32 or float64: the dtypes a stored item may have.
bool is_float_dtype(DType t);
// Fails naming `path`, the first non-finite value of `v` and its flat index.
void check_finite(const std::vector<float>& v, const std::string& path);

}  // namespace uvit::data
