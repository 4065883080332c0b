// Byte-pair merging of one word in CLIP's official order, in O(n log n) (docs/text_to_image.md).
#pragma once

#include <cstdint>
#include <unordered_map>
#include <utility>
#include <vector>

namespace uvit {

// (left id, right id) -> (rank, merged id). Each rank names one pair (a repeated pair keeps its
// later rank), and a merged id is a longer string than either part.
using BpeMerges = std::unordered_map<uint64_t, std::pair<int, int>>;

inline uint64_t bpe_pair_key(int a, int b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }

// The ids of `symbols` after merging as CLIP's bpe() does: while some adjacent pair has a rank,
// take the lowest rank and merge all its occurrences left to right, without overlap.
std::vector<int> bpe_merge(std::vector<int> symbols, const BpeMerges& merges);

}  // namespace uvit
