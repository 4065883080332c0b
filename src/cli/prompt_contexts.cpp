// The prompts of `uvit sample` (the pipeline encodes them: include/uvit/pipeline.hpp).
#include "cli/prompt_contexts.hpp"

#include <filesystem>
#include <fstream>

#include "uvit/clip.hpp"
#include "uvit/error.hpp"

namespace uvit::cli {

std::vector<std::string> gather_prompts(const std::vector<std::string>& prompts,
                                        const std::string& prompts_file) {
  std::vector<std::string> out = prompts;
  if (!prompts_file.empty()) {
    UVIT_CHECK(std::filesystem::exists(prompts_file), prompts_file, ": file not found");
    std::ifstream f(prompts_file);
    UVIT_CHECK(f.good(), prompts_file, ": cannot open");
    std::string line;
    size_t before = out.size(), number = 0;
    while (std::getline(f, line)) {
      ++number;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      try {  // the tokenizer's own check, here where the file and line are known
        clip_clean_text(line);
      } catch (const Error& e) {
        fail(prompts_file, ": line ", number, ": ", e.what(), " (a text file of prompts?)");
      }
      out.push_back(line);
    }
    UVIT_CHECK(out.size() > before, prompts_file, ": no prompts (one per line)");
  }
  return out;
}

}  // namespace uvit::cli
