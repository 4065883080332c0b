// Text prompts -> CLIP contexts for `uvit sample` (SPEC 8, 14: the conditional contexts and the
// empty prompt's context for guidance).
#include "cli/prompt_contexts.hpp"

#include <filesystem>
#include <fstream>

#include "uvit/backend.hpp"
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
    size_t before = out.size();
    while (std::getline(f, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") != std::string::npos) out.push_back(line);
    }
    UVIT_CHECK(out.size() > before, prompts_file, ": no prompts (one per line)");
  }
  return out;
}

PromptContexts encode_prompts_for_sampling(const std::vector<std::string>& prompts, int n,
                                           const std::string& clip, const std::string& clip_config,
                                           const std::string& vocab, const std::string& device,
                                           const std::string& precision) {
  UVIT_CHECK(!prompts.empty() && n > 0, "no prompts to encode");
  UVIT_CHECK(!clip.empty(), "--prompt needs the CLIP text encoder weights: give --clip W");
  ClipTokenizer tok = ClipTokenizer::load(clip_vocab_path(vocab));
  ClipTextConfig cc = clip_config.empty() ? ClipTextConfig{} : ClipTextConfig::load(clip_config);
  auto be = make_encoder_backend(device, precision);
  ClipTextModel model(cc, *be);
  model.load_file(clip);
  PromptContexts r;
  for (int i = 0; i < n; ++i) r.prompts.push_back(prompts[size_t(i) % prompts.size()]);
  // Encode each distinct prompt once, then lay the contexts out per sample.
  std::vector<float> enc = clip_encode_prompts(tok, model, prompts);
  r.null_context = clip_encode_prompts(tok, model, {""});
  const size_t per = r.null_context.size();
  r.contexts.resize(size_t(n) * per);
  for (int i = 0; i < n; ++i) {
    const float* src = enc.data() + (size_t(i) % prompts.size()) * per;
    std::copy(src, src + per, r.contexts.begin() + ptrdiff_t(size_t(i) * per));
  }
  return r;
}

}  // namespace uvit::cli
