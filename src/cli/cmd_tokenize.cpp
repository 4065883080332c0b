// `uvit tokenize`: CLIP token ids of prompts (77 per prompt: start, BPE ids, end, end padding).
#include <cstdio>

#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "uvit/clip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

void add_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "CLIP token ids of prompts");
  struct Opts {
    std::string vocab, out;
    std::vector<std::string> prompts;
    bool tokens = false;
  };
  auto o = std::make_shared<Opts>();
  add_vocab_option(cmd, o->vocab);
  cmd->add_option("--out,-o", o->out, "write the ids as int64 [N,77] .npy instead of printing");
  cmd->add_flag("--tokens", o->tokens, "print the vocabulary entries instead of ids (no padding)");
  add_prompt_arguments(cmd, o->prompts);
  cmd->callback([o] {
    check_output("--out", o->out, {".npy"});
    ClipTokenizer tok = ClipTokenizer::load(clip_vocab_path(o->vocab));
    const int L = ClipTokenizer::kContextLength;
    std::vector<int64_t> all;
    for (const auto& p : o->prompts) {
      if (o->tokens) {
        std::string line;
        for (int id : tok.encode(p)) line += (line.empty() ? "" : " ") + tok.token(id);
        std::printf("%s\n", line.c_str());
        continue;
      }
      std::vector<int> ids = tok.tokenize(p, L);
      all.insert(all.end(), ids.begin(), ids.end());
      if (o->out.empty()) {
        std::string line;
        for (int id : ids) line += (line.empty() ? "" : " ") + std::to_string(id);
        std::printf("%s\n", line.c_str());
      }
    }
    if (!o->out.empty() && !o->tokens) {
      make_parent_dir(o->out);
      save_npy(o->out, Array::from_i64({int64_t(o->prompts.size()), L}, all.data()));
    }
  });
}

}  // namespace uvit::cli
