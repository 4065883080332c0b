// `uvit bench`: times the network's forward pass, a full training step (forward, backward,
// AdamW, EMA) on random data, or the sampling of a batch of images; prints one JSON line (and
// appends it to --json). Run one mode per process for peak-memory figures.
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "cli/commands.hpp"
#include "cli/json_text.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "core/mem_limit.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"
#include "uvit/network.hpp"
#include "uvit/pipeline.hpp"
#include "uvit/rng.hpp"

namespace uvit::cli {

namespace {
struct Opts {
  std::string config, mode = "forward", device = "cpu", precision, json, sampler;
  std::vector<std::string> set;
  int batch = 8, iters = 5, warmup = 1, n = 500, steps = 0;
  double cfg_scale = -1;
  bool quiet = false;
};

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The --json file first: a reader of stdout that has gone (`| head -0`) ends the process at the
// print, which must not lose the file's line; a full disk there is an error, not a lost line.
void emit(const Opts& o, const std::string& line) {
  if (!o.json.empty()) {
    FILE* f = std::fopen(o.json.c_str(), "a");
    UVIT_CHECK(f, o.json, ": cannot open for appending");
    const bool written = std::fprintf(f, "%s\n", line.c_str()) >= 0;
    const int err = std::fclose(f) == 0 && written ? 0 : (errno ? errno : EIO);
    UVIT_CHECK(err == 0, o.json, ": write error: ", std::strerror(err));
  }
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

double peak_rss_mb() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024.0;
}

// Draws o.n samples (by default with the preset's sampler, steps and guidance); the time includes
// everything generate() does after its memory check (the weights are initialised at that check).
void bench_sample(const Opts& o, const Config& c, Backend& be, Network& net) {
  check_not_lavin(c);
  GenerateOptions g;
  g.sampler = canonical_sampler(o.sampler, is_flow(c));  // A1111's names too, as uvit sample
  g.steps = o.steps;
  g.cfg_scale = o.cfg_scale;
  g.seed = 1;
  g.mini_batch = o.batch;
  double t0 = 0;
  g.on_buffers_checked = [&] {
    net.init_random(1);
    t0 = now_s();
  };
  g = with_preset_defaults(c, g);
  std::vector<int> labels;
  const int classes = real_classes(c);
  for (int i = 0; classes > 0 && i < o.n; ++i) labels.push_back(i % classes);
  UVIT_CHECK(!c.spec.text_conditional(),
             "bench --mode sample: text-to-image presets need contexts; use a "
             "class-conditional or unconditional preset");
  int evals = 0;
  Progress bar("sample (network evaluations)", 1, o.quiet);
  g.progress = [&](int done, int total) {
    evals = done;
    bar.set_total(total);
    bar.update(done);
  };
  std::vector<float> x = generate(net, c, g, o.n, labels);
  be.synchronize();
  const double secs = now_s() - t0;
  bar.finish();
  emit(o, json_flat_line({{"impl", "uvit"},
                          {"config", c.config_name},
                          {"mode", "sample"},
                          {"device", be.name()},
                          {"precision", be.precision()},
                          {"sampler", g.sampler},
                          {"steps", g.steps},
                          {"cfg_scale", g.cfg_scale},
                          {"n", o.n},
                          {"mini_batch", o.batch},
                          {"network_calls", evals},
                          {"seconds", secs},
                          {"img_s", o.n / secs},
                          {"peak_device_mb", be.peak_bytes() / 1048576.0}}));
}
}  // namespace

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Time the forward pass, a training step, or sampling");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config, "preset name, JSON file or training run folder")
      ->required();
  cmd->add_option("--set", o->set, "override a config field: section.key=value (repeatable)");
  cmd->add_option("--batch,-b", o->batch,
                  "batch size (default 8; sample mode: images per mini-batch)")
      ->check(at_least(1));
  cmd->add_option("--mode", o->mode, "forward, train or sample (default forward)")
      ->check(CLI::IsMember({"forward", "train", "sample"}));
  add_device_options(cmd, o->device, o->precision);
  cmd->add_option("--json", o->json, "also append the result line to this file");
  // Options of one mode only: given in another they are refused rather than ignored.
  const std::vector<CLI::Option*> timed = {
      cmd->add_option("--iters", o->iters, "forward/train: timed iterations (default 5)")
          ->check(at_least(1)),
      cmd->add_option("--warmup", o->warmup, "forward/train: untimed iterations (default 1)")
          ->check(at_least(0))};
  const std::vector<CLI::Option*> sampling = {
      cmd->add_option("--n", o->n, "sample: images to draw (default 500)")->check(at_least(1)),
      cmd->add_option("--steps", o->steps, "sample: solver steps (default: the preset's)")
          ->check(at_least(1)),
      cmd->add_option("--sampler", o->sampler,
                      "sample: sampler name, as uvit sample takes it (default: the preset's)"),
      cmd->add_option("--cfg-scale", o->cfg_scale, "sample: guidance scale (default: the preset's)")
          ->check(at_least(0))};
  cmd->add_flag("--quiet,-q", o->quiet, "sample: no progress line");
  cmd->callback([o, timed, sampling] {
    const bool sample = o->mode == "sample";
    for (const CLI::Option* opt : sample ? timed : sampling)
      UVIT_CHECK(opt->count() == 0, opt->get_name(), " does not apply to --mode ", o->mode, " (",
                 sample ? "forward and train" : "sample", " only)");
    check_output("--json", o->json);  // before the run, not after it
    Config c = load_config(o->config);
    for (const auto& a : o->set) apply_override(c, a);
    const NetSpec& n = c.spec;
    auto be = make_backend(o->device, o->precision);
    // Every buffer first, untouched, checked as a whole before the slow initialisation
    // (docs/memory.md, "Refused up front"); sample mode's are generate()'s.
    MemPlan plan;
    auto netp = make_network(c, *be);
    Network& net = *netp;
    if (o->mode == "sample") {
      plan.check();
      return bench_sample(*o, c, *be, net);  // initialises once generate() checked its buffers
    }
    const int B = o->batch;
    const bool train = o->mode == "train";
    const size_t img = n.in_numel(), P = net.num_params();
    // The model's part of the need: the parameters, and to come the gradient (reserve()'s), the
    // moments and the EMA below.
    plan.mark_model(train ? 4 * P * 4 : 0,
                    train ? "parameters, gradient, AdamW moments and EMA" : "parameters");
    Philox rng(7);
    std::vector<float> x(B * img), target(B * n.out_numel()), t(B), ctx;
    rng.fill_normal(x.data(), x.size());
    rng.fill_normal(target.data(), target.size(), x.size());
    for (int b = 0; b < B; ++b) t[b] = 999.f * rng.uniform(10 * x.size() + b);
    std::vector<int32_t> y;
    if (n.text_conditional()) {
      ctx.resize(B * n.context_numel());
      rng.fill_normal(ctx.data(), ctx.size(), 3 * x.size());
    } else if (n.class_conditional()) {
      for (int b = 0; b < B; ++b) y.push_back(b % n.num_classes);
    }
    // Owned, so freed when the command ends (or is refused below): docs/fuzzing.md, finding 14.
    const auto alloc = [&](size_t bytes) { return DeviceBuffer(*be, std::max<size_t>(bytes, 4)); };
    const DeviceBuffer bx = alloc(x.size() * 4), btarget = alloc(target.size() * 4),
                       bt = alloc(t.size() * 4),
                       by = y.empty() ? DeviceBuffer() : alloc(y.size() * 4),
                       bctx = ctx.empty() ? DeviceBuffer() : alloc(ctx.size() * 4),
                       bout = alloc(target.size() * 4), bm = train ? alloc(P * 4) : DeviceBuffer(),
                       bv = train ? alloc(P * 4) : DeviceBuffer(),
                       bema = train ? alloc(P * 4) : DeviceBuffer();
    float *dx = bx.f32(), *dtarget = btarget.f32(), *dt = bt.f32(), *dctx = bctx.f32();
    auto* dy = by.as<int32_t>();
    float *out = bout.f32(), *m = bm.f32(), *v = bv.f32(), *ema = bema.f32();
    net.reserve(B, train);
    plan.check();
    net.init_random(1);
    be->upload(dx, x.data(), x.size() * 4);
    be->upload(dtarget, target.data(), target.size() * 4);
    be->upload(dt, t.data(), t.size() * 4);
    if (dy) be->upload(dy, y.data(), y.size() * 4);
    if (dctx) be->upload(dctx, ctx.data(), ctx.size() * 4);
    if (train) {
      be->fill(m, 0.f, P);
      be->fill(v, 0.f, P);
      be->copy(ema, net.params(), P);
    }
    long step = 0;
    auto once = [&] {
      if (!train) {
        net.forward(dx, dt, dy, dctx, out, B, false);
        return;
      }
      net.zero_grad();
      for (int pass = 0; pass < net.train_passes(); ++pass) {  // MDT: and its masked pass
        net.set_train_pass(pass, 0, uint64_t(step) * B);
        net.forward(dx, dt, dy, dctx, out, B, true);
        // d(mean squared error)/d(out) = 2 (out - target) / numel
        be->axpy(out, dtarget, -1.f, target.size());
        be->scale(out, 2.f / float(target.size()), target.size());
        net.backward(out);
      }
      // AdamW and the EMA in one pass, as the trainer runs them (Backend::adamw_ema)
      be->adamw_ema(net.params(), net.grads(), m, v, ema, net.num_params(), 2e-4f, 0.99f, 0.999f,
                    1e-8f, 0.03f, ++step, 0.9999f);
    };
    for (int i = 0; i < o->warmup; ++i) once();
    be->synchronize();
    std::vector<double> secs;
    for (int i = 0; i < o->iters; ++i) {
      const double t0 = now_s();
      once();
      be->synchronize();
      secs.push_back(now_s() - t0);
    }
    std::sort(secs.begin(), secs.end());
    const double med = secs[secs.size() / 2];
    const double flops = net.forward_flops() * (train ? 3 : 1) * B;
    emit(*o, json_flat_line({{"impl", "uvit"},
                             {"config", c.config_name},
                             {"mode", o->mode},
                             {"device", be->name()},
                             {"precision", be->precision()},
                             {"checkpoint", train && c.is_uvit() && c.net.use_checkpoint},
                             {"batch", B},
                             {"median_s", med},
                             {"img_s", B / med},
                             {"gflop_s", flops / med / 1e9},
                             {"peak_rss_mb", peak_rss_mb()},
                             {"peak_device_mb", be->peak_bytes() / 1048576.0}}));
  });
}

}  // namespace uvit::cli
