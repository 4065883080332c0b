// `uvit encode-text`: CLIP text-encoder contexts [N,77,hidden] of prompts (the text-to-image
// models' conditioning; an empty prompt "" gives the unconditional context).
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

void add_encode_text(CLI::App& app) {
  auto* cmd = app.add_subcommand("encode-text", "CLIP text-encoder contexts of prompts (.npy)");
  struct Opts {
    std::string clip, clip_config, vocab, out, device = "cpu", precision;
    std::vector<std::string> prompts;
    int repeat = 0;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  add_clip_options(cmd, o->clip, o->clip_config, o->vocab, ClipWeights::Text,
                   "CLIPTextModel weights (.safetensors or torch .bin/.pth)")
      ->required();
  cmd->add_option("--out,-o", o->out, "float32 [N,77,hidden] .npy")->required();
  add_encoder_device(cmd, o->device, o->precision, "the text encoder");
  cmd->add_option("--repeat", o->repeat,
                  "benchmark: encode this many more times and print the median latency "
                  "(default 0: once, no benchmark)")
      ->check(at_least(0));
  cmd->add_flag("--quiet,-q", o->quiet, "print only results and errors");
  add_prompt_arguments(cmd, o->prompts);
  cmd->callback([o] {
    check_output("--out", o->out, {".npy"});
    ClipTokenizer tok = ClipTokenizer::load(clip_vocab_path(o->vocab));
    ClipTextConfig cc = ClipTextConfig::load(o->clip_config);
    auto be = make_encoder_backend(o->device, o->precision);
    ClipTextModel model(cc, *be);
    model.load_file(o->clip);
    using clk = std::chrono::steady_clock;
    auto t0 = clk::now();
    std::vector<float> ctx = clip_encode_prompts(tok, model, o->prompts);
    double first = std::chrono::duration<double>(clk::now() - t0).count();
    const int64_t n = int64_t(o->prompts.size()), L = ClipTokenizer::kContextLength;
    make_parent_dir(o->out);
    save_npy(o->out, Array::from_f32({n, L, cc.hidden_size}, ctx.data()));
    if (!o->quiet)
      std::fprintf(stderr, "%lld prompts encoded in %.3f s\n", static_cast<long long>(n), first);
    if (o->repeat > 0) {
      std::vector<double> t;
      for (int i = 0; i < o->repeat; ++i) {
        auto a = clk::now();
        clip_encode_prompts(tok, model, o->prompts);
        t.push_back(std::chrono::duration<double>(clk::now() - a).count());
      }
      std::sort(t.begin(), t.end());
      std::printf(
          "{\"impl\": \"uvit\", \"batch\": %lld, \"iters\": %d, \"median_s\": %.6f, "
          "\"min_s\": %.6f}\n",
          static_cast<long long>(n), o->repeat, t[t.size() / 2], t.front());
    }
  });
}

}  // namespace uvit::cli
