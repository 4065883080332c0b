// `uvit sample`: draws samples from trained weights and writes a grid, PNGs and/or .npy.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <optional>

#include "cli/autoencoder_cli.hpp"
#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/prompt_contexts.hpp"
#include "cli/rank_split.hpp"
#include "cli/sample_grid.hpp"
#include "cli/sampling_options.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/pipeline.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// "0,3,7,9": class indices in [0, k), at least one.
std::vector<int> parse_class_list(const std::string& text, int k) {
  std::vector<int> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    char* end = nullptr;
    const long v = std::strtol(item.c_str(), &end, 10);
    UVIT_CHECK(!item.empty() && end && *end == '\0',
               "--classes: expected 'all' or a list such as "
               "0,3,7,9, got '",
               text, "'");
    UVIT_CHECK(v >= 0 && v < k, "--classes: class ", v, " is outside [0, ", k, ")");
    out.push_back(int(v));
    start = comma + 1;
  }
  return out;
}
}  // namespace

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate samples from trained weights");
  struct Opts : SamplingOptions {
    std::string classes, out, npy, dir, context, null_context, noise, cls_text;
    int n = 16, cls = -1;
    std::vector<std::string> prompt;
    std::string prompts_file, clip, clip_config, vocab, latents;
  };
  auto o = std::make_shared<Opts>();
  add_sampling_options(cmd, *o, "cpu or cuda (sampling, and the decode and prompt encoding)");
  cmd->add_option("--n", o->n, "number of samples (default 16; with --prompt: one per prompt)")
      ->check(at_least(1));
  auto* c1 = cmd->add_option("--class", o->cls_text,
                             "class models: the class of every sample: an id, a WordNet id or a "
                             "name, case-insensitive (uvit info --config C --classes)");
  auto* c2 = cmd->add_option("--classes", o->classes,
                             "class models: 'all' gives sample i class i mod (classes); a list "
                             "such as 0,3,7,9 gives sample i entry i mod (its length)");
  c1->excludes(c2);
  cmd->add_option("--out,-o", o->out, "write a grid .png (with --classes all: one row per class)");
  cmd->add_option("--npy", o->npy, "write all samples as uint8 [N,H,W,C] .npy");
  cmd->add_option("--dir", o->dir,
                  "write one PNG per sample, with the generation parameters (folder created)");
  cmd->add_option("--context", o->context, "text models: float32 [N,77,clip_dim] contexts .npy");
  cmd->add_option("--null-context", o->null_context,
                  "text models: the empty prompt's [77,clip_dim] .npy");
  cmd->add_option("--prompt", o->prompt,
                  "text models: a prompt (repeatable; sample i gets prompt i mod P; --n defaults "
                  "to P)");
  cmd->add_option("--prompts", o->prompts_file, "text models: a file of prompts, one per line");
  cmd->add_option("--clip", o->clip, "text models: CLIPTextModel weights for --prompt");
  cmd->add_option("--clip-config", o->clip_config, "HF CLIPTextConfig JSON (default: ViT-L/14)");
  cmd->add_option("--vocab", o->vocab, "CLIP vocabulary (default: the repository's data/clip)");
  cmd->add_option("--noise", o->noise,
                  "the initial noise x_T as float32 [N,C,H,W] .npy instead of drawing it (later "
                  "noise still comes from --seed)");
  cmd->add_option("--latents", o->latents,
                  "latent models: the sampled latents (before decoding), float32 [N,C,H,W] .npy");
  cmd->callback([o, cmd] {
    // Under mpirun each rank draws whole mini-batches of the samples (sample i keeps the noise of
    // index i), rank 0 gathers them and writes the outputs. First: it picks the rank's GPU.
    Comm& comm = world(o->device);
    const bool lead = comm.rank() == 0;
    const Config cfg = o->load();
    const NetSpec& nc = cfg.spec;
    if (!o->cls_text.empty())
      o->cls = nc.class_conditional() ? class_from_option(cfg, o->cls_text) : 0;
    o->resolve_seed();  // --seed -1: a random seed, printed and recorded
    const bool images = !o->out.empty() || !o->npy.empty() || !o->dir.empty();
    UVIT_CHECK(images || !o->latents.empty(),
               "nothing to write: give --out grid.png, --npy FILE and/or --dir DIR");
    // Every output is checked before minutes of sampling, not at the end.
    check_output("--out", o->out, {".png"});
    check_output("--npy", o->npy, {".npy"});
    check_output("--latents", o->latents, {".npy"});
    check_output_dir("--dir", o->dir);
    const bool latent = cfg.json.contains("z_shape");
    UVIT_CHECK(
        !latent || !images || !o->autoencoder.empty(), "config ", cfg.config_name,
        " is a latent model: give --autoencoder WEIGHTS (autoencoder_kl.pth, a VA-VAE .pt) to "
        "decode its samples (or only --latents FILE)");
    std::optional<Autoencoder> ae;  // loaded up front so a bad file fails before sampling
    if (latent && images) {
      ae.emplace(load_preset_autoencoder(cfg.json, o->autoencoder, o->autoencoder_config,
                                         o->latent_stats, o->device,
                                         encoders_beside(o->device, o->precision)));
      print_skipped(*ae, o->autoencoder, o->quiet);
    }
    const std::vector<std::string> prompts = gather_prompts(o->prompt, o->prompts_file);
    UVIT_CHECK(nc.text_conditional() || prompts.empty(), "config ", cfg.config_name,
               " is not text-to-image: --prompt/--prompts do not apply",
               nc.class_conditional()
                   ? " (it is class-conditional: give --class K or --classes all)"
                   : " (it is unconditional: leave them out)");
    const int n = !prompts.empty() && cmd->count("--n") == 0 ? int(prompts.size()) : o->n;
    std::vector<int> labels;
    if (nc.class_conditional()) {
      if (o->classes == "all") {
        labels = classes_all(cfg, n);
      } else if (!o->classes.empty()) {
        UVIT_CHECK(o->cls < 0, "give --class or --classes, not both");
        const std::vector<int> list = parse_class_list(o->classes, real_classes(cfg));
        for (int i = 0; i < n; ++i) labels.push_back(list[size_t(i) % list.size()]);
      } else {
        UVIT_CHECK(o->cls >= 0, "config ", cfg.config_name,
                   " is class-conditional: give --class K or --classes all");
        const int k = real_classes(cfg);
        UVIT_CHECK(o->cls < k, "--class ", o->cls, " is outside [0, ", k, ")");
        labels.assign(n, o->cls);
      }
    } else {
      UVIT_CHECK(o->cls < 0 && o->classes.empty(), "config ", cfg.config_name,
                 " is not class-conditional: --class/--classes do not apply");
    }
    std::vector<float> ctx, null_ctx;
    std::vector<std::string> sample_prompts;  // per sample, for the PNG metadata
    if (nc.text_conditional() && !prompts.empty()) {
      UVIT_CHECK(o->context.empty() && o->null_context.empty(),
                 "give either --prompt/--prompts or --context/--null-context, not both");
      PromptContexts pc =
          encode_prompts_for_sampling(prompts, n, o->clip, o->clip_config, o->vocab, o->device,
                                      encoders_beside(o->device, o->precision));
      const size_t per = nc.context_numel();
      UVIT_CHECK(pc.null_context.size() == per, o->clip, ": CLIP contexts are [77, ",
                 pc.null_context.size() / 77, "], config ", cfg.config_name, " expects [",
                 nc.context_tokens, ", ", nc.context_dim, "]");
      ctx = std::move(pc.contexts);
      null_ctx = std::move(pc.null_context);
      sample_prompts = std::move(pc.prompts);
    } else if (nc.text_conditional()) {
      UVIT_CHECK(!o->context.empty(), "config ", cfg.config_name,
                 " is text-to-image: give --prompt TEXT (with --clip W) or --context "
                 "contexts.npy");
      Array a = load_npy(o->context);
      const std::vector<int64_t> want = {n, nc.context_tokens, nc.context_dim};
      UVIT_CHECK(a.shape == want, o->context, ": shape ", shape_str(a.shape), ", expected ",
                 shape_str(want));
      ctx = a.to_f32();
      if (!o->null_context.empty()) {
        Array b = load_npy(o->null_context);
        const std::vector<int64_t> w2 = {nc.context_tokens, nc.context_dim};
        UVIT_CHECK(b.shape == w2, o->null_context, ": shape ", shape_str(b.shape), ", expected ",
                   shape_str(w2));
        null_ctx = b.to_f32();
      }
    }
    auto be = make_backend(o->device, o->precision);
    auto net = make_network(cfg, *be);
    net->load_file(o->weights);
    // Resolve the preset defaults here (as generate() would) so the PNG metadata records the
    // sampler, steps and guidance scale actually used.
    GenerateOptions g = o->generate_options(cfg);
    if (!o->noise.empty()) {
      Array a = load_npy(o->noise);
      const std::vector<int64_t> want = {n, nc.in_chans, nc.img_size, nc.img_size};
      UVIT_CHECK(a.shape == want, o->noise, ": shape ", shape_str(a.shape), ", expected ",
                 shape_str(want), " (the initial noise x_T of the --n samples)");
      g.noise = a.to_f32();
    }
    if (lead) {
      for (const std::string& f : {o->out, o->npy, o->latents}) make_parent_dir(f);
      if (!o->dir.empty()) fs::create_directories(o->dir);
    }
    const size_t in_numel = nc.in_numel();
    const long mb = std::min<long>(
        n, g.mini_batch > 0
               ? g.mini_batch
               : cfg.json.value("sample", nlohmann::json::object()).value("mini_batch_size", 50));
    g.mini_batch = int(mb);
    // Whole mini-batches (and whole decoder chunks of 4) per rank: each computed as in one process.
    const RankRange part = rank_range(comm, n, ae ? std::lcm(mb, 4L) : mb);
    const int mine = int(part.end - part.begin);
    auto slice = [&](const auto& v, size_t per) {
      using V = std::decay_t<decltype(v)>;
      if (v.empty() || comm.size() == 1) return v;
      return V(v.begin() + part.begin * long(per), v.begin() + part.end * long(per));
    };
    const std::vector<int> my_labels = slice(labels, 1);
    const std::vector<float> my_ctx = slice(ctx, nc.context_numel());
    g.noise = slice(g.noise, in_numel);
    g.first_index = uint64_t(part.begin);
    Progress timing("sample (network evaluations)", 1, o->quiet || !lead);
    const auto t0 = std::chrono::steady_clock::now();
    long last_done = 0;
    g.progress = [&](int done, int total) {
      last_done = done;
      timing.set_total(total);
      timing.update(done);
    };
    std::vector<float> x;
    if (mine > 0) x = generate(*net, cfg, g, mine, my_labels, my_ctx, null_ctx);
    timing.finish();
    if (!o->latents.empty()) {
      const std::vector<float> all = gather_to_root(comm, x);
      if (lead)
        save_npy(o->latents,
                 Array::from_f32({n, nc.in_chans, nc.img_size, nc.img_size}, all.data()));
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int img_c = nc.in_chans, img_s = nc.img_size;
    if (ae) {
      Progress bar("decode", mine, o->quiet || !lead);
      if (mine > 0 && images)
        x = decode_latents(*ae, x, mine, img_c, img_s, img_s, 4,
                           [&](int64_t done, int64_t) { bar.update(long(done)); });
      bar.finish();
      img_c = ae->config().out_ch, img_s *= ae->config().downsample_factor();
    }
    if (images) x = gather_to_root(comm, x);
    if (!lead) return;
    auto imgs = images ? to_images(x, n, img_c, img_s) : std::vector<Image>{};
    // A1111-style metadata (docs/serve.md): basenames and hashes, never paths.
    const ModelIdentity id = !o->out.empty() || !o->dir.empty()
                                 ? model_identity(cfg, o->weights, ae ? o->autoencoder : "")
                                 : ModelIdentity{};
    const auto params = [&](int i) {
      return image_params_for(cfg, g, id, labels.empty() ? -1 : labels[size_t(i)],
                              sample_prompts.empty() ? "" : sample_prompts[size_t(i)],
                              g.first_index + uint64_t(i), img_s, img_s);
    };
    if (!o->out.empty()) {
      const bool rows = o->classes == "all";  // one row per class
      const Image grid = sample_grid(imgs, rows ? labels : std::vector<int>{}, real_classes(cfg));
      write_png(o->out, grid, grid_metadata(params(0), n));
    }
    if (!o->dir.empty()) {
      for (int i = 0; i < n; ++i)
        write_png(o->dir + "/" + sample_file_name(g.first_index + uint64_t(i)), imgs[i],
                  png_metadata(params(i)));
    }
    if (!o->npy.empty()) {
      const int c = img_c, s = img_s;
      Array a(DType::U8, {n, s, s, c});
      for (int i = 0; i < n; ++i)
        std::copy(imgs[i].px.begin(), imgs[i].px.end(), a.as<uint8_t>() + size_t(i) * s * s * c);
      save_npy(o->npy, a);
    }
    if (!o->quiet)
      std::fprintf(stderr, "%d samples in %.2f s (%ld network evaluations)\n", n, secs, last_done);
  });
}

}  // namespace uvit::cli
