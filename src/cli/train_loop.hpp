// The training driver shared by `uvit train` and `uvit demo`: progress, JSONL log, periodic
// evaluation pictures, checkpoints, Ctrl-C handling.
#pragma once
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
  double max_minutes = 0;  // 0 = no time limit
  int eval_samples = 100;  // size of the evaluation grids
  bool quiet = false;
  std::string device = "cpu";
  std::string precision;  // "" = the device default
};

// Returns the number of updates done in total (the run's step count when it stopped).
long run_training(const TrainJob& job);

// Writes a grid of class-conditional samples (one row per class, `per_class` columns) from the
// weights in `weights` to `png`; returns the seconds it took.
double write_class_grid(const Config& cfg, const std::string& weights, const std::string& png,
                        int per_class, const std::string& device, int steps = 0);

}  // namespace uvit::cli
