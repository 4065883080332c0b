// The training driver shared by `uvit train` and `uvit demo`: progress, JSONL log, periodic
// sample grids, checkpoints, Ctrl-C handling, and the record of options changed on --resume.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "uvit/config.hpp"

namespace uvit::cli {

struct TrainJob {
  Config cfg;
  std::string data_path;  // "" = the preset's dataset path
  std::string out_dir;
  long steps = -1;  // total updates of the run; -1 = train.n_steps
  int batch = 0;    // 0 = train.batch_size
  long seed = -1;   // -1 = the preset's seed
  bool resume = false;
  // train.init_weights came from --init, not from the config or --set: messages name it so.
  bool init_flag = false;
  // With resume (cli/resume.hpp): the checkpoint folder ("" = the run in out_dir), the run it
  // belongs to (out_dir, or another run that out_dir continues as a fork) and the --resume value.
  std::string resume_from, resume_run, resume_label = "latest";
  double max_minutes = 0;  // 0 = no time limit
  long grid_every = 0;     // steps between sample grids; 0 = train.eval_interval
  int grid_n = 0;          // images per grid; 0 = default_grid_images(cfg)
  bool grids = true;       // false: no sample grids (--no-grid)
  bool final_grid = true;  // a grid at the end of the run (the demo draws its own)
  bool quiet = false;
  // Printed by rank 0 (unless quiet) once the ranks' checks passed: the demo's "continuing the
  // demo run in DIR".
  std::string start_note;
  std::string device = "cpu";
  // "" = on resume, the precision the run trained in (its log's `start` rows, docs/cli.md
  // "Resume"), else precision_default.
  std::string precision;
  // What an empty precision means for a run that records none (the demo: bf16 where the CPU has
  // bf16 units); "" = the device default.
  std::string precision_default;
};

// The default --grid-n: 4 per class for class models with up to 16 classes, else 16.
int default_grid_images(const Config& cfg);

struct TrainOutcome {
  long step = 0;            // the run's step count when it stopped
  int signal = 0;           // SIGINT, SIGTERM or SIGUSR1 when interrupted, else 0
  bool trained = false;     // whether this call did any update
  int rank = 0, ranks = 1;  // this process in a data-parallel job (docs/distributed.md)
  std::string precision;    // what the run trains in (the asked one or the recorded one)
};

// Trains (or continues) the run in job.out_dir; returns where it stopped. `command_checks`, the
// command's own (its options, --resume's run, the config: they complete `job`), run first, in the
// same exchange as the training settings' under mpirun: the ranks decide all the checks before
// the work in one round (docs/distributed.md "Errors before the work").
TrainOutcome run_training(TrainJob& job, const std::function<void()>& command_checks = {});

}  // namespace uvit::cli
