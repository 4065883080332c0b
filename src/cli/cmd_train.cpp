// `uvit train` and `uvit demo`.
#include <cstdio>
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/json_text.hpp"
#include "cli/resume.hpp"
#include "cli/sample_grid.hpp"
#include "cli/train_loop.hpp"
#include "core/mem_limit.hpp"
#include "uvit/backend.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// The exit status of a run stopped by a signal, after its checkpoint (128 + the signal, as a
// shell reports a command killed by it), so that `uvit train ... && next` stops there. The ranks
// of a data-parallel job exit 0: mpirun reads any other status as a crash (docs/distributed.md).
void exit_if_interrupted(const TrainOutcome& r) {
  if (r.signal && r.ranks == 1) throw ExitStatus{128 + r.signal};
}

// The demo grid's mini-batch: a quarter of its 100 samples, so that 2 or 4 ranks share them evenly
// in whole mini-batches (rank_split.hpp), and the grid is the same for any rank count; on one
// core as fast as the preset's 100 (docs/ux_audit.md, round 5).
constexpr int kDemoGridBatch = 25;

// The demo's presets: every fmnist_*_tiny one (`uvit info --presets`).
std::string fmnist_presets() {
  std::string list;
  for (const std::string& n : preset_names())
    if (n.starts_with("fmnist_") && n.ends_with("_tiny")) list += (list.empty() ? "" : ", ") + n;
  return list;
}

// The values a run writes into its config.json, checked before anything loads.
void check_recorded_text(const TrainJob& j, const std::vector<std::string>& set,
                         const std::string& init) {
  same_on_every_rank([&] {  // the command line's: one line from rank 0 under mpirun
    check_json_text("--data", j.data_path);
    check_json_text("--init", init);
    for (const auto& a : set) check_json_text("--set", a);
  });
}

void add_grid_options(CLI::App* cmd, TrainJob& j) {
  cmd->add_option("--grid-every", j.grid_every,
                  "draw a sample grid (RUN/samples/step_N.png) every N steps (default: the "
                  "preset's train.eval_interval) and at the end")
      ->check(at_least(1));
  cmd->add_option("--grid-n", j.grid_n,
                  "images per grid, drawn with 25 dpm-solver++ steps, flow presets 32 euler steps "
                  "(default: 16; class models "
                  "with up to 16 classes: 4 per class, one row per class)")
      ->check(at_least(1));
  cmd->add_flag_function(
      "--no-grid", [&j](int64_t) { j.grids = false; },
      "draw no sample grids in RUN/samples/ (the demo still draws its grid.png)");
}
}  // namespace

