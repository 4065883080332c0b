// generate()'s memory check on its own, for the callers that must make it before building their
// per-sample inputs (docs/memory.md, "Host memory").
#pragma once
#include <memory>
#include <vector>

#include "uvit/generate.hpp"

namespace uvit {

// SamplingBuffers made inside a MemPlan with their host bytes, and checked: throws OutOfMemory
// when the run cannot fit, before anything is initialised. `opt`: with the preset's defaults
// (with_preset_defaults). generate() starts with it; Pipeline::generate calls it before it builds
// its per-sample vectors, so that a huge n is refused before they are, and hands the buffers to
// generate() below: one plan, one allocation per request.
std::unique_ptr<SamplingBuffers> planned_sampling_buffers(Network& net, const Config& cfg,
                                                          const GenerateOptions& opt, int n);

// generate() with the buffers planned_sampling_buffers made for the same network, config, options
// and n (checked: SamplingBuffers::made_for, after generate()'s with_preset_defaults), so that it
// plans nothing itself.
std::vector<float> generate(SamplingBuffers& planned, Network& net, const Config& cfg,
                            const GenerateOptions& opt, int n, const std::vector<int>& labels = {},
                            const std::vector<float>& contexts = {},
                            const std::vector<float>& null_context = {});

}  // namespace uvit
