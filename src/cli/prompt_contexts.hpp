// The prompts of `uvit sample` on text-to-image presets.
#pragma once
#include <string>
#include <vector>

namespace uvit::cli {

// Prompts from --prompt (repeatable) and/or --prompts FILE (one per line, blank lines skipped).
std::vector<std::string> gather_prompts(const std::vector<std::string>& prompts,
                                        const std::string& prompts_file);

}  // namespace uvit::cli
