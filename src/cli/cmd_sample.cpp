// `uvit sample`: draws samples from trained weights through the library pipeline
// (include/uvit/pipeline.hpp, the same calls as the C API and `uvit serve`) and writes a grid,
// per-image PNGs, .npy / .npz arrays and/or the latents.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <optional>

#include "cli/autoencoder_cli.hpp"
#include "cli/checked_together.hpp"
#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/prompt_contexts.hpp"
#include "cli/rank_split.hpp"
#include "cli/sample_dir.hpp"
#include "cli/sample_grid.hpp"
#include "cli/sampling_options.hpp"
#include "diffusion/sampling_plan.hpp"
#include "dist/weights_hash.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/clip.hpp"
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

// A float32 .npy of exactly `want` (the error names the option's file and what it holds).
std::vector<float> load_f32(const std::string& path, const std::vector<int64_t>& want,
                            const char* what = "") {
  Array a = load_npy(path);
  UVIT_CHECK(a.shape == want, path, ": shape ", shape_str(a.shape), ", expected ", shape_str(want),
             what);
  return a.to_f32();
}

// The part of per-sample values `v` (`per` values each) that samples [begin, end) hold.
template <class T>
std::vector<T> part(const std::vector<T>& v, size_t per, long begin, long end) {
  if (v.empty()) return {};
  return std::vector<T>(v.begin() + begin * long(per), v.begin() + end * long(per));
}

// Entry i mod (its size) of a list cycled over the samples (-1 for an empty one).
template <class T>
T cycled(const std::vector<T>& v, long i, T none = T()) {
  return v.empty() ? none : v[size_t(i) % v.size()];
}
}  // namespace

