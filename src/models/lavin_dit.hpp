// LaVin-DiT's variable number of conditioning frames (docs/lavin_dit.md): the unconditional pass
// of its guidance has 2 frames (a zero frame and the query), the conditional one 2N + 1.
#pragma once
#include "uvit/network.hpp"

namespace uvit {

// The conditioning frames T_c of the next forwards of `net` (a "lavin_dit" network): its context
// becomes [B, T_c, C, S, S] and spec().context_tokens T_c. Throws for other networks.
void lavin_set_frames(Network& net, int frames);

}  // namespace uvit
