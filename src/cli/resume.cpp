#include "cli/resume.hpp"

#include <filesystem>
#include <string>

#include "train/save_commit.hpp"
#include "train/snapshots.hpp"
#include "uvit/error.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// A checkpoint holds train_state (written last), or its .saving does: the save cut between its
// moves that --resume finishes (train_loop.cpp, before anything is read) or a fork reads from it.
bool has_checkpoint(const fs::path& d) {
  return fs::exists(checkpoint_file(d, "train_state.safetensors"));
}

bool same_folder(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// What to resume from instead, for a run folder whose own train_state is missing (a save cut
// short, a file deleted): "; " and its newest complete snapshot ("" if none).
std::string newest_complete_snapshot(const fs::path& run) {
  const std::string hint = newest_snapshot_hint(run);
  return hint.empty() ? "" : "; " + hint;
}

std::string started_from(const TrainSettings& s) {
  return s.init_weights.empty() ? std::string("the seed's initialisation") : s.init_weights;
}
}  // namespace

fs::path run_of_checkpoint(const fs::path& folder) {
  if (!fs::exists(folder / "config.json") && folder.parent_path().filename() == "ckpts")
    return folder.parent_path().parent_path();
  return folder;
}

ResumePoint resolve_resume(const std::string& value, const std::string& out) {
  ResumePoint r;
  if (value.empty() || value == "latest") {
    UVIT_CHECK(fs::exists(out + "/config.json"), "--resume: ", out,
               " holds no training run (no config.json); start one with --config C --out ", out);
    UVIT_CHECK(has_checkpoint(out), out, ": nothing to resume (no train_state.safetensors",
               newest_complete_snapshot(out), ")");
    r.run = r.checkpoint = out;
    return r;
  }
  fs::path p(value);
  // RUN/ckpts/STEP/, as a shell completes it: without the slash, so that ckpts/ is seen above it.
  if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
  UVIT_CHECK(fs::exists(p), "--resume ", value, ": not found");
  if (fs::is_regular_file(p)) {
    UVIT_CHECK(p.filename() == "train_state.safetensors", "--resume ", value,
               ": not a checkpoint (give a run folder, RUN/ckpts/STEP or its "
               "train_state.safetensors)");
    p = p.parent_path().empty() ? fs::path(".") : p.parent_path();
  }
  if (!has_checkpoint(p)) {
    // A snapshot without its train_state is one whose save was cut short (disk full, a kill).
    const std::string other = newest_complete_snapshot(run_of_checkpoint(p));
    fail("--resume ", value, ": holds no checkpoint (no train_state.safetensors",
         p.parent_path().filename() == "ckpts" ? ": a snapshot whose save did not finish" : "",
         other.empty() ? "; give a run folder or RUN/ckpts/STEP" : other, ")");
  }
  const fs::path run = run_of_checkpoint(p);
  UVIT_CHECK(fs::exists(run / "config.json"), "--resume ", value,
             ": no config.json beside it or in the run folder above ckpts/");
  r.checkpoint = p.string();
  r.run = run.string();
  r.in_place = same_folder(run, out);
  if (r.in_place) {
    r.run = out;
    if (same_folder(p, out)) r.checkpoint = out;
  } else {
    UVIT_CHECK(!has_checkpoint(out), "--resume ", value, ": --out ", out,
               " already holds another run; give a new --out to continue ", value,
               " there, or --out ", run.string(), " to continue that run");
  }
  return r;
}

void check_resume_options(const Config& saved, const std::string& run_dir,
                          const std::string& config, const std::vector<std::string>& set, long seed,
                          int batch) {
  Config run = saved;  // what the run trains with after the command's --set overrides
  for (const auto& a : set) apply_override(run, a);
  UVIT_CHECK(run.json["nnet"] == saved.json["nnet"], "--set: the run in ", run_dir,
             " keeps its network on --resume; nnet.* cannot change (start a new run with --out)");
  if (!config.empty()) {
    // The command's config as it would be trained: the preset with the same --set overrides.
    Config o = load_config(config);
    for (const auto& a : set) apply_override(o, a);
    const bool same_name = o.config_name == run.config_name;
    UVIT_CHECK(same_name && o.json["nnet"] == run.json["nnet"], "--config ", config,
               ": the run in ", run_dir, " was trained with config ", run.config_name,
               same_name ? " and another network" : "",
               "; --resume keeps the run's own config: leave --config out (change settings with "
               "--set or --steps)");
  }
  const TrainSettings ts = train_settings(run), was = train_settings(saved);
  UVIT_CHECK(ts.init_weights == was.init_weights, "--set train.init_weights: the run in ", run_dir,
             " started from ", started_from(was),
             "; --resume keeps how it started (start a new run with --out to fine-tune from other "
             "weights)");
  const long run_seed = long(ts.seed);
  UVIT_CHECK(seed < 0 || seed == run_seed, "--seed ", seed, " differs from the run's seed ",
             run_seed, ": a resumed run keeps its own (leave --seed out)");
  UVIT_CHECK(batch <= 0 || batch == ts.batch, "--batch ", batch, " differs from the run's batch ",
             ts.batch, ": a resumed run keeps its own (leave --batch out)");
}

void check_resume_init(const Config& saved, const ResumePoint& rp, const std::string& init) {
  UVIT_CHECK(rp.in_place, "--init ", init, ": --resume ", rp.checkpoint,
             " forks another run, which continues from that run's weights; leave --init out");
  const TrainSettings s = train_settings(saved);
  UVIT_CHECK(!s.init_weights.empty() && same_folder(s.init_weights, init), "--init ", init,
             ": the run in ", rp.run, " started from ", started_from(s),
             "; --resume continues from the run's own checkpoint (leave --init out, or start a "
             "new run with --out)");
}

}  // namespace uvit::cli
