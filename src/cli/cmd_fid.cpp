// `uvit fid A B`, `uvit fid-features SOURCE`, `uvit fid-stats SOURCE`: pytorch-fid compatible FID
// (SPEC 17) and the ADM evaluator's sFID (docs/evaluation.md). A and B are statistics (.npz with
// mu, sigma and maybe mu_s, sigma_s), folders of images, uint8 sample arrays (.npy [N,H,W,C] or an
// .npz with arr_0) or float features (.npy [N,2048]; no sFID from them).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>

#include "cli/checked_together.hpp"
#include "cli/commands.hpp"
#include "cli/eval_metrics.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/rank_split.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {

// Loads the network (on an encoder backend of `device` and `precision`) on first use, so two
// statistics files never need the weights or a GPU.
class LazyInception {
 public:
  LazyInception(std::string path, std::string device, std::string precision,
                const std::string& input)
      : path_(std::move(path)),
        device_(std::move(device)),
        precision_(std::move(precision)),
        input_(parse_inception_input(input, "--inception-input")) {}
  const FidInception& get() {
    if (!net_) {
      file_ = inception_weights_path(path_);
      be_ = make_encoder_backend(device_, precision_);
      net_ = std::make_unique<FidInception>(FidInception::load(file_, *be_));
      net_->set_input(input_);
    }
    return *net_;
  }
  const std::string& file() const { return file_; }  // the weights get() loaded
  InceptionInput input() const { return input_; }

 private:
  std::string path_, device_, precision_, file_;
  InceptionInput input_;
  std::unique_ptr<Backend> be_;  // declared before net_, which uses it
  std::unique_ptr<FidInception> net_;
};

// Before the Inception weights are looked for: a mistyped input name is the likelier mistake.
void check_sources(std::initializer_list<std::string> sources) {
  for (const std::string& s : sources) UVIT_CHECK(fs::exists(s), s, ": no such file or folder");
}

bool is_stats_npz(const std::string& path) {
  // The zip directory only: an ADM reference batch's images are not read.
  return fs::path(path).extension() == ".npz" && fs::is_regular_file(path) && npz_has(path, "mu");
}

// `comm`: share the images among the ranks of an mpirun job (rank 0 returns all features).
std::vector<float> features_of(LazyInception& net, const std::string& source, bool quiet,
                               std::vector<float>* logits = nullptr,
                               std::vector<float>* spatial = nullptr, Comm* comm = nullptr) {
  if (is_feature_npy(source)) {
    UVIT_CHECK(!logits && !spatial, source, ": holds features, not images: the ",
               logits ? "logits" : "spatial features", " cannot be computed");
    return load_npy(source).to_f32();
  }
  const FidInception& n = net.get();
  // Every rank read the file itself: a rank whose copy differs is refused in one line.
  if (comm)
    check_loaded_alike(*comm, "the FID Inception weights " + net.file(),
                       [&] { return n.weights_hash(); });
  std::unique_ptr<Progress> bar;
  const auto t0 = std::chrono::steady_clock::now();
  SteadyRate steady;
  auto f = source_features(
      n, source, logits,
      [&](long done, long total) {
        if (!bar) bar = std::make_unique<Progress>("inception " + source, total, quiet);
        bar->update(done, "", 1, "img/s");
        steady.update(done);
      },
      spatial, comm ? comm->rank() : 0, comm ? comm->size() : 1);
  if (comm && comm->size() > 1) {
    f = gather_to_root(*comm, f);
    if (logits) *logits = gather_to_root(*comm, *logits);
    if (spatial) *spatial = gather_to_root(*comm, *spatial);
  }
  if (bar) bar->finish();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const long count = long(f.size() / FidInception::kDims);
  // A single batch has no rate after the first one: print none rather than 0.
  if (!quiet && steady.per_second() > 0)
    std::fprintf(stderr,
                 "inception: %ld images in %.3f s (%.3f img/s; after the first batch %.3f)\n",
                 count, s, count / s, steady.per_second());
  else if (!quiet)
    std::fprintf(stderr, "inception: %ld images in %.3f s (%.3f img/s)\n", count, s, count / s);
  return f;
}

// FID statistics and, where the source has them (images, or a file with mu_s), sFID statistics.
struct BothStats {
  FidStats fid;
  std::optional<FidStats> sfid;
};

