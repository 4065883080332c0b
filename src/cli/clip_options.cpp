#include "cli/clip_options.hpp"

namespace uvit::cli {

void add_vocab_option(CLI::App* cmd, std::string& vocab, const std::string& scope) {
  cmd->add_option("--vocab", vocab,
                  scope +
                      "CLIP vocabulary: bpe_simple_vocab_16e6.txt.gz, HF vocab.json (merges.txt "
                      "beside) or a folder (default: $UVIT_CLIP_VOCAB or the repository's "
                      "data/clip)");
}

void add_prompt_arguments(CLI::App* cmd, std::vector<std::string>& prompts) {
  cmd->add_option("prompts", prompts, "prompts (use -- before prompts that start with -)")
      ->required();
}

CLI::Option* add_clip_options(CLI::App* cmd, std::string& clip, std::string& clip_config,
                              std::string& vocab, ClipWeights kind, const std::string& weights_help,
                              const std::string& scope) {
  CLI::Option* weights = cmd->add_option("--clip", clip, weights_help);
  cmd->add_option("--clip-config", clip_config,
                  scope + (kind == ClipWeights::Text ? "HF CLIPTextConfig" : "HF CLIPConfig") +
                      " JSON (default: ViT-L/14)");
  add_vocab_option(cmd, vocab, scope);
  return weights;
}

}  // namespace uvit::cli
