// `uvit train` and `uvit demo`.
#include <cstdio>
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "cli/sample_grid.hpp"
#include "cli/train_loop.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// The preset name a run was started with, from its checkpoint's metadata; "" when unavailable.
// Loading the run's config.json alone would name it "config".
std::string run_config_name(const std::string& dir) {
  try {
    auto m = read_safetensors_metadata(dir + "/train_state.safetensors");
    return m.count("config") ? m["config"] : "";
  } catch (const Error&) {
    return "";
  }
}
}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a diffusion model");
  struct Opts {
    std::string config, data, out, device = "cpu";
    long steps = -1, seed = -1;
    int batch = 0;
    std::vector<std::string> set;
    bool resume = false, quiet = false;
    double minutes = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--config,-c", o->config,
                  "preset name or JSON file (default with --resume: the run's)");
  cmd->add_option("--data", o->data,
                  "dataset path (default: the preset's; Fashion-MNIST is built in)");
  cmd->add_option("--out,-o", o->out, "run directory")->required();
  cmd->add_option("--steps", o->steps, "total optimizer steps of the run")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", o->batch, "batch size")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", o->seed, "random seed")->check(CLI::NonNegativeNumber);
  cmd->add_option("--set", o->set, "override a config field: section.key=value (repeatable)");
  cmd->add_option("--minutes", o->minutes, "stop (with a checkpoint) after this many minutes");
  cmd->add_flag("--resume", o->resume, "continue the run in --out");
  cmd->add_flag("--quiet,-q", o->quiet, "no progress display");
  cmd->add_option("--device", o->device, "cpu or cuda");
  cmd->callback([o] {
    TrainJob job;
    UVIT_CHECK(!(o->resume && (o->seed >= 0 || o->batch > 0)),
               "--seed and --batch cannot change on --resume (the run keeps its own)");
    if (!o->config.empty())
      job.cfg = load_config(o->config);
    else if (o->resume) {
      job.cfg = load_config(o->out + "/config.json");
      if (std::string name = run_config_name(o->out); !name.empty()) job.cfg.config_name = name;
    } else
      fail("--config is required (except with --resume)");
    if (o->resume && !o->config.empty() && fs::exists(o->out + "/config.json")) {
      // Keep the run's own settings (batch, seed, data flags); overrides below still apply.
      Config run = load_config(o->out + "/config.json");
      run.config_name = job.cfg.config_name;
      job.cfg = run;
    }
    for (const auto& a : o->set) apply_override(job.cfg, a);
    job.data_path = o->data;
    job.out_dir = o->out;
    job.steps = o->steps;
    job.batch = o->batch;
    job.seed = o->seed;
    job.resume = o->resume;
    job.max_minutes = o->minutes;
    job.quiet = o->quiet;
    job.device = o->device;
    long k = run_training(job);
    std::printf("run %s at step %ld: weights %s/nnet_ema.safetensors\n", o->out.c_str(), k,
                o->out.c_str());
  });
}

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "Train fmnist_uvit_tiny on the built-in Fashion-MNIST, then draw a 10x10 class grid");
  struct Opts {
    std::string out = "runs/demo", data, device = "cpu";
    double minutes = 12.5;
    long steps = -1;
    bool quiet = false;
    std::vector<std::string> set;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--out,-o", o->out, "run directory (default runs/demo)");
  cmd->add_option(
         "--minutes", o->minutes,
         "training time limit in minutes (default 12.5; the final grid adds under a minute)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", o->steps,
                  "training steps (default: the preset's, within the time limit)");
  cmd->add_option("--data", o->data,
                  "Fashion-MNIST directory (default: Debian's dataset-fashion-mnist)");
  cmd->add_flag("--quiet,-q", o->quiet, "no progress display");
  cmd->add_option("--set", o->set, "override a fmnist_uvit_tiny field: section.key=value");
  cmd->add_option("--device", o->device, "cpu or cuda");
  cmd->callback([o] {
    TrainJob job;
    job.cfg = load_config("fmnist_uvit_tiny");
    for (const auto& a : o->set) apply_override(job.cfg, a);
    job.data_path = o->data;
    job.out_dir = o->out;
    job.steps = o->steps;
    job.max_minutes = o->minutes;
    job.quiet = o->quiet;
    job.device = o->device;
    job.resume = fs::exists(o->out + "/train_state.safetensors");
    if (job.resume && !o->quiet)
      std::fprintf(stderr, "continuing the demo run in %s\n", o->out.c_str());
    run_training(job);
    auto be = make_backend(o->device);
    UViT net(job.cfg.net, *be);
    net.load_file(o->out + "/nnet_ema.safetensors");
    const std::string png = o->out + "/grid.png";
    if (!o->quiet) std::fprintf(stderr, "sampling a 10x10 grid (one row per class)...\n");
    write_grid(net, job.cfg, png, 100, 0, 0);
    std::printf(
        "wrote %s: 10 samples of each Fashion-MNIST class, one row per class "
        "(T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, "
        "Ankle boot)\n",
        png.c_str());
  });
}

}  // namespace uvit::cli
