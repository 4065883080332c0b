// generate()'s memory check on its own, for the callers that must make it before building their
// per-sample inputs (docs/memory.md, "Host memory").
#pragma once
#include <memory>

#include "uvit/generate.hpp"

namespace uvit {

// SamplingBuffers made inside a MemPlan with their host bytes, and checked: throws OutOfMemory
// when the run cannot fit, before anything is initialised. generate() starts with it, and
// Pipeline::generate calls it (dropping the result) before it builds its per-sample vectors, so
// that a huge n is refused before they are.
std::unique_ptr<SamplingBuffers> planned_sampling_buffers(Network& net, const Config& cfg,
                                                          const GenerateOptions& opt, int n);

}  // namespace uvit
