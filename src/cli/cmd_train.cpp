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
    TrainJob job;
    std::string config;
    std::vector<std::string> set;
  };
  auto o = std::make_shared<Opts>();
  TrainJob& j = o->job;
  cmd->add_option("--config,-c", o->config,
                  "preset name or JSON file (default with --resume: the run's)");
  cmd->add_option("--data", j.data_path,
                  "dataset path (default: the preset's; Fashion-MNIST is built in)");
  cmd->add_option("--out,-o", j.out_dir, "run directory")->required();
  cmd->add_option("--steps", j.steps, "total optimizer steps of the run")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch", j.batch, "batch size")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", j.seed, "random seed")->check(CLI::NonNegativeNumber);
  cmd->add_option("--set", o->set, "override a config field: section.key=value (repeatable)");
  cmd->add_option("--minutes", j.max_minutes, "stop (with a checkpoint) after this many minutes");
  cmd->add_flag("--resume", j.resume, "continue the run in --out");
  cmd->add_flag("--quiet,-q", j.quiet, "no progress display");
  cmd->add_option("--device", j.device, "cpu or cuda");
  cmd->add_option("--precision", j.precision, kPrecisionHelp);
  cmd->callback([o] {
    TrainJob job = o->job;
    const std::string& dir = job.out_dir;
    UVIT_CHECK(!(job.resume && (job.seed >= 0 || job.batch > 0)),
               "--seed and --batch cannot change on --resume (the run keeps its own)");
    UVIT_CHECK(job.resume || !o->config.empty(), "--config is required (except with --resume)");
    if (job.resume && fs::exists(dir + "/config.json")) {
      // Keep the run's own settings (batch, seed, data flags); overrides below still apply.
      job.cfg = load_config(dir + "/config.json");
      if (!o->config.empty())
        job.cfg.config_name = load_config(o->config).config_name;
      else if (std::string name = run_config_name(dir); !name.empty())
        job.cfg.config_name = name;
    } else {
      job.cfg = load_config(o->config.empty() ? dir + "/config.json" : o->config);
    }
    for (const auto& a : o->set) apply_override(job.cfg, a);
    long k = run_training(job);
    std::printf("run %s at step %ld: weights %s/nnet_ema.safetensors\n", dir.c_str(), k,
                dir.c_str());
  });
}

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo", "Train fmnist_uvit_tiny on the built-in Fashion-MNIST, then draw a 10x10 class grid");
  struct Opts {
    TrainJob job;
    std::vector<std::string> set;
  };
  auto o = std::make_shared<Opts>();
  TrainJob& j = o->job;
  j.out_dir = "runs/demo";
  j.max_minutes = 12.5;
  cmd->add_option("--out,-o", j.out_dir, "run directory (default runs/demo)");
  cmd->add_option(
         "--minutes", j.max_minutes,
         "training time limit in minutes (default 12.5; the final grid adds under a minute)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", j.steps,
                  "training steps (default: the preset's, within the time limit)");
  cmd->add_option("--data", j.data_path,
                  "Fashion-MNIST directory (default: Debian's dataset-fashion-mnist)");
  cmd->add_flag("--quiet,-q", j.quiet, "no progress display");
  cmd->add_option("--set", o->set, "override a fmnist_uvit_tiny field: section.key=value");
  cmd->add_option("--device", j.device, "cpu or cuda");
  cmd->add_option("--precision", j.precision, kPrecisionHelp);
  cmd->callback([o] {
    TrainJob job = o->job;
    const std::string& dir = job.out_dir;
    job.cfg = load_config("fmnist_uvit_tiny");
    for (const auto& a : o->set) apply_override(job.cfg, a);
    job.resume = fs::exists(dir + "/train_state.safetensors");
    if (job.resume && !job.quiet)
      std::fprintf(stderr, "continuing the demo run in %s\n", dir.c_str());
    run_training(job);
    auto be = make_backend(job.device, job.precision);
    auto net = make_network(job.cfg, *be);
    net->load_file(dir + "/nnet_ema.safetensors");
    const std::string png = dir + "/grid.png";
    if (!job.quiet) std::fprintf(stderr, "sampling a 10x10 grid (one row per class)...\n");
    write_grid(*net, job.cfg, png, 100, 0, 0);
    std::printf(
        "wrote %s: 10 samples of each Fashion-MNIST class, one row per class "
        "(T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, "
        "Ankle boot)\n",
        png.c_str());
  });
}

}  // namespace uvit::cli
