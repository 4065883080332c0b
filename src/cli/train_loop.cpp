#include "cli/train_loop.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cli/progress.hpp"
#include "cli/sample_grid.hpp"
#include "uvit/backend.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_signal(int) { g_stop = true; }

// Re-reads the run's log to plot the whole loss curve, resumed segments included.
void write_loss_plot(const std::string& dir) {
  std::ifstream in(dir + "/log.jsonl");
  PlotSeries s;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("loss")) continue;
    s.x.push_back(j["step"].get<double>());
    s.y.push_back(j["loss"].get<double>());
  }
  if (s.x.size() >= 2) write_plot_png(dir + "/loss.png", {s}, 640, 400, true, {{"Title", "loss"}});
}
}  // namespace

long run_training(const TrainJob& job) {
  Config cfg = job.cfg;
  if (job.batch > 0) cfg.json["train"]["batch_size"] = job.batch;
  if (job.steps >= 0) cfg.json["train"]["n_steps"] = job.steps;
  if (job.seed >= 0) cfg.json["seed"] = job.seed;
  const std::string dir = job.out_dir;
  fs::create_directories(dir);
  const bool has_state = fs::exists(dir + "/train_state.safetensors");
  UVIT_CHECK(job.resume || !has_state, dir,
             " already holds a training run; pass --resume to continue it or choose another --out");

  auto ds = make_dataset(data_options_from_json(cfg.json, job.data_path));
  auto be = make_backend(job.device, job.precision);
  Trainer tr(cfg, *be, ds, dir);
  if (job.resume) {
    tr.resume();
  } else {
    tr.init();
    const std::string c = cfg.json.dump(2) + "\n";
    write_file_atomic(dir + "/config.json", c.data(), c.size());
  }
  const TrainSettings& s = tr.settings();
  if (!job.quiet)
    std::fprintf(stderr, "training %s on %s: %zu parameters, batch %d, steps %ld -> %ld, run %s\n",
                 cfg.config_name.c_str(), ds->describe().c_str(), tr.net().num_params(), s.batch,
                 tr.step_count(), s.steps, dir.c_str());

  g_stop = false;
  auto old_int = std::signal(SIGINT, on_signal);
  auto old_term = std::signal(SIGTERM, on_signal);
  std::ofstream log(dir + "/log.jsonl", std::ios::app);
  const auto t0 = std::chrono::steady_clock::now();
  const long first = tr.step_count();
  const double fwd_flops = tr.net().forward_flops();
  Progress bar("train", s.steps - first, job.quiet);
  double loss_acc = 0;
  long loss_n = 0;
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto eval = [&] {
    write_loss_plot(dir);
    if (cfg.spec.text_conditional()) return;  // text models need prompts: see `uvit sample --prompt`
    // Latent models' samples are latents: decoding them needs the autoencoder (`uvit sample
    // --autoencoder`), so the run keeps only the loss curve.
    if (cfg.json.contains("z_shape")) return;
    fs::create_directories(dir + "/samples");
    char name[64];
    std::snprintf(name, sizeof name, "/samples/step_%07ld.png", tr.step_count());
    write_grid(tr.ema_net(), cfg, dir + name, job.eval_samples, 0);
  };
  bool timed_out = false;
  while (tr.step_count() < s.steps && !g_stop) {
    if (job.max_minutes > 0 && elapsed() > job.max_minutes * 60) {
      timed_out = true;
      break;
    }
    StepStats st = tr.step();
    UVIT_CHECK(std::isfinite(st.loss), "training diverged at step ", tr.step_count(), " (loss ",
               st.loss, ")");
    loss_acc += st.loss;
    ++loss_n;
    const long k = tr.step_count();
    char extra[96];
    // MFU counts 3x the forward FLOPs per training image (forward + backward) against the
    // device's bf16 peak.
    const double img_s = (k - first) * double(s.batch) / elapsed();
    const double mfu = be->peak_flops() > 0 ? 3 * fwd_flops * img_s / be->peak_flops() : 0;
    if (mfu > 0)
      std::snprintf(extra, sizeof extra, "loss %.4f MFU %.0f%%", st.loss, 100 * mfu);
    else
      std::snprintf(extra, sizeof extra, "loss %.4f", st.loss);
    bar.update(k - first, extra, s.batch, "img/s");
    if (k % s.log_interval == 0 || k == s.steps) {
      nlohmann::json j = {{"step", k},
                          {"loss", loss_acc / loss_n},
                          {"lr", st.lr},
                          {"grad_norm", st.grad_norm},
                          {"img_s", img_s},
                          {"elapsed_s", elapsed()}};
      if (mfu > 0) j["mfu"] = mfu;
      log << j.dump() << "\n" << std::flush;
      loss_acc = 0;
      loss_n = 0;
    }
    if (k % s.save_interval == 0) tr.save(true);
    if (k % s.eval_interval == 0 && k < s.steps) eval();
  }
  bar.finish();
  tr.save();
  std::signal(SIGINT, old_int);
  std::signal(SIGTERM, old_term);
  if (g_stop && !job.quiet)
    std::fprintf(stderr, "interrupted: checkpoint written at step %ld; continue with --resume\n",
                 tr.step_count());
  if (timed_out && !job.quiet)
    std::fprintf(stderr, "time limit reached at step %ld; checkpoint written\n", tr.step_count());
  if (!g_stop) eval();
  return tr.step_count();
}

}  // namespace uvit::cli
