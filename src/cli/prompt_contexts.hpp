// Text prompts -> CLIP contexts for `uvit sample` on text-to-image presets.
#pragma once
#include <string>
#include <vector>

namespace uvit::cli {

struct PromptContexts {
  std::vector<std::string> prompts;  // one per sample
  std::vector<float> contexts;       // [N, 77, hidden]
  std::vector<float> null_context;   // CLIP("") [77, hidden]
};

// Prompts from --prompt (repeatable) and/or --prompts FILE (one per line, blank lines skipped).
std::vector<std::string> gather_prompts(const std::vector<std::string>& prompts,
                                        const std::string& prompts_file);
// Encodes `prompts` cycled to n samples and the empty prompt with CLIP weights `clip`
// (config `clip_config`, "" = ViT-L/14) and vocabulary `vocab` ("" = the default), on `device`
// with encoder precision `precision` (encoder_precision).
PromptContexts encode_prompts_for_sampling(const std::vector<std::string>& prompts, int n,
                                           const std::string& clip, const std::string& clip_config,
                                           const std::string& vocab, const std::string& device,
                                           const std::string& precision);

}  // namespace uvit::cli
