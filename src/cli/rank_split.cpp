#include "cli/rank_split.hpp"

#include <algorithm>

#include "cli/commands.hpp"

namespace uvit::cli {

RankRange rank_range(const Comm& c, long n, long unit) {
  unit = std::max(1L, unit);
  const long units = (n + unit - 1) / unit, W = c.size(), r = c.rank();
  return {std::min(n, units * r / W * unit), std::min(n, units * (r + 1) / W * unit)};
}

void check_loaded_alike(Comm& c, const std::string& what, const std::function<uint64_t()>& hash) {
  if (c.size() == 1) return;
  const uint64_t h = hash();
  std::vector<uint64_t> all(size_t(c.size()));
  c.allgather_bytes(&h, sizeof h, all.data());
  std::string ranks;
  int count = 0;
  for (size_t r = 1; r < all.size(); ++r)
    if (all[r] != all[0]) ranks += cat(count++ ? ", " : " ", r);
  if (count == 0) return;
  throw SameOnEveryRank(cat(what, ": rank", count > 1 ? "s" : "", ranks,
                            " read other weights from it than rank 0: under mpirun every rank "
                            "reads the file itself, so the path must name the same file on every "
                            "node (a node-local or stale copy? docs/distributed.md)"));
}

}  // namespace uvit::cli
