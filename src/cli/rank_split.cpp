#include "cli/rank_split.hpp"

#include <algorithm>

namespace uvit::cli {

RankRange rank_range(const Comm& c, long n, long unit) {
  unit = std::max(1L, unit);
  const long units = (n + unit - 1) / unit, W = c.size(), r = c.rank();
  return {std::min(n, units * r / W * unit), std::min(n, units * (r + 1) / W * unit)};
}

}  // namespace uvit::cli
