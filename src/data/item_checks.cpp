#include "data/item_checks.hpp"

#include <algorithm>
#include <cmath>

#include "uvit/error.hpp"

namespace uvit::data {

bool is_float_dtype(DType t) { return t == DType::F32 || t == DType::F64 || t == DType::F16; }

void check_finite(const std::vector<float>& v, const std::string& path) {
  const auto bad = std::find_if(v.begin(), v.end(), [](float e) { return !std::isfinite(e); });
  UVIT_CHECK(bad == v.end(), path, ": holds ", *bad, " at flat index ", bad - v.begin(),
             "; every value must be finite");
}

}  // namespace uvit::data