void add_train(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train a diffusion model");
  struct Opts {
    TrainJob job;
    std::string config, resume, init;
    std::vector<std::string> set;
  };
  auto o = std::make_shared<Opts>();
  TrainJob& j = o->job;
  cmd->add_option("--config,-c", o->config,
                  "preset name, JSON file or run folder (default with --resume: the run's own)");
  cmd->add_option("--init", o->init,
                  "fine-tune: the network and its EMA start from these weights (.safetensors or "
                  ".pth, as --weights of sample; fp32/f16/bf16, not quantised) with a fresh "
                  "optimizer at step 0; recorded as train.init_weights with its SHA-256 "
                  "(train.ignore_keys, train.finetune: docs/cli.md \"Fine-tuning\")");
  cmd->add_option("--out,-o", j.out_dir, "run folder (created)")->required();
  cmd->add_option("--data", j.data_path,
                  "dataset path (default: the preset's dataset.path; Fashion-MNIST is built in)");
  cmd->add_option("--steps", j.steps, "total optimizer steps of the run (default: train.n_steps)")
      ->check(at_least(0));
  cmd->add_option("--batch", j.batch, "batch size (default: train.batch_size)")->check(at_least(1));
  cmd->add_option("--seed", j.seed, "random seed (default: the preset's seed)")->check(at_least(0));
  cmd->add_option("--set", o->set,
                  "override a config field: section.key=value (repeatable; with --resume, "
                  "recorded in the run's config.json and log.jsonl)");
  cmd->add_option("--minutes", j.max_minutes,
                  "stop with a checkpoint after this many minutes (default: no limit)")
      ->check(positive());
  cmd->add_option("--resume", o->resume,
                  "continue a run with its own settings: [latest] the newest checkpoint in --out, "
                  "or PATH, a checkpoint (RUN or RUN/ckpts/STEP; another run's is continued in "
                  "--out); --steps, --set and --data change settings from its step on; --config, "
                  "--seed and --batch may repeat the run's own (docs/cli.md)")
      ->expected(0, 1);
  add_grid_options(cmd, j);
  cmd->add_flag("--quiet,-q", j.quiet, "print only the result line and errors");
  add_device_options(cmd, j.device, j.precision);
  cmd->callback([o, cmd] {
    TrainJob job = o->job;
    const std::string& dir = job.out_dir;
    // Under mpirun each rank checks its own command line: together with the training settings, so
    // that a rank alone with a bad option is named (docs/distributed.md "Errors before the work").
    const TrainOutcome r = run_training(job, [&] {
      check_recorded_text(job, o->set, o->init);
      job.resume = cmd->count("--resume") > 0;
      same_on_every_rank([&] {
        UVIT_CHECK(job.resume || !o->config.empty(), "--config is required (except with --resume)");
      });
      if (job.resume) {
        const ResumePoint rp = resolve_resume(o->resume, dir);
        job.cfg = load_config(rp.run);  // the run's own settings, named as its checkpoints record
        check_resume_options(job.cfg, rp.run, o->config, o->set, job.seed, job.batch);
        if (cmd->count("--init")) check_resume_init(job.cfg, rp, o->init);
        for (const auto& a : o->set) apply_override(job.cfg, a);
        job.resume_from = rp.checkpoint == dir ? "" : rp.checkpoint;
        job.resume_run = rp.run;
        job.resume_label = o->resume.empty() ? "latest" : o->resume;
      } else {
        job.cfg = load_config(o->config);
        same_on_every_rank([&] {
          for (const auto& a : o->set) apply_override(job.cfg, a);
        });
        job.init_flag = cmd->count("--init") > 0;
        if (job.init_flag) job.cfg.json["train"]["init_weights"] = o->init;
      }
    });
    if (r.rank == 0)
      std::printf("run %s at step %ld: weights %s/nnet_ema.safetensors\n", one_line(dir).c_str(),
                  r.step, one_line(dir).c_str());
    exit_if_interrupted(r);
  });
}

// run_training, whose memory refusal names the demo's batch: it has no --batch option (main's
// hint names only the size options given).
TrainOutcome demo_training(TrainJob& job, const std::function<void()>& command_checks) {
  try {
    return run_training(job, command_checks);
  } catch (const OutOfMemory& e) {
    if (e.model_alone) throw;
    throw OutOfMemory(
        cat(e.what(), "; with train.batch_size ",
            job.cfg.json.contains("train") ? job.cfg.json["train"].value("batch_size", 64)
                                           : 64,  // the trainer's default
            ": give a smaller one (--set train.batch_size=N)"),
        false);
  }
}

