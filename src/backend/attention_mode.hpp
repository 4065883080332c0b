// UVIT_ATTENTION, the choice of the CUDA backend's attention kernel (docs/gpu.md). Every build
// reads and checks it when a backend is made, so a typo is refused on a CPU build too; only the
// CUDA backend acts on it.
#pragma once

namespace uvit {

enum class AttentionMode {
  Auto,     // unset, empty or "auto": flash for bf16 where it applies
  Flash,    // "flash"
  Fused,    // "wmma" or "fused": the earlier fused bf16 forward
  Unfused,  // "unfused": batched GEMMs + row softmax
  Cudnn,    // "cudnn": cuDNN's SDPA in bf16 (opt-in)
};

// The mode UVIT_ATTENTION names now (read on each call: tests set it per context); a value outside
// the names above throws uvit::Error naming it and them.
AttentionMode attention_mode();

}  // namespace uvit
