// The CLIP options of every command that encodes prompts or scores images (sample, serve, eval,
// extract-features, encode-text, clip-score, tokenize): one spelling and one help text each.
#pragma once
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace uvit::cli {

// --vocab (the tokenizer's files; default: clip_vocab_path's). `scope` ("text models: ") starts
// the help.
void add_vocab_option(CLI::App* cmd, std::string& vocab, const std::string& scope = "");

// What --clip loads: a CLIPTextModel, or a whole CLIPModel (both towers and projections).
enum class ClipWeights { Text, Model };

// --clip (help: weights_help, as given), --clip-config (the HF config of `kind`) and --vocab,
// their help started by `scope`; returns --clip (a command may make it required).
CLI::Option* add_clip_options(CLI::App* cmd, std::string& clip, std::string& clip_config,
                              std::string& vocab, ClipWeights kind, const std::string& weights_help,
                              const std::string& scope = "");

// The positional PROMPT... of encode-text and tokenize (required).
void add_prompt_arguments(CLI::App* cmd, std::vector<std::string>& prompts);

}  // namespace uvit::cli
