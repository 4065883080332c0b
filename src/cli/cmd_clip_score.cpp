// `uvit clip-score`: CLIPScore (100 * max(cos, 0), averaged) of images against their prompts with
// both CLIP towers (docs/clip_score.md).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>

#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "cli/eval_metrics.hpp"
#include "cli/json_text.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/prompt_contexts.hpp"
#include "uvit/clip_vision.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

void add_clip_score(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "clip-score", "CLIPScore of images against prompts (CLIP ViT-L/14 image and text towers)");
  struct Opts {
    std::string images, prompts, clip, clip_config, vocab, json, device = "cpu", precision;
    int batch = 16, repeat = 0;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--images", o->images,
                  "a folder of images (sorted by name) or a uint8 .npy/.npz [N,H,W,C] (arr_0)")
      ->required();
  cmd->add_option("--prompts", o->prompts,
                  "prompts, one per line (blank lines skipped): image i gets prompt i mod P")
      ->required();
  add_clip_options(cmd, o->clip, o->clip_config, o->vocab, ClipWeights::Model,
                   "CLIPModel weights with both towers and projections (.safetensors or torch "
                   ".bin/.pth), e.g. openai/clip-vit-large-patch14")
      ->required();
  cmd->add_option("--batch", o->batch, "images per forward pass (default 16)")->check(at_least(1));
  cmd->add_option("--json", o->json, "also write the score (and each image's) as JSON");
  add_encoder_device(cmd, o->device, o->precision, "the CLIP towers");
  cmd->add_option("--repeat", o->repeat,
                  "benchmark: run the image tower this many more times over the images (batches "
                  "of --batch, preprocessing included) and print the median img/s (default 0: "
                  "none)")
      ->check(at_least(0));
  cmd->add_flag("--quiet,-q", o->quiet, "print only results and errors");
  cmd->callback([o] {
    check_output("--json", o->json, {".json"});
    const std::vector<std::string> prompts = gather_prompts({}, o->prompts);
    auto be = make_encoder_backend(o->device, o->precision);
    ClipScorer scorer(o->clip, o->clip_config, o->vocab, *be);
    std::vector<Image> ims;
    std::unique_ptr<Progress> bar;
    std::vector<float> img_emb;
    const int D = scorer.dim();
    visit_image_source(
        o->images, o->batch,
        [&](long n) {
          bar = std::make_unique<Progress>("clip-score", n, o->quiet);
          img_emb.resize(size_t(n) * D);
          return std::make_pair(0L, n);
        },
        [&](const ImageRun& r) {
          ims.clear();
          const size_t per = size_t(r.h) * r.w * r.c;
          for (int j = 0; j < r.n; ++j) {
            Image im(r.w, r.h, r.c);
            std::copy(r.px + j * per, r.px + (j + 1) * per, im.px.begin());
            ims.push_back(std::move(im));
          }
          const std::vector<float> e = scorer.image_embeddings(ims, o->batch);
          std::copy(e.begin(), e.end(), img_emb.begin() + r.first * D);
          bar->update(r.first + r.n, "", 1, "img/s");
        });
    bar->finish();
    const long n = long(img_emb.size() / size_t(D));
    std::vector<std::string> per_image;
    for (long i = 0; i < n; ++i) per_image.push_back(prompts[size_t(i) % prompts.size()]);
    const std::vector<float> txt_emb = scorer.text_embeddings(per_image);
    const std::vector<double> s = clip_scores(img_emb.data(), txt_emb.data(), n, D);
    double mean = 0;
    for (double v : s) mean += v;
    mean /= double(n);
    std::printf("CLIPScore: %s\n", py_float(mean).c_str());
    if (!o->json.empty()) {
      nlohmann::json j = {{"clip_score", mean},    {"n", n},          {"images", o->images},
                          {"prompts", o->prompts}, {"clip", o->clip}, {"per_image", s}};
      make_parent_dir(o->json);
      const std::string t = json_text(j, 1) + "\n";
      write_file_atomic(o->json, t.data(), t.size());
    }
    if (o->repeat > 0) {
      // The decoded images once more, then timed passes of preprocessing + image tower.
      std::vector<Image> all;
      visit_image_source(
          o->images, o->batch, [](long m) { return std::make_pair(0L, m); },
          [&](const ImageRun& r) {
            const size_t per = size_t(r.h) * r.w * r.c;
            for (int j = 0; j < r.n; ++j) {
              Image im(r.w, r.h, r.c);
              std::copy(r.px + j * per, r.px + (j + 1) * per, im.px.begin());
              all.push_back(std::move(im));
            }
          });
      std::vector<double> t;
      for (int i = 0; i < o->repeat; ++i) {
        const auto a = std::chrono::steady_clock::now();
        scorer.image_embeddings(all, o->batch);
        be->synchronize();
        t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - a).count());
      }
      std::sort(t.begin(), t.end());
      std::printf(
          "{\"impl\": \"uvit\", \"images\": %ld, \"batch\": %d, \"iters\": %d, "
          "\"median_s\": %.6f, \"img_per_s\": %.3f}\n",
          n, o->batch, o->repeat, t[t.size() / 2], double(n) / t[t.size() / 2]);
    }
    if (!o->quiet && prompts.size() != size_t(n))
      std::fprintf(stderr, "note: %zu prompts for %ld images (image i gets prompt i mod %zu)\n",
                   prompts.size(), n, prompts.size());
  });
}

}  // namespace uvit::cli