// The input pipeline of a source's statistics: a statistics file's record (none: unknown), none
// for a features .npy (no place for a record: --inception-input computes nothing there), else the
// one that computes its features (docs/evaluation.md "The TF graph's input pipeline").
std::optional<InceptionInput> input_of(const LazyInception& net, const std::string& source) {
  if (is_stats_npz(source)) return stats_inception_input(source);
  if (is_feature_npy(source)) return std::nullopt;
  return net.input();
}

BothStats stats_of(LazyInception& net, const std::string& source, bool quiet) {
  BothStats r;
  if (is_stats_npz(source)) {
    r.fid = load_fid_stats(source);
    if (npz_has(source, "mu_s")) r.sfid = load_fid_stats(source, true);
    return r;
  }
  std::vector<float> sp;
  const bool images = !is_feature_npy(source);
  const std::vector<float> f = features_of(net, source, quiet, nullptr, images ? &sp : nullptr);
  const long n = long(f.size() / FidInception::kDims);
  UVIT_CHECK(n >= 2, source, ": FID statistics need at least 2 images, found ", n);
  r.fid = stats_from_features(f.data(), n, FidInception::kDims);
  if (images) r.sfid = stats_from_features(sp.data(), n, FidInception::kSpatialDims);
  return r;
}

}  // namespace

