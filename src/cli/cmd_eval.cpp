// `uvit eval`: samples N images in chunks, scores them with the FID Inception and reports the ADM
// evaluator's Inception Score, FID, sFID, Precision and Recall against reference statistics or an
// ADM reference batch (eval_metrics.hpp), and CLIPScore for text-to-image presets. Each finished
// chunk (uint8 samples + pool3 + logits + spatial features [+ CLIPScores]) is saved in the work
// folder, so an interrupted run resumes where it stopped; an older uvit's chunk (no sFID features)
// keeps its samples and gets its features from them.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

#include "cli/autoencoder_cli.hpp"
#include "cli/checked_together.hpp"
#include "cli/chunk_claim.hpp"
#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "cli/eval_metrics.hpp"
#include "cli/json_text.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/prompt_contexts.hpp"
#include "cli/rank_split.hpp"
#include "cli/run_manifest.hpp"
#include "cli/sample_grid.hpp"
#include "cli/sampling_options.hpp"
#include "core/mem_limit.hpp"
#include "core/signals.hpp"
#include "dist/weights_hash.hpp"
#include "io/abs_path.hpp"
#include "io/file.hpp"
#include "io/loaded_weights.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip_vision.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"
#include "uvit/metadata.hpp"
#include "uvit/pipeline.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {

struct Chunk {
  Array samples;        // uint8 [m, H, W, C]
  Array pool3;          // f32 [m, 2048]
  Array logits;         // f32 [m, 1008]
  Array spatial;        // f32 [m, 2023] (sFID)
  Array clip;           // f64 [m] CLIPScore of each sample (text-to-image presets)
  double seconds = -1;  // how long the chunk took when it was made; -1: not recorded (older)
};

// What eval holds of all N samples until the metrics: the images, RGB even for gray presets (the
// ADM evaluator's graph takes [N, H, W, 3]; the only copy of them in memory), their Inception
// features and, for text presets, their CLIPScores. The up-front memory check counts
// bytes_per_sample, next to the allocation it sizes (docs/memory.md, "Host memory").
struct HeldSamples {
  static constexpr int64_t kChannels = 3;
  static constexpr size_t kFeatures =
      FidInception::kDims + FidInception::kClasses + FidInception::kSpatialDims;

  static size_t bytes_per_sample(int s, bool text) {
    return size_t(s) * s * kChannels + kFeatures * sizeof(float) + (text ? sizeof(double) : 0);
  }
  HeldSamples(long n, int s, bool text)
      : batch(DType::U8, {n, s, s, kChannels}),
        pool3(size_t(n) * FidInception::kDims),
        logits(size_t(n) * FidInception::kClasses),
        spatial(size_t(n) * FidInception::kSpatialDims),
        clip(text ? size_t(n) : 0) {}

  Array batch;                                // uint8 [N, H, W, 3], filled chunk by chunk
  std::vector<float> pool3, logits, spatial;  // [N, kDims], [N, kClasses], [N, kSpatialDims]
  std::vector<double> clip;                   // [N] (text presets) or empty
};

// What a chunk file gives on resuming.
enum class Stored {
  None,     // missing, damaged or of other shapes: made again
  Whole,    // samples and every feature: used as it is
  Samples,  // samples without their sFID features (an older uvit): features computed from them
};

Stored load_chunk(const std::string& path, long m, int s, int c, bool clip, Chunk* out) {
  if (!fs::exists(path)) return Stored::None;
  NamedArrays z;
  try {
    z = load_npz(path);
  } catch (const Error&) {
    return Stored::None;  // a damaged chunk is redone
  }
  for (auto& [k, v] : z) {
    if (k == "samples") out->samples = std::move(v);
    if (k == "pool3") out->pool3 = std::move(v);
    if (k == "logits") out->logits = std::move(v);
    if (k == "spatial") out->spatial = std::move(v);
    if (k == "clip_score") out->clip = std::move(v);
    if (k == "seconds" && v.dtype == DType::F64 && v.numel() == 1) out->seconds = *v.as<double>();
  }
  if (out->samples.shape != std::vector<int64_t>({m, s, s, c}) || out->samples.dtype != DType::U8)
    return Stored::None;
  if (clip && (out->clip.dtype != DType::F64 || out->clip.shape != std::vector<int64_t>({m})))
    return Stored::None;
  const bool features = out->pool3.shape == std::vector<int64_t>({m, FidInception::kDims}) &&
                        out->logits.shape == std::vector<int64_t>({m, FidInception::kClasses}) &&
                        out->spatial.shape == std::vector<int64_t>({m, FidInception::kSpatialDims});
  return features ? Stored::Whole : Stored::Samples;
}

