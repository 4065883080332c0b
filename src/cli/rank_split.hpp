// How `uvit sample`, `uvit eval` and `uvit fid-features` share their work among the ranks of an
// mpirun/srun job (docs/distributed.md): contiguous ranges in whole units (mini-batches), so that
// every unit is computed exactly as in a single process, and a gather to rank 0 in rank order.
#pragma once
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "uvit/dist.hpp"

namespace uvit::cli {

struct RankRange {
  long begin = 0, end = 0;
};
// This rank's items of [0, n): whole units of `unit` items (the last may be partial), balanced.
RankRange rank_range(const Comm& c, long n, long unit);
// Every rank's values in rank order on rank 0 (empty elsewhere).
template <class T>
std::vector<T> gather_to_root(Comm& c, const std::vector<T>& mine) {
  if (c.size() == 1) return mine;
  std::vector<uint8_t> b = c.gatherv_bytes(mine.data(), mine.size() * sizeof(T), 0);
  std::vector<T> out(b.size() / sizeof(T));
  if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());
  return out;
}

// Under mpirun every rank reads its files itself, and one path can name different files on
// different nodes (a node-local or stale copy, a checkpoint being rewritten): right after a load
// the ranks compare hash() of what they loaded (src/dist/weights_hash.hpp; computed only with
// several ranks), and a job whose ranks differ is refused in one line from rank 0
// (SameOnEveryRank: every rank exits 1) naming `what` ("--weights W") and the ranks that differ.
void check_loaded_alike(Comm& c, const std::string& what, const std::function<uint64_t()>& hash);

}  // namespace uvit::cli
