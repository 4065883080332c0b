// A sharded vector streamed to rank 0 piece by piece (docs/distributed.md, "ZeRO-1"): the
// checkpoint of the ZeRO-1 optimizer state without a gathered copy of it on any host.
#include <algorithm>
#include <memory>

#include "uvit/dist.hpp"
#include "uvit/error.hpp"

namespace uvit {

void gather_shards(Comm& c, size_t n, size_t shard, size_t chunk, const ShardFetch& fetch,
                   const ShardSink& sink) {
  UVIT_CHECK(shard > 0 && chunk > 0, "gather_shards: shard and chunk must be positive");
  // No structured binding: the lambda below captures lo, which clang 14 cannot (docs/fuzzing.md).
  const auto mine = shard_range(n, shard, c.rank());
  const size_t lo = mine.lo, hi = mine.hi;
  const size_t first_hi = shard_range(n, shard, 0).hi;  // the end of rank 0's elements
  std::unique_ptr<float[]> scratch;  // allocated (and touched) only when fetch needs it
  auto part = [&](size_t a, size_t b) -> const float* {  // this rank's [a, b), a host pointer
    if (!scratch) scratch.reset(new float[chunk]);
    return fetch(a - lo, b - a, scratch.get());
  };
  for (size_t at = 0; at < n; at += chunk) {
    const size_t end = std::min(n, at + chunk);
    // Every rank knows when a piece lies in rank 0's shard alone: no message at all.
    if (end <= first_hi) {
      if (c.rank() == 0) sink(part(at, end), end - at);
      continue;
    }
    const size_t a = std::max(at, lo), b = std::min(end, hi);
    const float* mine = a < b ? part(a, b) : nullptr;
    // The ranks' overlaps with [at, end) are consecutive in rank order: their concatenation is
    // the piece.
    const std::vector<uint8_t> got = c.gatherv_bytes(mine, a < b ? (b - a) * 4 : 0, 0);
    if (c.rank() != 0) continue;
    UVIT_CHECK(got.size() == (end - at) * 4, "gather_shards: received ", got.size() / 4,
               " floats of elements [", at, ", ", end, "); the ranks disagree on the shards");
    sink(reinterpret_cast<const float*>(got.data()), end - at);
  }
}

}  // namespace uvit