// The chunk's Inception features from its samples (one pass gives all three). A chunk of an older
// uvit keeps none of its own: they need not be the bits this run computes (another version or
// thread count), and a fresh eval's numbers come from these (docs/formats.md, "Across versions").
void chunk_features(const FidInception& inception, long m, int s, int c, Chunk* ch) {
  ch->pool3 = Array(DType::F32, {m, FidInception::kDims});
  ch->logits = Array(DType::F32, {m, FidInception::kClasses});
  ch->spatial = Array(DType::F32, {m, FidInception::kSpatialDims});
  // The whole chunk at once: the Inception batches it on a GPU.
  inception.forward_u8(ch->samples.as<uint8_t>(), int(m), s, s, c, ch->pool3.as<float>(),
                       ch->logits.as<float>(), ch->spatial.as<float>());
}

// A write that failed (a full disk) loses nothing finished: said with the error, so that the user
// frees space and resumes rather than starting over (docs/evaluation.md, "`uvit eval`").
template <class Write>
void kept_on_failure(const std::string& work, Write&& write) {
  saying(write, [&](const std::string& what) {
    return cat(what, "; the finished chunks are kept in ", work,
               ": free space, then run the same command again to resume");
  });
}

// Writes the chunk (temp file + rename: save_npz); its time only when it was made here.
void save_chunk(const std::string& path, const Chunk& ch, bool text) {
  NamedArrays members = {
      {"samples", ch.samples}, {"pool3", ch.pool3}, {"logits", ch.logits}, {"spatial", ch.spatial}};
  if (text) members.emplace_back("clip_score", ch.clip);
  if (ch.seconds >= 0) {
    Array sec(DType::F64, {1});
    *sec.as<double>() = ch.seconds;
    members.emplace_back("seconds", sec);
  }
  save_npz(path, members);
}

// A SIGINT/SIGTERM/SIGHUP (a closed terminal) stops eval by its default action (the chunk being
// written first finishes its rename, io::SignalHold); this line says first that the finished chunks
// stay and how to resume, even with -q, as train's "interrupted: checkpoint written" (the exit
// status alone says nothing).
char g_interrupt_note[4096];
size_t g_interrupt_note_len = 0;

extern "C" void eval_interrupted(int sig) {
  ssize_t r = ::write(STDERR_FILENO, g_interrupt_note, g_interrupt_note_len);
  (void)r;
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// Installs eval_interrupted while it lives (not over an ignored signal: a background job's SIGINT,
// nohup's SIGHUP).
class InterruptNote {
 public:
  InterruptNote(const std::string& work, bool lead, bool bar) {
    if (!lead) return;  // one line from rank 0 under mpirun
    const std::string note =
        cat(bar && stderr_redraws() ? "\n" : "",  // below a terminal's live bar
            "interrupted: the finished chunks are kept in ", work,
            "; run the same command again to resume\n");
    g_interrupt_note_len = std::min(note.size(), sizeof g_interrupt_note);
    std::memcpy(g_interrupt_note, note.data(), g_interrupt_note_len);
    scope_.emplace(std::initializer_list<int>{SIGINT, SIGTERM, SIGHUP}, eval_interrupted,
                   SignalScope::Ignored::Keep);
  }

 private:
  std::optional<SignalScope> scope_;
};

// The prompts of --prompts FILE. The file's identity is noted at an open before the read, as the
// weights readers note theirs, so that the SHA-256 the manifest records (file_sha256) is of the
// prompts read or is refused as "changed while it was read".
std::vector<std::string> read_prompts(const std::string& path) {
  std::optional<io::FileId> id;
  try {
    id = io::InFile(path).id();
  } catch (const Error&) {  // gather_prompts says what is wrong with it
  }
  std::vector<std::string> prompts = gather_prompts({}, path);
  if (id) io::note_loaded(path, *id);
  return prompts;
}

}  // namespace