void add_fid(CLI::App& app) {
  struct Opts {
    std::string a, b, source, out, logits, spatial, inception, device = "cpu", precision;
    std::string input = "pytorch-fid";
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  const char* inc_help =
      "FID Inception weights pt_inception-2015-12-05-6726825d.pth "
      "(default: $UVIT_INCEPTION)";
  // --inception, its input pipeline, where it runs, --quiet: the same in the three commands.
  auto add_inception_options = [o, inc_help](CLI::App* c) {
    c->add_option("--inception", o->inception, inc_help);
    add_inception_input_option(c, o->input);
    add_encoder_device(c, o->device, o->precision, "the Inception");
    c->add_flag("--quiet,-q", o->quiet, "print only results and errors");
  };
  const char* src_help =
      "a folder of images, a .npy of uint8 images [N,H,W,C] (or an .npz with arr_0), or a "
      ".npy of float features [N,2048]";

  auto* fid =
      app.add_subcommand("fid", "FID between two statistics files, image folders or sample arrays");
  fid->add_option("A", o->a, "stats .npz (mu, sigma) or images: " + std::string(src_help))
      ->required();
  fid->add_option("B", o->b, "the same kinds as A")->required();
  add_inception_options(fid);
  fid->callback([o] {
    check_sources({o->a, o->b});
    LazyInception net(o->inception, o->device, o->precision, o->input);
    // Before any features are computed: a FID across pipelines measures the pipelines.
    const auto ia = input_of(net, o->a), ib = input_of(net, o->b);
    UVIT_CHECK(!ia || !ib || *ia == *ib, o->a, " and ", o->b,
               ": made with different Inception input pipelines (--inception-input ",
               inception_input_name(ia.value_or(InceptionInput::PytorchFid)), " and ",
               inception_input_name(ib.value_or(InceptionInput::PytorchFid)),
               "): their FID mixes two pipelines");
    const BothStats a = stats_of(net, o->a, o->quiet), b = stats_of(net, o->b, o->quiet);
    UVIT_CHECK(a.fid.dims == b.fid.dims, o->a, " and ", o->b,
               ": statistics of different dimensions (", a.fid.dims, " and ", b.fid.dims, ")");
    // As `uvit eval` and pytorch-fid print it: Python's repr, unclamped (docs/evaluation.md).
    std::printf("FID: %s\n",
                py_float(frechet_distance(a.fid, b.fid, o->a + " vs " + o->b)).c_str());
    if (a.sfid && b.sfid) {
      UVIT_CHECK(a.sfid->dims == b.sfid->dims, o->a, " and ", o->b,
                 ": sFID statistics of different dimensions (", a.sfid->dims, " and ", b.sfid->dims,
                 ")");
      std::printf(
          "sFID: %s\n",
          py_float(frechet_distance(*a.sfid, *b.sfid, o->a + " vs " + o->b + " (sFID)")).c_str());
    } else if (!o->quiet) {
      std::fprintf(stderr, "sFID: skipped (%s has no spatial statistics mu_s/sigma_s)\n",
                   (a.sfid ? o->b : o->a).c_str());
    }
  });

  auto* feat =
      app.add_subcommand("fid-features", "Inception pool3 features (float32 [N,2048]) of images");
  feat->add_option("SOURCE", o->source, src_help)->required();
  feat->add_option("--out,-o", o->out, "features .npy")->required();
  feat->add_option("--logits", o->logits, "also write the 1008-way logits (no fc bias) .npy");
  feat->add_option("--spatial", o->spatial,
                   "also write sFID's spatial features .npy [N,2023] (mixed_6/conv, 7 channels)");
  add_inception_options(feat);
  feat->callback([o] {
    Comm& comm = world(o->device);  // under mpirun: the images are shared among the ranks
    // Each rank's checks, decided together: one line under mpirun (docs/distributed.md "Errors
    // before the work").
    std::optional<LazyInception> net;
    checked_together(comm, [&] {
      check_sources({o->source});
      check_output("--out", o->out, {".npy"});
      check_output("--logits", o->logits, {".npy"});
      check_output("--spatial", o->spatial, {".npy"});
      check_not_input("--out", o->out, {{"input SOURCE", o->source}});
      check_not_input("--logits", o->logits,
                      {{"input SOURCE", o->source}, {"output --out", o->out}});
      check_not_input(
          "--spatial", o->spatial,
          {{"input SOURCE", o->source}, {"output --out", o->out}, {"output --logits", o->logits}});
      net.emplace(o->inception, o->device, o->precision, o->input);  // checks --inception-input
    });
    const bool quiet = o->quiet || comm.rank() != 0;
    std::vector<float> logits, spatial;
    const std::vector<float> f =
        features_of(*net, o->source, quiet, o->logits.empty() ? nullptr : &logits,
                    o->spatial.empty() ? nullptr : &spatial, &comm);
    if (comm.rank() != 0) return;
    const int64_t n = int64_t(f.size() / FidInception::kDims);
    make_parent_dir(o->out);
    make_parent_dir(o->logits);
    make_parent_dir(o->spatial);
    save_npy(o->out, Array::from_f32({n, FidInception::kDims}, f.data()));
    if (!o->logits.empty())
      save_npy(o->logits, Array::from_f32({n, FidInception::kClasses}, logits.data()));
    if (!o->spatial.empty())
      save_npy(o->spatial, Array::from_f32({n, FidInception::kSpatialDims}, spatial.data()));
    if (!quiet) std::fprintf(stderr, "%lld images -> %s\n", (long long)n, o->out.c_str());
  });

  auto* st =
      app.add_subcommand("fid-stats",
                         "FID statistics (.npz with mu, sigma, and from images mu_s, sigma_s for "
                         "sFID; pytorch-fid and the ADM evaluator read it)");
  st->add_option("SOURCE", o->source, src_help)->required();
  st->add_option("--out,-o", o->out, "statistics .npz")->required();
  add_inception_options(st);
  st->callback([o] {
    check_sources({o->source});
    check_output("--out", o->out, {".npz"});
    check_not_input("--out", o->out, {{"input SOURCE", o->source}});
    LazyInception net(o->inception, o->device, o->precision, o->input);
    UVIT_CHECK(!is_stats_npz(o->source), o->source, ": already FID statistics");
    const BothStats stats = stats_of(net, o->source, o->quiet);
    make_parent_dir(o->out);
    // A features .npy records no pipeline and the option computed nothing: the statistics stay
    // unrecorded, as `uvit fid` takes that file (input_of; docs/evaluation.md "Records").
    const std::optional<InceptionInput> made = input_of(net, o->source);
    if (!made && net.input() != InceptionInput::PytorchFid && !o->quiet)
      std::fprintf(stderr,
                   "note: %s holds features, not images: --inception-input computes nothing "
                   "there, so %s records no pipeline\n",
                   o->source.c_str(), o->out.c_str());
    save_fid_stats(o->out, stats.fid, stats.sfid ? &*stats.sfid : nullptr,
                   made.value_or(InceptionInput::PytorchFid));
    if (!o->quiet) std::fprintf(stderr, "wrote %s\n", o->out.c_str());
  });
}

}  // namespace uvit::cli