void add_sample(CLI::App& app) {
  auto* cmd = app.add_subcommand("sample", "Generate samples from trained weights");
  struct Opts : SamplingOptions {
    std::string classes, out, npy, npz, dir, context, null_context, noise, cls_text;
    int n = 16, cls = -1;
    std::vector<std::string> prompt;
    std::string prompts_file, negative_prompt, clip, clip_config, vocab, latents;
    std::string preview;
    int preview_interval = 5;
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
  cmd->add_option("--out,-o", o->out,
                  "write a grid .png (with --classes all: one row per class); a printf pattern "
                  "such as out/img_%03d.png writes one PNG per sample instead (%d = the sample's "
                  "index)");
  cmd->add_option("--npy", o->npy, "write all samples as uint8 [N,H,W,C] .npy");
  cmd->add_option("--npz", o->npz,
                  "write all samples as .npz with arr_0 uint8 [N,H,W,C] (the ADM evaluator's and "
                  "DiT's sample_ddp.py layout)");
  cmd->add_option("--dir", o->dir,
                  "write one PNG per sample, NNNNNN.png, with the generation parameters (folder "
                  "created), each as its mini-batch is drawn; run again, the same command keeps "
                  "the samples already there and draws the rest (docs/cli.md \"--dir\")");
  cmd->add_option("--context", o->context, "text models: float32 [N,77,clip_dim] contexts .npy");
  cmd->add_option("--null-context", o->null_context,
                  "text models: the empty prompt's [77,clip_dim] .npy");
  cmd->add_option("--prompt", o->prompt,
                  "text models: a prompt (repeatable; sample i gets prompt i mod P; --n defaults "
                  "to P)");
  cmd->add_option("--prompts", o->prompts_file, "text models: a file of prompts, one per line");
  cmd->add_option("--negative-prompt", o->negative_prompt,
                  "text models: guidance pushes away from this prompt instead of the empty one");
  add_clip_options(cmd, o->clip, o->clip_config, o->vocab, ClipWeights::Text,
                   "text models: CLIPTextModel weights for --prompt", "text models: ");
  cmd->add_option("--noise", o->noise,
                  "the initial noise x_T as float32 [N,C,H,W] .npy instead of drawing it (later "
                  "noise still comes from --seed)");
  cmd->add_option("--latents", o->latents,
                  "latent models: the sampled latents (before decoding), float32 [N,C,H,W] .npy");
  cmd->add_option("--preview", o->preview,
                  "write the model's current guess of the running mini-batch's samples (x0) as "
                  "a grid .png while sampling, replaced atomically (docs/samplers.md \"Preview\")");
  cmd->add_option("--preview-interval", o->preview_interval,
                  "with --preview: every N network evaluations of a mini-batch, and at its last "
                  "(default 5)")
      ->check(at_least(1));
  cmd->callback([o, cmd] {
    // Under mpirun each rank draws whole mini-batches of the samples (sample i keeps the noise of
    // index i), rank 0 gathers them and writes the outputs. First: it picks the rank's GPU.
    Comm& comm = world(o->device);
    const bool lead = comm.rank() == 0;
    const bool seed_drawn = o->sampling.seed < 0;  // --seed -1 (resolve_seed replaces it)
    Config cfg;  // for the checks before loading; the pipeline loads the same
    // Each rank's --config and --set, decided together: one line for an error every rank meets
    // (docs/distributed.md "Errors before the work").
    // The same exchange carries each rank's seed (--seed -1: drawn); a rank given -1 takes rank
    // 0's, so that every rank samples from the seed printed and recorded.
    const auto draw = [&] {
      return o->sampling.seed < 0 ? random_seed() : uint64_t(o->sampling.seed);
    };
    const std::vector<uint64_t> drawn = checked_together(comm, draw, [&] { cfg = o->load(); });
    // Every rank read the config itself: compared first, as every check below depends on it.
    check_config_alike(comm, o->config, cfg.json);
    const NetSpec& nc = cfg.spec;
    bool per_image_out = false, images = false, latent = false;
    int n = 0;
    // Sample i's class: classes[i mod size]. No vector of --n entries is built before the
    // pipeline's memory check, which refuses a huge --n (docs/memory.md, "Host memory").
    std::vector<int> classes;
    // The checks before the work, each rank's decided together: one line under mpirun, naming a
    // rank whose files or folders (outputs, --prompts FILE) are not as the others'
    // (docs/distributed.md "Errors before the work").
    std::vector<std::string> prompts;
    checked_together(comm, [&] {
      if (!o->cls_text.empty())
        o->cls = nc.class_conditional() ? class_from_option(cfg, o->cls_text) : 0;
      per_image_out = !o->out.empty() && is_index_pattern("--out", o->out);
      images = !o->out.empty() || !o->npy.empty() || !o->npz.empty() || !o->dir.empty();
      UVIT_CHECK(images || !o->latents.empty(),
                 "nothing to write: give --out grid.png, --npy FILE, --npz FILE and/or --dir DIR");
      // Alone it would be dropped without a word: the previews need a file to go to.
      UVIT_CHECK(!o->preview.empty() || cmd->count("--preview-interval") == 0,
                 "--preview-interval needs --preview F.png (the file the previews are written to)");
      // Every output is checked before minutes of sampling, not at the end.
      check_output("--out", o->out, {".png"});
      check_output("--npy", o->npy, {".npy"});
      check_output("--npz", o->npz, {".npz"});
      check_output("--latents", o->latents, {".npy"});
      check_output("--preview", o->preview, {".png"});
      check_output_dir("--dir", o->dir);
      for (const auto& [option, path] :
           {std::pair<const char*, const std::string&>{"--npy", o->npy}, {"--latents", o->latents}})
        check_not_input(option, path,
                        {{"input --noise", o->noise},
                         {"input --context", o->context},
                         {"input --null-context", o->null_context},
                         {"output --npy", option == std::string("--npy") ? "" : o->npy}});
      // The final grid would replace the last preview (or a preview the grid) without a word.
      check_not_input("--preview", o->preview, {{"output --out", o->out}});
      prompts = gather_prompts(o->prompt, o->prompts_file);
    });
    // The inputs every rank reads itself (--prompts decides --n's default: before the checks).
    check_files_alike(comm, {{"--prompts", o->prompts_file},
                             {"--context", o->context},
                             {"--null-context", o->null_context},
                             {"--noise", o->noise}});
    GenerationRequest req;
    GenerateOptions resolved;  // the settings that run, recorded in the metadata
    std::optional<Pipeline> loaded;
    checked_together(comm, [&] {
      latent = cfg.json.contains("z_shape");
      o->check_autoencoder_applies(cfg);
      UVIT_CHECK(
          !latent || !images || !o->autoencoder.empty(), "config ", cfg.config_name,
          " is a latent model: give --autoencoder WEIGHTS (autoencoder_kl.pth, a VA-VAE .pt) to "
          "decode its samples (or only --latents FILE)");
      // The autoencoder's config alone decides it: refused before the network and it load.
      const std::string no_preview =
          o->preview.empty() ? "" : preview_unavailable(cfg, o->autoencoder_config);
      UVIT_CHECK(no_preview.empty(), "--preview: config ", cfg.config_name, ": ", no_preview);
      UVIT_CHECK(
          nc.text_conditional() || (prompts.empty() && o->negative_prompt.empty()), "config ",
          cfg.config_name, " is not text-to-image: --prompt/--prompts do not apply",
          nc.class_conditional() ? " (it is class-conditional: give --class K or --classes all)"
                                 : " (it is unconditional: leave them out)");
      n = !prompts.empty() && cmd->count("--n") == 0 ? int(prompts.size()) : o->n;
      if (nc.class_conditional()) {
        if (o->classes == "all") {
          classes = classes_all(cfg, real_classes(cfg));
        } else if (!o->classes.empty()) {
          UVIT_CHECK(o->cls < 0, "give --class or --classes, not both");
          classes = parse_class_list(o->classes, real_classes(cfg));
        } else {
          UVIT_CHECK(o->cls >= 0, "config ", cfg.config_name,
                     " is class-conditional: give --class K or --classes all");
          const int k = real_classes(cfg);
          UVIT_CHECK(o->cls < k, "--class ", o->cls, " is outside [0, ", k, ")");
          classes = {o->cls};
        }
      } else {
        UVIT_CHECK(o->cls < 0 && o->classes.empty(), "config ", cfg.config_name,
                   " is not class-conditional: --class/--classes do not apply");
      }
      o->resolve_seed(drawn[0], lead);  // --seed -1: printed (after the checks) and recorded
      req = o->request();
      req.negative_prompt = o->negative_prompt;
      if (nc.text_conditional() && !prompts.empty()) {
        UVIT_CHECK(o->context.empty() && o->null_context.empty(),
                   "give either --prompt/--prompts or --context/--null-context, not both");
        UVIT_CHECK(!o->clip.empty(), "--prompt needs the CLIP text encoder weights: give --clip W");
      } else if (nc.text_conditional()) {
        UVIT_CHECK(!o->context.empty(), "config ", cfg.config_name,
                   " is text-to-image: give --prompt TEXT (with --clip W) or --context "
                   "contexts.npy");
        UVIT_CHECK(o->negative_prompt.empty(),
                   "--negative-prompt needs --prompt and the CLIP text encoder (--clip W); with "
                   "--context give the negative prompt's context as --null-context");
        req.contexts = load_f32(o->context, {n, nc.context_tokens, nc.context_dim});
        if (!o->null_context.empty())
          req.null_context = load_f32(o->null_context, {nc.context_tokens, nc.context_dim});
      }
      if (!o->noise.empty())
        req.noise = load_f32(o->noise, {n, nc.in_chans, nc.img_size, nc.width()},
                             " (the initial noise x_T of the --n samples)");
      resolved = resolve_generation(cfg, req, flag_name);
      // The files, loaded before minutes of sampling: one a node lacks is named in one line.
      PipelineOptions po;
      po.config = o->config;
      po.set = o->set;
      po.weights = o->weights;
      po.autoencoder = latent && images ? o->autoencoder : "";
      po.autoencoder_config = o->autoencoder_config;
      po.latent_stats = o->latent_stats;
      po.clip = prompts.empty() ? "" : o->clip;
      po.clip_config = o->clip_config;
      po.vocab = o->vocab;
      po.device = o->device;
      po.precision = o->precision;
      po.decode = images;
      po.identify = lead && (!o->out.empty() || !o->dir.empty());  // PNG metadata names the files
      loaded.emplace(po);
    });
    Pipeline& pipe = *loaded;
    // Every rank read the files itself: a rank whose copy differs is refused in one line.
    check_loaded_alike(comm, "--weights " + o->weights,
                       [&] { return hash_network(pipe.network()); });
    if (pipe.autoencoder()) {
      check_loaded_alike(comm, "--autoencoder " + o->autoencoder,
                         [&] { return pipe.autoencoder()->weights_hash(); });
      check_autoencoder_files_alike(comm, pipe.config().json, o->autoencoder_config,
                                    o->latent_stats);
    }
    if (const ClipTextModel* clip = pipe.clip_model())
      check_clip_alike(
          comm, o->clip, [&] { return clip->weights_hash(); }, *pipe.clip_tokenizer(),
          o->clip_config, o->vocab);
    if (pipe.autoencoder()) print_skipped(*pipe.autoencoder(), o->autoencoder, o->quiet);
    // The mini-batch asked for (--batch or the preset's), and the one drawn: at most --n.
    const long asked_mb =
        req.batch > 0
            ? req.batch
            : cfg.json.value("sample", nlohmann::json::object()).value("mini_batch_size", 50);
    const long mb = std::min<long>(n, asked_mb);
    req.batch = int(mb);
    // The last checks: the whole job's request (alike on every rank; errors naming our flags,
    // generate's own name the fields), the lead's folders for the outputs, and what --dir holds.
    req.n = n;
    req.classes = classes;
    req.prompts = prompts;
    const int img_c = pipe.channels(), img_s = pipe.resolution(), img_w = pipe.width();
    const size_t per_image = size_t(img_c) * img_s * img_w;
    // A1111-style metadata (docs/serve.md): basenames and hashes, never paths.
    const auto params = [&](long i) {
      ImageParams p = image_params_for(cfg, resolved, pipe.identity(), cycled(classes, i, -1),
                                       cycled(prompts, i), uint64_t(i), img_w, img_s);
      p.negative_prompt = o->negative_prompt;
      // What else changes the samples, so that resuming --dir can compare it (sample_dir.hpp).
      p.precision = pipe.network().backend().precision();
      // As asked, not capped at --n: a folder of --n 8 grown to --n 50000 (docs/cli.md "--dir")
      // is not one of another --batch (the warning named a --batch 8 never given, and advised it).
      p.mini_batch = int(asked_mb);
      return p;
    };
    // The outputs that need every sample at the end; the others are written as each unit of
    // samples is drawn, so that a killed run keeps what it finished (docs/cli.md "--dir").
    const bool grid = !o->out.empty() && !per_image_out;
    const bool hold = images && (grid || !o->npy.empty() || !o->npz.empty());
    // The unit of drawing: whole mini-batches (and whole decoder chunks of 4), each drawn by one
    // call as in a straight run, so that a resumed or shared run gives its bytes.
    const long unit = pipe.autoencoder() ? std::lcm(mb, 4L) : mb;
    const long units = (n + unit - 1) / unit;
    const auto unit_end = [&](long u) { return std::min<long>(n, (u + 1) * unit); };
    std::vector<uint8_t> pending(size_t(units), 1);  // per unit: 1 to be drawn
    DirContents have;                                // the lead's scan of --dir
    checked_together(comm, [&] {
      UVIT_CHECK(o->preview.empty() || pipe.can_preview(), "--preview: config ", cfg.config_name,
                 ": ", pipe.preview_unavailable());
      pipe.check(req, flag_name);
      if (!lead) return;
      if (hold || !o->latents.empty()) {
        // Refused up front as one generate() call of all n would be (docs/memory.md "Host
        // memory"): an upper bound of what is held now.
        GenerateOptions g = resolve_generation(cfg, req, flag_name);
        const size_t px = images ? size_t(n) * per_image : 0;
        g.host_bytes = (o->latents.empty() ? 0 : size_t(n) * nc.in_numel() * 4) +
                       (pipe.autoencoder() ? px * 4 : 0) + px;
        planned_sampling_buffers(pipe.network(), cfg, g, n);
      }
      for (const std::string& f : {o->out, o->npy, o->npz, o->latents, o->preview})
        make_parent_dir(f);
      if (o->dir.empty()) return;
      make_dir(o->dir);
      have = scan_sample_dir(
          o->dir, n, [&](long i) { return params_record(params(i)); }, seed_drawn);
      // --latents needs every sample's latents: every unit is drawn, no file rewritten.
      for (long u = 0; u < units && o->latents.empty(); ++u) {
        pending[size_t(u)] = 0;
        for (long i = u * unit; i < unit_end(u); ++i) pending[size_t(u)] |= !have.done[size_t(i)];
      }
    });
    comm.bcast(pending.data(), pending.size(), 0);
    std::vector<long> todo;  // the units to draw, in order
    long to_draw = 0;        // their samples
    for (long u = 0; u < units; ++u)
      if (pending[size_t(u)]) todo.push_back(u), to_draw += unit_end(u) - u * unit;
    const auto in_dir = [&](long i) { return !have.done.empty() && have.done[size_t(i)]; };
    const auto kept = [&](long i) {  // sample i is taken from --dir, not drawn
      return in_dir(i) && !pending[size_t(i / unit)];
    };
    if (lead && have.broken > 0)
      std::fprintf(
          stderr, "uvit: warning: %s%s: drawn again and replaced\n", have.broken_why.c_str(),
          have.broken > 1 ? cat(" (and ", have.broken - 1, " more broken files)").c_str() : "");
    if (lead && have.other_batch > 0 && to_draw > 0)
      std::fprintf(stderr,
                   "uvit: warning: %s was drawn with --batch %ld, this run's is %ld: the %ld "
                   "samples drawn now differ in their last bits from a straight run's (give "
                   "--batch %ld for the same bytes)\n",
                   have.other_batch_file.c_str(), have.other_batch, asked_mb, to_draw,
                   have.other_batch);
    if (lead && !o->quiet && have.count > 0) {
      const long missing = n - have.count;
      std::fprintf(stderr, "%s: %ld of %d samples already there; %s\n", o->dir.c_str(), have.count,
                   n,
                   !o->latents.empty()
                       ? cat("drawing all ", n, " (--latents needs every sample's latents)").c_str()
                   : missing == 0       ? "nothing to draw"
                   : to_draw == missing ? cat("drawing the ", missing, " missing").c_str()
                                        : cat("drawing the ", missing, " missing (", to_draw,
                                              " samples in whole mini-batches of ", unit, ")")
                                              .c_str());
    }
    // This rank's units: the i-th of every `ranks` in `todo`, drawn in rounds that rank 0 gathers
    // and writes before the next.
    const int ranks = comm.size();
    long my_batches = 0;
    for (size_t k = size_t(comm.rank()); k < todo.size(); k += size_t(ranks)) {
      my_batches += (unit_end(todo[k]) - todo[k] * unit + mb - 1) / mb;
    }
    const std::vector<float> all_contexts = std::move(req.contexts),
                             all_noise = std::move(req.noise);
    req.contexts.clear();
    req.noise.clear();
    req.keep_latents = !o->latents.empty();
    const bool show = !o->quiet && lead;
    Progress sampling("sample (network evaluations)", 1, !show);
    int evals_before = 0;  // this rank's evaluations in the units already drawn
    double seconds = 0;    // and their sampling time
    long drawing = 0;      // the samples of the unit being drawn
    int unit_evals = 0;    // and its evaluations so far
    req.progress = [&](const char* phase, int done, int total) {
      if (total == 0) return true;  // the check before the first evaluation
      if (std::string(phase) == "sample") {
        // A unit's total over its mini-batches, times this rank's (dopri5's: not known, -1).
        sampling.set_total(total < 0 ? -1 : total / ((drawing + mb - 1) / mb) * my_batches);
        sampling.update(evals_before + (unit_evals = done));
      } else {
        sampling.update(evals_before + unit_evals, cat("decode ", done, "/", total));
      }
      return true;
    };
    if (lead && !o->preview.empty()) {  // rank 0's mini-batches
      req.preview_interval = o->preview_interval;
      req.preview = [&](const float* x0, int B, int, int, int) {
        write_png(o->preview, sample_grid(pipe.preview_images(x0, B)));
      };
    }
    std::vector<uint8_t> held;  // rank 0 with `hold`: every sample's pixels [n, H, W, C]
    if (lead && hold) held.resize(size_t(n) * per_image);
    // The samples taken from --dir: their pixels where another output needs them.
    for (long i = 0; lead && (hold || per_image_out) && i < n; ++i) {
      if (!kept(i)) continue;
      const Image im =
          read_sample_png(o->dir + "/" + sample_file_name(uint64_t(i)), img_w, img_s, img_c);
      if (hold) std::copy(im.px.begin(), im.px.end(), held.begin() + ptrdiff_t(i * per_image));
      if (per_image_out)
        write_png(format_index_pattern(o->out, uint64_t(i)), im, png_metadata(params(i)));
    }
    // Sample i's files, from its pixels `px`, as soon as its unit is drawn.
    const auto emit = [&](long i, const uint8_t* px) {
      if (hold) std::copy_n(px, per_image, held.begin() + ptrdiff_t(i * per_image));
      if (per_image_out)
        write_png(format_index_pattern(o->out, uint64_t(i)), px, img_w, img_s, img_c,
                  png_metadata(params(i)));
      if (!o->dir.empty() && !in_dir(i))
        write_png(o->dir + "/" + sample_file_name(uint64_t(i)), px, img_w, img_s, img_c,
                  png_metadata(params(i)));
    };
    std::vector<float> latents;  // rank 0 with --latents: every sample's (every unit is drawn)
    for (size_t round = 0; round < todo.size(); round += size_t(ranks)) {
      const size_t k = round + size_t(comm.rank());
      GenerationResult res;
      if (k < todo.size()) {
        const long begin = todo[k] * unit, end = unit_end(todo[k]);
        GenerationRequest r = req;
        r.n = int(end - begin);
        r.first_index = uint64_t(begin);
        // The unit's samples cycle the classes and prompts from sample `begin` on.
        r.classes.clear();
        for (size_t j = 0; j < classes.size(); ++j)
          r.classes.push_back(cycled(classes, begin + long(j)));
        r.prompts.clear();
        for (long j = 0; !prompts.empty() && j < std::min<long>(r.n, long(prompts.size())); ++j)
          r.prompts.push_back(prompts[size_t(begin + j) % prompts.size()]);
        r.contexts = part(all_contexts, nc.context_numel(), begin, end);
        r.noise = part(all_noise, nc.in_numel(), begin, end);
        drawing = r.n;
        res = pipe.generate(r);
        evals_before += res.evaluations;
        seconds += res.sample_seconds;
      }
      if (!o->latents.empty()) {
        const std::vector<float> got = gather_to_root(comm, res.latents);
        latents.insert(latents.end(), got.begin(), got.end());
      }
      if (!images) continue;
      std::vector<uint8_t> px;
      for (const GeneratedImage& im : res.images)
        px.insert(px.end(), im.image.px.begin(), im.image.px.end());
      px = gather_to_root(comm, px);
      if (!lead) continue;
      // Rank order is `todo`'s order: each rank's unit after the one before.
      const uint8_t* p = px.data();
      for (size_t j = round; j < std::min(todo.size(), round + size_t(ranks)); ++j)
        for (long i = todo[j] * unit; i < unit_end(todo[j]); ++i) emit(i, p), p += per_image;
    }
    sampling.finish();
    if (lead && !o->latents.empty())
      save_npy(o->latents,
               Array::from_f32({n, nc.in_chans, nc.img_size, nc.width()}, latents.data()));
    // Rank 0 may have drawn no unit of its own: report the busiest rank's time and count.
    int evaluations = evals_before;
    const double mine_stats[2] = {seconds, double(evaluations)};
    std::vector<double> stats(2 * size_t(comm.size()));
    comm.allgather_bytes(mine_stats, sizeof mine_stats, stats.data());
    for (size_t r = 0; r < stats.size(); r += 2) {
      seconds = std::max(seconds, stats[r]);
      evaluations = std::max(evaluations, int(stats[r + 1]));
    }
    if (!lead) return;
    if (grid) {
      std::vector<Image> imgs;
      for (long i = 0; i < n; ++i) {
        imgs.emplace_back(img_w, img_s, img_c, 0);
        std::copy_n(held.begin() + ptrdiff_t(i * per_image), per_image, imgs.back().px.begin());
      }
      std::vector<int> rows;  // with --classes all: one row per class
      for (int i = 0; o->classes == "all" && i < n; ++i) rows.push_back(cycled(classes, i));
      const Image g = sample_grid(imgs, rows, real_classes(cfg));
      write_png(o->out, g, grid_metadata(params(0), n));
    }
    if (!o->npy.empty() || !o->npz.empty()) {
      Array a(DType::U8, {n, img_s, img_w, img_c});
      std::copy(held.begin(), held.end(), a.as<uint8_t>());
      if (!o->npy.empty()) save_npy(o->npy, a);
      if (!o->npz.empty()) save_npz(o->npz, {{"arr_0", std::move(a)}});
    }
    if (!o->quiet)
      std::fprintf(stderr, "%ld samples in %.2f s (%d network evaluations)\n", to_draw, seconds,
                   evaluations);
  });
}

}  // namespace uvit::cli