void add_eval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "Sample N images; report IS, FID, sFID, precision, recall as the ADM evaluator");
  struct Opts : SamplingOptions {
    std::string ref, ref_features, inception, out = "eval_samples.npz", work, metrics = "all", json;
    std::string prompts, clip, clip_config, vocab, inception_input = "pytorch-fid";
    int n = 50000, chunk = 1000;
    long max_chunks = 0;
  };
  auto o = std::make_shared<Opts>();
  add_sampling_options(cmd, *o, "cpu or cuda (sampling, the autoencoder and the Inception)");
  cmd->add_option("--n", o->n, "number of samples (default 50000)")->check(at_least(1));
  cmd->add_option("--ref", o->ref,
                  "reference .npz: FID statistics (mu, sigma; mu_s, sigma_s for sFID) or an ADM "
                  "reference batch (those and arr_0, whose images give precision/recall)")
      ->required();
  cmd->add_option("--metrics", o->metrics,
                  "all (Inception Score, FID, sFID, Precision, Recall; the default) or fid (FID, "
                  "sFID)")
      ->check(CLI::IsMember({"fid", "all"}));
  cmd->add_option("--ref-features", o->ref_features,
                  "reference pool3 features .npy [N,2048] (uvit fid-features) for precision/recall "
                  "(default: the features of the reference batch's arr_0)");
  cmd->add_option("--inception", o->inception,
                  "FID Inception weights pt_inception-2015-12-05-6726825d.pth (default: "
                  "$UVIT_INCEPTION)");
  add_inception_input_option(cmd, o->inception_input);
  cmd->add_option("--out,-o", o->out,
                  "all samples as .npz (arr_0: uint8 [N,H,W,C]; default eval_samples.npz)");
  cmd->add_option("--work", o->work, "folder of finished chunks for resuming (default: OUT.parts)");
  cmd->add_option("--chunk", o->chunk, "samples per saved chunk (default 1000)")
      ->check(at_least(1));
  cmd->add_option("--json", o->json, "also write the metrics as JSON");
  cmd->add_option("--max-chunks", o->max_chunks,
                  "compute at most this many chunks, then stop (run the same command again to "
                  "continue; 0: all, the default)")
      ->check(at_least(0));
  cmd->add_option("--prompts", o->prompts,
                  "text-to-image presets: prompts, one per line; sample i gets prompt i mod P");
  add_clip_options(cmd, o->clip, o->clip_config, o->vocab, ClipWeights::Model,
                   "text-to-image presets: CLIPModel weights (openai/clip-vit-large-patch14): the "
                   "text tower encodes the prompts, both towers give CLIPScore",
                   "text-to-image presets: ");
  cmd->callback([o] {
    Comm& comm = world(o->device);  // under mpirun: the chunks are shared among the ranks
    const bool lead = comm.rank() == 0;
    Config cfg;
    // Each rank's options, decided together: one line for an error every rank meets, the rank
    // named for one only it meets (docs/distributed.md "Errors before the work").
    checked_together(comm, [&] {
      UVIT_CHECK(o->max_chunks == 0 || comm.size() == 1,
                 "--max-chunks works in one process (under mpirun the ranks share the chunks)");
      check_output("--out", o->out, {".npz"});
      check_output("--json", o->json, {".json"});
      check_output_dir("--work", o->work.empty() ? o->out + ".parts" : o->work);
      cfg = o->load();
    });
    // Every rank read the config itself: compared first, as the checks below depend on it.
    check_config_alike(comm, o->config, cfg.json);
    const NetSpec& nc = cfg.spec;
    const bool latent = cfg.json.contains("z_shape");
    const bool text = nc.text_conditional();
    const long n = o->n, chunk = o->chunk, chunks = (n + chunk - 1) / chunk;
    // The checks before the work, each rank's decided together as above: one line under mpirun,
    // naming a rank whose files (--prompts, --ref, the weights) or folders are not as the others'.
    std::vector<std::string> prompts;
    GenerateOptions g;
    checked_together(comm, [&] {
      o->check_autoencoder_applies(cfg);
      UVIT_CHECK(
          !latent || !o->autoencoder.empty(), "config ", cfg.config_name,
          " is a latent model: give --autoencoder WEIGHTS (autoencoder_kl.pth, a VA-VAE .pt) to "
          "decode its samples");
      UVIT_CHECK(nc.square(), "config ", cfg.config_name, ": a non-square input (", nc.img_size,
                 "x", nc.width(),
                 ") cannot be evaluated; sample it with uvit sample --npz instead");
      UVIT_CHECK(!text || (!o->prompts.empty() && !o->clip.empty()), "config ", cfg.config_name,
                 " is text-to-image: give --prompts FILE and --clip W (a CLIPModel checkpoint "
                 "with both towers)");
      UVIT_CHECK(text || (o->prompts.empty() && o->clip.empty()), "config ", cfg.config_name,
                 " is not text-to-image: --prompts/--clip do not apply");
      UVIT_CHECK(n >= 2, "FID needs at least 2 samples (--n ", n, ")");
      g = o->generate_options(cfg);
      if (text) prompts = read_prompts(o->prompts);
    });
    check_files_alike(comm, {{"--prompts", o->prompts}});
    // Loaded before hours of sampling, so that a bad file fails first.
    std::optional<Autoencoder> ae;
    int s = 0, c = 0;  // image size and channels of the evaluated samples (decoded, if latent)
    const bool all = o->metrics == "all";
    InceptionInput input{};
    EvalReference ref;
    std::unique_ptr<Backend> be, inception_be;
    std::optional<FidInception> loaded_inception;
    std::unique_ptr<ClipScorer> clip;
    std::vector<float> null_ctx;
    std::unique_ptr<Network> netp;
    const std::string work = o->work.empty() ? o->out + ".parts" : o->work;
    checked_together(comm, [&] {
      if (latent) {
        ae.emplace(load_preset_autoencoder(cfg.json, o->autoencoder, o->autoencoder_config,
                                           o->latent_stats, o->device,
                                           encoders_beside(o->device, o->precision)));
        print_skipped(*ae, o->autoencoder, o->quiet);
      }
      s = ae ? nc.img_size * ae->config().downsample_factor() : nc.img_size;
      c = ae ? ae->config().out_ch : nc.in_chans;
      UVIT_CHECK(c == 1 || c == 3, "config ", cfg.config_name, ": ", c,
                 " image channels; the FID Inception takes 1 (gray) or 3");
      // Everything that can fail cheaply is checked before hours of sampling.
      input = parse_inception_input(o->inception_input, "--inception-input");
      ref = read_eval_reference(o->ref, all ? o->ref_features : "", input);
      be = make_backend(o->device, o->precision);
      // The Inception needs fp32 activations: on a backend of its own unless the U-ViT's
      // precision is the encoders' one.
      const std::string ip = encoders_beside(o->device, be->precision());
      if (be->precision() != ip) inception_be = make_backend(o->device, ip);
      loaded_inception.emplace(FidInception::load(inception_weights_path(o->inception),
                                                  inception_be ? *inception_be : *be));
      loaded_inception->set_input(input);
      if (text) {
        clip = std::make_unique<ClipScorer>(o->clip, o->clip_config, o->vocab,
                                            inception_be ? *inception_be : *be);
        const ClipTextConfig& tc = clip->text().config();
        UVIT_CHECK(
            tc.hidden_size == nc.context_dim && nc.context_tokens == ClipTokenizer::kContextLength,
            o->clip, ": CLIP contexts are [77, ", tc.hidden_size, "], config ", cfg.config_name,
            " expects [", nc.context_tokens, ", ", nc.context_dim, "]");
        null_ctx = clip_encode_prompts(clip->tokenizer(), clip->text(), {""});
      }
      netp = make_network(cfg, *be);
      netp->load_file(o->weights);
      {  // all N samples and their features are held to the end (below): refused up front when
         // they cannot fit with the buffers loaded (docs/memory.md, "Host memory")
        MemPlan plan;
        plan.count_host(size_t(n) * HeldSamples::bytes_per_sample(s, text));
        plan.check();
      }
      make_dir(work);
      for (const std::string& f : {o->out, o->json}) make_parent_dir(f);
    });
    FidInception& inception = *loaded_inception;
    Network& net = *netp;
    // Every rank read the files itself: a rank whose copy differs is refused in one line.
    check_loaded_alike(comm, "--weights " + o->weights, [&] { return hash_network(net); });
    if (ae)
      check_loaded_alike(comm, "--autoencoder " + o->autoencoder,
                         [&] { return ae->weights_hash(); });
    check_loaded_alike(comm, "the FID Inception weights " + inception_weights_path(o->inception),
                       [&] { return inception.weights_hash(); });
    if (ae) check_autoencoder_files_alike(comm, cfg.json, o->autoencoder_config, o->latent_stats);
    if (clip)
      check_clip_alike(
          comm, o->clip, [&] { return clip->weights_hash(); }, clip->tokenizer(), o->clip_config,
          o->vocab);
    // The manifest ties the chunks to this run: resuming with other settings is refused.
    nlohmann::json manifest = {{"config", cfg.config_name},
                               {"weights", io::absolute_path(o->weights)},
                               // The path alone would resume a retrained model's old samples.
                               {"weights_sha256", file_sha256(o->weights)},
                               // bf16 draws other samples than fp32 from the same weights.
                               {"precision", be->precision()},
                               {"sampler", g.sampler},
                               {"steps", g.steps},
                               {"cfg_scale", g.cfg_scale},
                               {"seed", o->sampling.seed},
                               {"n", n},
                               {"chunk", chunk},
                               {"img_size", s},
                               {"channels", c}};
    for (const auto& [k, v] : extra_sampling_settings(cfg, g)) manifest[k] = v;
    // The chunks hold features: recorded when not the default, so older folders (no record) are
    // pytorch-fid's and resuming them with tf is refused as a changed setting.
    if (input != InceptionInput::PytorchFid)
      manifest["inception_input"] = inception_input_name(input);
    if (text) {  // by path and by content, as the weights
      manifest["prompts"] = io::absolute_path(o->prompts);
      manifest["prompts_sha256"] = file_sha256(o->prompts);
      manifest["n_prompts"] = prompts.size();
      manifest["clip"] = io::absolute_path(o->clip);
      manifest["clip_sha256"] = file_sha256(o->clip);
    }
    // Without --out and --work every eval in a folder shares ./eval_samples.npz.parts: a second
    // model there (the families side by side) is refused, and --out is what separates them.
    const std::string way = o->work.empty() ? cat("give each model its own --out (the chunks go "
                                                  "to OUT.parts), or delete ",
                                                  work)
                                            : "use another --work folder or delete it";
    const std::string mpath = work + "/manifest.json";
    // The inputs by content: a run folder or prompts file moved or copied keeps its chunks
    // (docs/evaluation.md).
    const std::vector<std::pair<std::string, std::string>> located = {
        {"weights", "weights_sha256"}, {"clip", "clip_sha256"}, {"prompts", "prompts_sha256"}};
    // Under mpirun the lead records the run, then each other rank checks its settings against
    // that record, its files by content: it names them from its own working folder, so their
    // paths may differ from the lead's (docs/distributed.md). Each step is decided together, so
    // that a refusal on one rank is one line from rank 0 and every rank exits.
    checked_together(comm, [&] {
      if (!lead) return;
      const WorkFolderHold hold(work);  // two evals starting together
      // Older manifests lack the precision (fp32 then), and those of 2026-11 a file's SHA-256:
      // their chunks are of the file when it has not changed since the manifest was written
      // (docs/formats.md, "Across versions").
      std::vector<std::string> newer = {"precision"};
      for (const auto& [file, key] :
           {std::pair(o->weights, "weights_sha256"), std::pair(o->clip, "clip_sha256"),
            std::pair(o->prompts, "prompts_sha256")}) {
        std::error_code e1, e2;
        if (!file.empty() && fs::exists(mpath, e1) &&
            fs::last_write_time(file, e1) <= fs::last_write_time(mpath, e2) && !e1 && !e2)
          newer.push_back(key);
      }
      check_work_inception_input(mpath, work, input, way);
      check_or_write_manifest(mpath, manifest, work, "chunks", way, newer, o->quiet, located);
    });
    if (comm.size() > 1)
      checked_together(comm, [&] {
        if (lead) return;
        const WorkFolderHold hold(work);
        check_work_inception_input(mpath, work, input, way);
        check_written_manifest(mpath, manifest, work, "chunks", located);
      });

    const int k = real_classes(cfg);
    HeldSamples held(n, s, text);
    long resumed = 0, computed = 0, resumed_chunks = 0;
    long shared_chunks = 0;  // of those resumed, the ones waited for while another eval made them
    long done = 0;  // samples held so far (the bar's count: chunks come in any order)
    // The seconds each chunk took when it was made, summed: what a straight run spends, whatever
    // was resumed (`seconds` is this invocation's wall time). NaN once a chunk lacks it.
    double chunk_seconds = 0;
    Progress bar("eval", n, o->quiet || !lead);
    const auto t0 = std::chrono::steady_clock::now();
    const InterruptNote note(work, lead, !o->quiet);
    bool assembling = false;  // rank 0 reading the other ranks' chunks: not "resumed"
    // Chunk ci taken from WORK or made (and saved), then held. A chunk is claimed before it is
    // made (ChunkClaim): one another process holds is left (Got::Claimed) unless `wait`, and then
    // waited for and taken from WORK, or made here when its holder ended without it.
    enum class Got { Chunk, Claimed, Stop };
    const auto take = [&](long ci, bool wait) {
      const long first = ci * chunk, m = std::min(chunk, n - first);
      const std::string path = work + "/chunk_" + std::to_string(ci) + ".npz";
      Chunk ch;
      Stored stored = load_chunk(path, m, s, c, text, &ch);
      ChunkClaim claim(work + "/chunk_" + std::to_string(ci) + ".claim");
      bool shared = false;  // waited for while another process made it
      if (stored != Stored::Whole && !assembling) {
        if (!claim.try_take()) {
          if (!wait) return Got::Claimed;
          const std::string who = claim.holder();
          if (!o->quiet)  // one line, even between a bar's redraws: this may take a chunk's time
            std::fprintf(stderr,
                         "%s%s: chunk %ld is being made by %s, another eval of this work "
                         "folder; waiting for it\n",
                         stderr_redraws() ? "\n" : "", work.c_str(), ci, who.c_str());
          bar.update(done, cat("waiting for chunk ", ci));
          claim.take();
          shared = true;
        }
        ch = Chunk();
        stored = load_chunk(path, m, s, c, text, &ch);  // saved by a holder since the first look
        shared = shared && stored == Stored::Whole;
      }
      if (stored == Stored::Samples) {
        // An older uvit's chunk: its samples are the ones this run would draw (same manifest), so
        // only the Inception runs (cheaper than sampling); said once.
        static bool noted = false;
        if (!noted && lead && !o->quiet)
          std::fprintf(stderr,
                       "%s: made by an older uvit without the sFID features; the features of its "
                       "chunks are computed again from their stored samples, not sampled again "
                       "(docs/formats.md, \"Across versions\")\n",
                       path.c_str());
        noted = true;
        bar.update(done + m, "inception (older chunk)");
        chunk_features(inception, m, s, c, &ch);
        kept_on_failure(work, [&] { save_chunk(path, ch, text); });
        claim.done();
      }
      if (stored != Stored::None) {
        if (!assembling) resumed += m, ++resumed_chunks, shared_chunks += shared;
      } else {
        UVIT_CHECK(!assembling, path, ": missing after every rank finished its chunks");
        if (o->max_chunks > 0 && computed == o->max_chunks) {
          bar.finish();
          if (!o->quiet)
            std::fprintf(stderr,
                         "stopped after %ld new chunks (--max-chunks): run the same command again "
                         "to continue\n",
                         computed);
          return Got::Stop;
        }
        ++computed;
        const auto c0 = std::chrono::steady_clock::now();
        std::vector<int> labels;
        if (k > 0)
          for (long i = first; i < first + m; ++i) labels.push_back(int(i % k));  // balanced
        // Sample i draws the noise of sample i of one `uvit sample --seed` run of all N, so the
        // result does not depend on --chunk.
        g.first_index = uint64_t(first);
        g.progress = [&](int step, int total) {
          bar.update(done + (total > 0 ? long(double(m) * step / total) : 0),
                     total > 0 ? std::string("sampling") : cat("sampling, ", step, " evaluations"));
        };
        // Text presets: sample i's prompt is i mod P; its context and its CLIP text embedding come
        // from one pass of the text tower.
        std::vector<std::string> chunk_prompts;
        std::vector<float> ctx, text_emb;
        if (text) {
          for (long i = first; i < first + m; ++i)
            chunk_prompts.push_back(prompts[size_t(i) % prompts.size()]);
          bar.update(done, "encoding prompts");
          text_emb = clip->text_embeddings(chunk_prompts, 64, &ctx);
        }
        std::vector<float> x = generate(net, cfg, g, int(m), labels, ctx, null_ctx);
        if (ae) x = decode_latents(*ae, x, int(m), nc.in_chans, nc.img_size, nc.img_size, 4);
        const std::vector<Image> imgs = to_images(x, int(m), c, s);
        ch.samples = Array(DType::U8, {m, s, s, c});
        ch.pool3 = Array(DType::F32, {m, FidInception::kDims});
        ch.logits = Array(DType::F32, {m, FidInception::kClasses});
        ch.spatial = Array(DType::F32, {m, FidInception::kSpatialDims});
        for (long i = 0; i < m; ++i)
          std::copy(imgs[i].px.begin(), imgs[i].px.end(),
                    ch.samples.as<uint8_t>() + size_t(i) * s * s * c);
        bar.update(done + m, "inception");
        chunk_features(inception, m, s, c, &ch);
        if (text) {
          bar.update(done + m, "clip");
          const std::vector<float> img_emb = clip->image_embeddings(imgs);
          const std::vector<double> sc =
              clip_scores(img_emb.data(), text_emb.data(), m, clip->dim());
          ch.clip = Array(DType::F64, {m});
          std::copy(sc.begin(), sc.end(), ch.clip.as<double>());
        }
        ch.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
        kept_on_failure(work, [&] { save_chunk(path, ch, text); });
        claim.done();
      }
      {
        const uint8_t* src = ch.samples.as<uint8_t>();
        constexpr int64_t C3 = HeldSamples::kChannels;  // a gray sample's channel repeated
        uint8_t* dst = held.batch.as<uint8_t>() + size_t(first) * s * s * C3;
        for (size_t i = 0; i < size_t(m) * s * s; ++i)
          for (int k = 0; k < C3; ++k) dst[i * C3 + k] = src[i * c + (c == C3 ? k : 0)];
      }
      std::copy(ch.pool3.as<float>(), ch.pool3.as<float>() + ch.pool3.numel(),
                held.pool3.begin() + size_t(first) * FidInception::kDims);
      std::copy(ch.spatial.as<float>(), ch.spatial.as<float>() + ch.spatial.numel(),
                held.spatial.begin() + size_t(first) * FidInception::kSpatialDims);
      std::copy(ch.logits.as<float>(), ch.logits.as<float>() + ch.logits.numel(),
                held.logits.begin() + size_t(first) * FidInception::kClasses);
      if (text)
        std::copy(ch.clip.as<double>(), ch.clip.as<double>() + m, held.clip.begin() + first);
      chunk_seconds += ch.seconds >= 0 ? ch.seconds : std::nan("");
      done += m;
      bar.update(done, resumed ? cat("(", resumed, " resumed)") : "");
      return Got::Chunk;
    };
    // This process's chunks: all of them, or under mpirun this rank's run of them (a chunk is
    // computed the same whichever rank does it); those another process holds come last.
    std::vector<long> mine, later;
    const RankRange range = comm.size() > 1 ? rank_range(comm, chunks, 1) : RankRange{0, chunks};
    for (long ci = range.begin; ci < range.end; ++ci) mine.push_back(ci);
    for (const long ci : mine) {
      const Got got = take(ci, false);
      if (got == Got::Stop) return;
      if (got == Got::Claimed) later.push_back(ci);
    }
    for (const long ci : later)
      if (take(ci, true) == Got::Stop) return;
    if (comm.size() > 1) {  // after a barrier rank 0 assembles all chunks from the work folder
      comm.barrier();
      if (!lead) return;
      assembling = true;
      done = 0;
      for (long ci = 0; ci < chunks; ++ci) take(ci, false);
    }
    bar.finish();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    {
      NamedArrays z;  // moved in, not copied (an initializer list would copy N images)
      z.emplace_back("arr_0", std::move(held.batch));
      kept_on_failure(work, [&] { save_npz(o->out, z); });
    }

    nlohmann::json res = {
        {"n", n},
        {"config", cfg.config_name},
        {"sampler", g.sampler},
        {"steps", g.steps},
        {"cfg_scale", g.cfg_scale},
        {"seed", o->sampling.seed},
        {"ref", o->ref},
        // The features' pipeline: FIDs of the two are not comparable (docs/evaluation.md).
        {"inception_input", inception_input_name(input)},
        {"seconds", secs},
        {"chunks", chunks},
        {"resumed_chunks", resumed_chunks},
        // null: a chunk made before the time was recorded
        {"chunk_seconds",
         std::isnan(chunk_seconds) ? nlohmann::json() : nlohmann::json(chunk_seconds)}};
    for (const auto& [k, v] : extra_sampling_settings(cfg, g)) res[k] = v;
    if (all && ref.n_pool3 == 0 && ref.has_images) {  // the reference batch's own images
      std::unique_ptr<Progress> rb;
      ref.pool3 = source_features(inception, o->ref, nullptr, [&](long done, long total) {
        if (!rb) rb = std::make_unique<Progress>("inception " + o->ref, total, o->quiet);
        rb->update(done, "", 1, "img/s");
      });
      if (rb) rb->finish();
      ref.n_pool3 = long(ref.pool3.size() / FidInception::kDims);
    }
    report_metrics(ref, held.pool3, held.logits, held.spatial, n, all, o->quiet, res);
    if (text) {
      double mean = 0;
      for (double v : held.clip) mean += v;
      mean /= double(n);
      std::printf("CLIPScore: %s\n", py_float(mean).c_str());
      res["clip_score"] = mean;
      res["prompts"] = o->prompts;
    }
    if (!o->json.empty()) {
      const std::string j = json_text(res, 1) + "\n";
      write_file_atomic(o->json, j.data(), j.size());
    }
    if (!o->quiet)
      std::fprintf(
          stderr, "samples -> %s (%ld resumed from %s%s)\n", o->out.c_str(), resumed, work.c_str(),
          shared_chunks ? cat("; waited for ", shared_chunks,
                              shared_chunks > 1 ? " chunks" : " chunk", " another eval was making")
                              .c_str()
                        : "");
  });
}

}  // namespace uvit::cli
