// `uvit train --resume [latest|PATH]` (docs/cli.md "Resume"): which checkpoint a run continues
// from, and which options of a re-run command may differ from the run's own.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "uvit/config.hpp"

namespace uvit::cli {

struct ResumePoint {
  std::string run;         // the run folder whose config.json and log.jsonl continue
  std::string checkpoint;  // the folder holding nnet, nnet_ema and train_state .safetensors
  long step = 0;           // the checkpoint's step
  bool in_place = true;    // run is --out itself (else --out starts as a copy of run: a fork)
};

// The run a checkpoint folder belongs to: the folder itself, or for a snapshot RUN/ckpts/STEP
// (which has no config.json of its own) the run two folders up.
std::filesystem::path run_of_checkpoint(const std::filesystem::path& folder);

// `value` "" or "latest": the newest checkpoint of the run in `out` (its train_state.safetensors,
// written last). Otherwise a checkpoint: a run folder, a snapshot RUN/ckpts/STEP, or the
// train_state.safetensors in either. A checkpoint of another run than `out` forks it into `out`,
// which must not hold a run of its own.
ResumePoint resolve_resume(const std::string& value, const std::string& out);

// A re-run command with --resume added may repeat the run's own --config, --set, --seed and
// --batch; only values that differ are refused (the run keeps its network, seed and batch).
// `saved` is the run's config.json; seed < 0 and batch 0 mean "not given".
void check_resume_options(const Config& saved, const std::string& run_dir,
                          const std::string& config, const std::vector<std::string>& set, long seed,
                          int batch);

// `--init W` with --resume (docs/cli.md "Fine-tuning"): a run continues from its own checkpoint,
// so W may only repeat the file the run started from (train.init_weights in `saved`, its
// config.json); a fork, which continues another run's weights, takes no --init.
void check_resume_init(const Config& saved, const ResumePoint& rp, const std::string& init);

}  // namespace uvit::cli
