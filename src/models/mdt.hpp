// MDTv2's masked pass, for tests that inject the official random_masking's indices (docs/mdt.md).
#pragma once
#include <cstdint>
#include <vector>

#include "uvit/network.hpp"

namespace uvit {

// The next forward(train=true) of `net` (an "mdt" network) runs the masked pass with the
// per-sample shuffles ids_shuffle [B, L] (a permutation of 0..L-1 per sample: the kept tokens are
// the first len_keep, in that order) instead of drawing them. Throws for other networks.
void mdt_set_mask(Network& net, const std::vector<int32_t>& ids_shuffle, int len_keep);

}  // namespace uvit