void add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "demo",
      "Train a tiny model (fmnist_uvit_tiny, or another --config fmnist_*_tiny) on the built-in "
      "Fashion-MNIST, then draw a 10x10 class grid");
  struct Opts {
    TrainJob job;
    std::string config = "fmnist_uvit_tiny";
    std::vector<std::string> set;
  };
  auto o = std::make_shared<Opts>();
  TrainJob& j = o->job;
  j.out_dir = "runs/demo";
  j.max_minutes = 12.5;
  j.final_grid = false;  // the demo's own grid.png is the final one
  cmd->add_option("--out,-o", j.out_dir,
                  "run folder (default runs/demo; a second call continues it)");
  cmd->add_option("--minutes", j.max_minutes,
                  "training time limit in minutes (default 12.5, none with --steps; the final "
                  "grid adds under a minute)")
      ->check(positive());
  cmd->add_option("--steps", j.steps,
                  "train this many steps however long they take, instead of for 12.5 minutes "
                  "(default: the preset's 10000 within the time limit)")
      ->check(at_least(0));
  cmd->add_option("--data", j.data_path,
                  "Fashion-MNIST folder (default: Debian's dataset-fashion-mnist)");
  add_grid_options(cmd, j);
  cmd->add_flag("--quiet,-q", j.quiet, "print only the result line and errors");
  cmd->add_option("--config,-c", o->config,
                  "a Fashion-MNIST preset: " + fmnist_presets() +
                      " (default fmnist_uvit_tiny; a second call continues the run in --out with "
                      "its own preset and settings)");
  cmd->add_option("--set", o->set,
                  "override a field of the preset: section.key=value (repeatable)");
  add_device_options(cmd, j.device, j.precision, "cpu or cuda",
                     "fp32 or bf16 (default: bf16 where the CPU has bf16 units (AVX512-BF16, AMX), "
                     "else fp32; bf16 on cuda)");
  cmd->callback([o, cmd] {
    TrainJob job = o->job;
    const std::string& dir = job.out_dir;
    // As uvit train's: each rank's checks, decided together with the settings' under mpirun.
    const TrainOutcome r = demo_training(job, [&] {
      check_recorded_text(job, o->set, "");
      // --steps asks for the quality instead of the time: no limit unless --minutes is given too.
      if (cmd->count("--steps") && !cmd->count("--minutes")) job.max_minutes = 0;
      if (job.precision.empty() && job.device == "cpu") {
        job.precision_default = cpu_has_bf16() ? "bf16" : "fp32";
        if (job.precision_default == "fp32" && !job.quiet)
          std::fprintf(stderr,
                       "note: this CPU has no bf16 units (AVX512-BF16 or AMX); the demo "
                       "trains in fp32\n");
      }
      job.resume = fs::exists(dir + "/train_state.safetensors") && fs::exists(dir + "/config.json");
      // A second call continues the run with the run's own settings, as `uvit train --resume` does
      // (its --set and --data, not the preset's); another preset needs another folder.
      job.cfg = load_config(job.resume ? dir : o->config);
      if (job.resume && cmd->count("--config")) {
        const Config asked = load_config(o->config);
        UVIT_CHECK(asked.config_name == job.cfg.config_name, "demo: ", dir, " holds a ",
                   job.cfg.config_name, " demo run; give --out another folder for a ",
                   asked.config_name, " demo (e.g. --out ", dir, "_", asked.config_name, ")");
      }
      same_on_every_rank([&] {
        UVIT_CHECK(job.cfg.json.contains("dataset") &&
                       job.cfg.json["dataset"].value("name", "") == "fashion_mnist" &&
                       job.cfg.spec.real_classes() == 10,
                   "demo: config ", job.cfg.config_name,
                   " is not a class-conditional Fashion-MNIST preset (", fmnist_presets(), ")");
      });
      if (job.resume) check_resume_options(job.cfg, dir, "", o->set, -1, 0);
      same_on_every_rank([&] {
        for (const auto& a : o->set) apply_override(job.cfg, a);
      });
      if (job.resume) job.start_note = "continuing the demo run in " + dir;
    });
    exit_if_interrupted(r);
    const std::string png = dir + "/grid.png";
    if (!r.trained && fs::exists(png)) {
      if (r.rank == 0)
        std::printf("the demo run in %s is complete: %s\n", one_line(dir).c_str(),
                    one_line(png).c_str());
      return;
    }
    // Every rank draws its share of the grid (write_grid); rank 0 writes it.
    Comm& comm = world(job.device);
    comm.idle_barrier();  // rank 0's checkpoint is on disk
    auto be = make_backend(job.device, r.precision);
    auto net = make_network(job.cfg, *be);
    net->load_file(dir + "/nnet_ema.safetensors");
    GenerateOptions g;
    g.mini_batch = kDemoGridBatch;
    write_grid(*net, job.cfg, png, 100, g, "grid " + png + " (one row per class)", job.quiet,
               &comm);
    if (r.rank != 0) return;
    std::printf(
        "wrote %s: 10 samples of each Fashion-MNIST class, one row per class "
        "(T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, "
        "Ankle boot)\n",
        one_line(png).c_str());
  });
}

}  // namespace uvit::cli
