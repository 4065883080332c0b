#include "cli/train_loop.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>

#include "cli/checked_together.hpp"
#include "cli/chunk_claim.hpp"
#include "cli/commands.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/rank_split.hpp"
#include "cli/sample_grid.hpp"
#include "core/signals.hpp"
#include "io/abs_path.hpp"
#include "io/loaded_weights.hpp"
#include "io/readers.hpp"
#include "train/save_commit.hpp"
#include "train/save_room.hpp"
#include "train/snapshots.hpp"
#include "uvit/backend.hpp"
#include "uvit/data.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/dist.hpp"
#include "uvit/error.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/log.hpp"
#include "uvit/metadata.hpp"
#include "uvit/train.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace uvit::cli {

namespace {
std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

// In-training grids use a fast sampler: the preset's (often 250 steps) would cost far more than
// the training between two grids.
constexpr const char* kGridSampler = "dpm-solver++";
constexpr int kGridSteps = 25;
// Flow presets: Euler on 33 points (32 steps) and the preset's shift (docs/flow.md).
constexpr const char* kFlowGridSampler = "euler";
constexpr int kFlowGridSteps = 33;

// A log.jsonl row (docs/cli.md "log.jsonl"): its event, the wall-clock time and the step.
json log_row(const char* event, long step) {
  const double t =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return {{"event", event}, {"t", std::round(t * 1000) / 1000}, {"step", step}};
}

// A run's log that cannot be appended to (another user's file in a shared run folder, a chmod -w,
// a read-only mount) lost every row of the call without a word, exit 0: refused in one line, before
// any work on --resume. A missing log passes unless `make` (then it is made).
void check_log_appendable(const std::string& dir, bool make = false) {
  const std::string path = dir + "/log.jsonl";
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | (make ? O_CREAT : 0), 0666);
  if (fd >= 0) {
    ::close(fd);
    return;
  }
  const int e = errno;
  // The way out: a fork of the run's checkpoint, when it has one.
  const bool saved = fs::exists(checkpoint_file(dir, "train_state.safetensors"));
  UVIT_CHECK(e == ENOENT && !make, path, ": cannot append to it (", std::strerror(e),
             "); the run's log would lose this call's rows: make it writable",
             saved ? cat(", or continue in a new folder with --resume ", dir, " --out NEW") : "");
}

// log.jsonl opened for appending. A row cut short by an earlier append (a power cut, a full disk)
// is ended first, so that the next row keeps a line of its own (uvit info counts the cut one).
std::ofstream append_log(const std::string& dir) {
  check_log_appendable(dir, true);
  const std::string path = dir + "/log.jsonl";
  bool cut = false;
  if (std::ifstream prev(path, std::ios::ate); prev && prev.tellg() > 0) {
    prev.seekg(-1, std::ios::end);
    cut = prev.get() != '\n';
  }
  std::ofstream log(path, std::ios::app);
  if (!log.is_open()) check_log_appendable(dir, true);  // changed since: says why
  if (cut) log << '\n';
  return log;
}

// One row appended to the log of the run in `dir`, flushed. A row that cannot be written (a disk
// that filled while the run trained) stops the run: an ofstream that failed writes nothing more,
// so every later row, the checkpoint rows --resume reads included, was lost without a word, exit 0.
void write_row(std::ofstream& log, const json& row, const std::string& dir) {
  errno = 0;
  log << row.dump() << "\n" << std::flush;
  if (log) return;
  const int e = errno;
  const long step = row.value("step", 0L);
  fail(dir, "/log.jsonl: write error: ", e ? std::strerror(e) : "the stream failed",
       " (its row of step ", step,
       "); the run stops, as its log would lose rows: ", run_stands(dir, step, ""));
}

// A row naming a file of the run (a checkpoint folder, a sample grid), relative to the run.
void log_event(std::ofstream& log, const std::string& dir, const char* event, long step,
               const std::string& path) {
  json j = log_row(event, step);
  j["path"] = path;
  write_row(log, j, dir);
}

std::vector<json> parse_log(std::istream&& in) {
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) rows.push_back(std::move(j));
  }
  return rows;
}
std::vector<json> read_log(const std::string& dir) {
  return parse_log(std::ifstream(dir + "/log.jsonl"));
}

// Re-reads the run's log to plot the whole loss curve, resumed segments included (rows without a
// loss, such as recorded overrides, are skipped).
void write_loss_plot(const std::string& dir) {
  PlotSeries s;
  for (const json& j : read_log(dir)) {
    if (!j.contains("loss") || !j.contains("step")) continue;
    s.x.push_back(j["step"].get<double>());
    s.y.push_back(j["loss"].get<double>());
  }
  if (s.x.size() >= 2) write_plot_png(dir + "/loss.png", {s}, 640, 400, true, {{"Title", "loss"}});
}

// The step in the metadata `meta` of the train_state file `path`.
long state_step(const FileMetadata& meta, const std::string& path) {
  const auto it = meta.find("step");
  UVIT_CHECK(it != meta.end(), path, ": metadata lacks 'step'");
  return std::stol(it->second);
}
// The step a run's checkpoint holds (a save cut between its moves: the step of its .saving).
long checkpoint_step(const std::string& dir) {
  const std::string path = checkpoint_file(dir, "train_state.safetensors").string();
  return state_step(read_safetensors_metadata(path), path);
}

// The log rows that led to the checkpoint in `ckpt` at `step`, of the run in `run` whose log is
// `log` (read_run_log), `copy` the checkpoint's log copy (read_checkpoint_record): the run's rows
// up to the step; for a snapshot of a branch the run went back from (docs/cli.md "Resume"), the
// copy, that branch's own (`*restored` then says so).
std::vector<json> checkpoint_history(const std::string& log, const std::string& run,
                                     const std::string& ckpt,
                                     const std::optional<std::string>& copy, long step,
                                     bool* restored = nullptr) {
  std::error_code ec;
  const bool stale = !ckpt.empty() && !fs::equivalent(run, ckpt, ec) &&
                     !log_copy_is_live(log, copy ? &*copy : nullptr);
  if (restored) *restored = stale;
  if (stale) return parse_log(std::istringstream(*copy));
  std::vector<json> rows = parse_log(std::istringstream(log));
  rows.erase(std::remove_if(rows.begin(), rows.end(),
                            [&](const json& r) { return r.value("step", 0L) > step; }),
             rows.end());
  return rows;
}

// The precision this call trains in: --precision, else on resume the one the run's last `start`
// row up to the checkpoint records for this device (so a bf16 run does not go on in fp32
// unnoticed), else job.precision_default. A --precision other than the recorded one gets a note.
// `rec` and `at`: the checkpoint's record and step (check_run_dir).
std::string settle_precision(const TrainJob& job, const CheckpointRecord& rec, long at,
                             bool quiet) {
  std::string recorded;
  if (job.resume) {
    const std::string& run = job.resume_run.empty() ? job.out_dir : job.resume_run;
    for (const json& r : checkpoint_history(read_run_log(run), run, job.resume_from, rec.log, at))
      if (r.value("event", "") == "start" && r.value("device", "") == job.device)
        recorded = r.value("precision", "");
  }
  if (job.precision.empty()) {
    if (!recorded.empty() && !quiet)
      std::fprintf(stderr,
                   "continuing in %s, the precision the run trained in (--precision "
                   "changes it)\n",
                   recorded.c_str());
    return recorded.empty() ? job.precision_default : recorded;
  }
  if (!recorded.empty() && recorded != job.precision && !quiet)
    std::fprintf(stderr,
                 "note: the run trained in %s up to step %ld; continuing in %s (recorded in "
                 "log.jsonl)\n",
                 recorded.c_str(), at, job.precision.c_str());
  return job.precision;
}

// The fields of `after` that differ from `before`, as {"section.key": value}.
json changed_fields(const json& before, const json& after) {
  const json a = before.flatten(), b = after.flatten();
  json out = json::object();
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (a.contains(it.key()) && a[it.key()] == it.value()) continue;
    std::string key = it.key().substr(1);
    for (char& c : key)
      if (c == '/') c = '.';
    out[key] = it.value();
  }
  return out;
}

// On --resume: options that change the run's settings (--steps, --set, --data) are written to its
// config.json, and the step they take effect at to log.jsonl, so that the run's files say how its
// weights were trained and a later plain --resume keeps them.
void record_overrides(const std::string& dir, const Config& cfg, long step, bool quiet) {
  const json before = read_json_file(dir + "/config.json");
  const json changed = changed_fields(before, cfg.json);
  if (changed.empty()) return;
  const std::string c = cfg.json.dump(2) + "\n";
  write_file_atomic(dir + "/config.json", c.data(), c.size());
  json row = log_row("override", step);
  row["override"] = changed;
  std::ofstream log = append_log(dir);
  write_row(log, row, dir);
  if (!quiet)
    std::fprintf(stderr, "from step %ld: %s (recorded in %s/config.json)\n", step,
                 changed.dump().c_str(), dir.c_str());
}

// A fine-tune (train.init_weights): the file's SHA-256 goes to the run's config (as
// train.init_weights_sha256) and, with its path, to an `init` row of log.jsonl, so that the run's
// files say which weights it started from even after the file is replaced. The config records the
// absolute path; the line printed names the file as typed, as its errors do.
void record_init(const std::string& dir, Config& cfg, const Trainer& tr, const std::string& typed,
                 bool quiet) {
  const std::string path = cfg.json["train"]["init_weights"].get<std::string>();
  const std::string sha = file_sha256(path);
  cfg.json["train"]["init_weights_sha256"] = sha;
  json row = log_row("init", 0);
  row["path"] = path;
  row["sha256"] = sha;
  std::ofstream log = append_log(dir);
  write_row(log, row, dir);
  if (quiet) return;
  // A checkpoint's entry (DiT's train.py files hold "model" and "ema"): say which one was taken.
  const auto& meta = tr.init_metadata();  // as the trainer read it (one open for the load)
  const std::string entry =
      meta.count(kEntryKey) ? cat(", its \"", meta.at(kEntryKey), "\" entry") : std::string();
  std::fprintf(stderr, "starting from %s%s (sha256 %s)\n", typed.c_str(), entry.c_str(),
               sha.c_str());
}

// On --resume PATH: the log that led to the checkpoint in `ckpt` (checkpoint_history), from `src`
// (the run's folder) into `dir` (the same folder, cut back: the rows after the checkpoint describe
// weights the run leaves; or a fork's new folder), followed by a row saying where the run continues
// from. Rows the run's own log loses are appended to RUN/log_dropped.jsonl after a `dropped` row,
// not deleted: the branch left may be the better one, and `--resume` of its newer snapshot can go
// back to it (that snapshot's log then replaces the log from the point the two branches share).
void continue_log(const std::string& src, const std::string& dir, const std::string& ckpt,
                  const std::optional<std::string>& copy, long step, const std::string& from,
                  bool quiet) {
  bool restored = false;
  const std::string was = read_run_log(src);
  const std::vector<json> log = parse_log(std::istringstream(was));
  const std::vector<json> kept = checkpoint_history(was, src, ckpt, copy, step, &restored);
  size_t common = 0;  // the rows the log and the kept history share: rows up to `step`, or more
  while (common < std::min(log.size(), kept.size()) && log[common] == kept[common]) ++common;
  const bool in_place = fs::equivalent(src, dir);
  if (common < log.size() && in_place) {
    json mark = log_row("dropped", step);
    mark["from"] = from;
    const std::string side = dir + "/log_dropped.jsonl";
    std::string text;
    if (std::ifstream in(side, std::ios::binary); in)
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    text += mark.dump() + "\n";
    for (size_t i = common; i < log.size(); ++i) text += log[i].dump() + "\n";
    write_file_atomic(side, text.data(), text.size());  // before the log loses them
  }
  json row = log_row("resume", step);
  row["from"] = from;
  if (restored) row["restored"] = true;
  std::string text;
  for (const json& r : kept) text += r.dump() + "\n";
  text += row.dump() + "\n";
  write_file_atomic(dir + "/log.jsonl", text.data(), text.size());
  if (quiet || ckpt.empty()) return;
  const std::string saved = cat("ckpts/", step);
  const std::string moved =
      in_place ? cat("; the rows it replaced went to ", dir, "/log_dropped.jsonl") : "";
  if (restored)
    std::fprintf(stderr,
                 "%s is a snapshot of a branch its run went back from: %s/log.jsonl now holds that "
                 "branch's rows (kept in the snapshot)%s\n",
                 ckpt.c_str(), dir.c_str(), moved.c_str());
  else if (!copy && !fs::equivalent(src, ckpt) &&
           std::none_of(log.begin(), log.end(), [&](const json& r) {
             return r.value("event", "") == "checkpoint" && r.value("path", "") == saved;
           }))
    std::fprintf(stderr,
                 "note: %s holds no copy of its log (written before snapshots kept one) and %s's "
                 "log has no row of its save: if it is of a branch the run went back from, that "
                 "branch's rows (in log_dropped.jsonl) are not restored; the log continues from "
                 "the run's rows up to step %ld\n",
                 ckpt.c_str(), src.c_str(), step);
}

// The loss window a stopped run left open (steps since its last log row), so that the first row
// after --resume averages the same steps as an uninterrupted run.
struct LossWindow {
  double sum = 0;
  long n = 0;
};
LossWindow open_window(const std::string& dir, long step) {
  const std::vector<json> rows = read_log(dir);
  for (auto r = rows.rbegin(); r != rows.rend(); ++r) {
    if (!r->contains("loss")) continue;  // recorded overrides
    if (r->value("step", -1L) != step || !r->contains("window_steps")) return {};
    return {(*r)["window_loss_sum"].get<double>(), (*r)["window_steps"].get<long>()};
  }
  return {};
}

// A folder left by a run that stopped before its first checkpoint holds config.json and log.jsonl
// but no train_state.safetensors: a new run there would append to that log (two runs in one) and
// replace its config. Both move to DIR/failed_start (failed_start_2, ... for later ones) first.
void set_aside_failed_start(const std::string& dir, bool quiet) {
  const char* files[] = {"config.json", "log.jsonl"};
  if (!fs::exists(dir + "/" + files[0]) && !fs::exists(dir + "/" + files[1])) return;
  std::string keep = dir + "/failed_start";
  for (int k = 2; fs::exists(keep); ++k) keep = cat(dir, "/failed_start_", k);
  fs::create_directories(keep);
  for (const char* f : files)
    if (fs::exists(dir + "/" + f)) fs::rename(dir + "/" + f, keep + "/" + f);
  if (!quiet)
    std::fprintf(stderr,
                 "%s held a run that stopped before its first checkpoint: its config.json and "
                 "log.jsonl moved to %s\n",
                 dir.c_str(), keep.c_str());
}

// One training per run folder: a second `uvit train --out DIR` started while one runs (a command
// launched twice) would set the first's log aside as a failed start, then both would write the
// same checkpoints. flock on DIR/.lock opened for writing (lock_file): on NFS, where cluster runs
// live, flock is a byte-range lock that the folder's own descriptor (read-only) cannot take, so a
// lock on the folder alone let two trainings in. The folder is flocked too where that works, so
// that an older uvit (which takes only the folder's lock) and this one still exclude each other.
// The kernel (or the NFS server) drops both when the process ends, however it ends: a `.lock` left
// behind is an empty file, no lock. A file system without flock goes unchecked.
// Holds nothing until take() (not a std::optional: GCC 12's -Wmaybe-uninitialized misreads its
// destructor).
class RunFolderLock {
 public:
  // try_take's answer: held (or unchecked: no flock there), another process holds the folder, or
  // this user cannot write it (EROFS, EACCES: another user's run, a read-only mount).
  enum class Take { held, busy, read_only };
  RunFolderLock() = default;
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;
  ~RunFolderLock() { release(); }
  bool held() const { return fd_ >= 0; }
  // The run's files are written by path: a folder moved (or deleted) while it trains would get the
  // later checkpoints in a new folder of the old name, without config.json and log.jsonl (whose
  // stream stays open on the moved file): two halves of one run. Checked before each write.
  void check_in_place(const std::string& dir) const {
    struct stat held, named;
    if (fd_ < 0 || ::fstat(fd_, &held) != 0) return;
    if (::stat(dir.c_str(), &named) == 0 && named.st_dev == held.st_dev &&
        named.st_ino == held.st_ino)
      return;
    char buf[4096];
    const ssize_t n = ::readlink(cat("/proc/self/fd/", fd_).c_str(), buf, sizeof buf - 1);
    std::string now = n > 0 ? std::string(buf, size_t(n)) : "";
    const std::string gone = " (deleted)";
    const bool deleted =
        now.empty() ||
        (now.size() > gone.size() && now.compare(now.size() - gone.size(), gone.size(), gone) == 0);
    fail(dir, ": the run folder was ", deleted ? "deleted" : "moved to " + now,
         " while training; nothing more is written (the steps since its last checkpoint are lost)",
         deleted ? "" : cat(": continue with uvit train --out ", now, " --resume"));
  }
  // A run folder this user cannot write is not refused here: its own checks
  // (check_log_appendable, the save) name what is wrong.
  void take(const std::string& dir) {
    UVIT_CHECK(try_take(dir) != Take::busy, dir,
               ": another uvit train is writing this run now; wait for it to end (or stop it), or "
               "choose another --out");
  }
  Take try_take(const std::string& dir) {
    release();
    fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd_ < 0) return Take::held;  // no folder to lock: its first write says why
    // Any error but EWOULDBLOCK (EBADF on NFS) leaves the decision to the lock file.
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
      release();
      return Take::busy;
    }
    lock_fd_ = lock_file(dir + "/.lock", false);
    if (lock_fd_ >= 0) return Take::held;
    const int e = errno;
    if (e == EWOULDBLOCK) {
      release();
      return Take::busy;
    }
    return e == EROFS || e == EACCES || e == EPERM ? Take::read_only : Take::held;
  }

 private:
  void release() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    if (fd_ >= 0) ::close(fd_);
    fd_ = lock_fd_ = -1;
  }
  int fd_ = -1;       // the folder (check_in_place; its flock where the file system has one)
  int lock_fd_ = -1;  // DIR/.lock
};

// A save cut between its moves (a SIGKILL, a power cut) left the checkpoint --resume takes with
// its first files in place and the rest in .saving: they are moved in before anything reads it
// (src/train/save_commit.hpp). The run folder is locked first. A fork's source run is not written
// while another uvit train holds it (that one may be saving into the same folder), nor when this
// user cannot write it (another user's run, a read-only mount): the fork reads the save whole from
// .saving (checkpoint_file) and its own saves write it whole into --out.
void finish_resumed_save(const TrainJob& job, RunFolderLock& run_lock, bool quiet) {
  const std::string& dir = job.out_dir;
  const std::string ckpt = job.resume_from.empty() ? dir : job.resume_from;
  if (fs::is_directory(dir)) run_lock.take(dir);
  RunFolderLock source;
  const auto took = job.resume_run.empty() || job.resume_run == dir
                        ? RunFolderLock::Take::held
                        : source.try_take(job.resume_run);
  if (took != RunFolderLock::Take::held) {
    if (interrupted_save_pending(ckpt) && !quiet)
      std::fprintf(stderr,
                   "note: %s holds a save cut between its moves, and %s %s: the fork reads that "
                   "save from %s/%s and leaves the folder as it is\n",
                   ckpt.c_str(),
                   took == RunFolderLock::Take::busy ? "another uvit train is writing"
                                                     : "this user cannot write",
                   job.resume_run.c_str(), ckpt.c_str(), kSaveStage);
    return;
  }
  const bool finished = finish_interrupted_save(ckpt);
  // What a dead save left in the run folder goes now, not at the first save after training.
  if (fs::is_directory(dir)) remove_dead_save(dir);
  if (!finished || quiet) return;
  std::fprintf(stderr,
               "note: %s held a save cut between its moves: finished it (its last files moved in "
               "from %s/%s), the checkpoint of step %ld\n",
               ckpt.c_str(), ckpt.c_str(), kSaveStage, checkpoint_step(ckpt));
}

// The run folder's checks that need nothing loaded: in the ranks' round of errors before the work
// (one line under mpirun, docs/distributed.md), not after it.
void check_out_dir(const TrainJob& job) {
  const std::string& dir = job.out_dir;
  check_output_dir("--out", dir);  // a file there would fail only after the data and the network
  const bool has_state = fs::exists(dir + "/train_state.safetensors");
  UVIT_CHECK(job.resume || !has_state, dir,
             " already holds a training run; pass --resume to continue it or choose another --out");
}

// Checks the request against the run before anything is loaded or created. Returns the step the
// run is at (0 for a new run); on --resume, `*rec` is the checkpoint's record, of the same save.
long check_run_dir(const TrainJob& job, long target, CheckpointRecord* rec) {
  const std::string& dir = job.out_dir;
  if (!job.resume) return 0;
  if (fs::exists(dir + "/train_state.safetensors")) check_log_appendable(dir);
  const std::string ckpt = job.resume_from.empty() ? dir : job.resume_from;
  UVIT_CHECK(fs::exists(checkpoint_file(ckpt, "train_state.safetensors")), ckpt,
             ": nothing to resume (no train_state.safetensors)");
  // The log copy is read for a snapshot (of this run or another), whose own history it may be.
  const std::string& run = job.resume_run.empty() ? dir : job.resume_run;
  std::error_code ec;
  *rec = read_checkpoint_record(ckpt, !job.resume_from.empty() && !fs::equivalent(run, ckpt, ec));
  const long at = state_step(rec->state, checkpoint_file(ckpt, "train_state.safetensors").string());
  UVIT_CHECK(at <= target, "the run in ", ckpt, " is already at step ", at, ", past the ", target,
             " steps asked for (--steps or train.n_steps); give --steps above ", at,
             " to train further");
  return at;
}
// Says up front when a run bounded by time (the demo, --minutes) will stop before its last step:
// after some seconds of steady steps (the first, which pays one-time set-up, left out), one line
// with the step it is expected to reach.
class LimitProjection {
 public:
  LimitProjection(double limit_s, long target) : limit_s_(limit_s), target_(target) {}
  void update(long k, double t, Progress& bar) {
    if (done_ || limit_s_ <= 0) return;
    if (k0_ < 0) {
      k0_ = k, t0_ = t;
      return;
    }
    if (t - t0_ < kWindowS) return;
    done_ = true;
    const double rate = (k - k0_) / (t - t0_);
    const long expected = k + long(rate * (limit_s_ - t));
    if (expected >= target_) return;
    bar.finish();
    std::fprintf(stderr,
                 "note: at %.2f steps/s this machine reaches about step %ld of %ld in the %s time "
                 "limit (all %ld would take about %s); --steps asks for a step count instead\n",
                 rate, expected, target_, Progress::fmt_time(limit_s_).c_str(), target_,
                 Progress::fmt_time(t + (target_ - k) / rate).c_str());
  }

 private:
  static constexpr double kWindowS = 8;  // seconds of steps timed before projecting
  double limit_s_;
  long target_, k0_ = -1;
  double t0_ = 0;
  bool done_ = false;
};
}  // namespace

int default_grid_images(const Config& cfg) {
  const int k = real_classes(cfg);
  return k > 0 && k <= 16 ? 4 * k : 16;
}

TrainOutcome run_training(TrainJob& job, const std::function<void()>& command_checks) {
  // Under mpirun or srun every rank trains its slice of each batch; rank 0 alone writes the run's
  // files, log and grids (docs/distributed.md). Made first: each rank checks its own command line
  // and settings below, and the ranks decide together (docs/distributed.md "Errors before the
  // work").
  Comm& comm = world(job.device);
  Config cfg;
  std::string init;
  // The same exchange carries each rank's hash of the settings it resolved, compared below.
  const auto digest = [&] { return train_settings_hash(cfg.json); };
  const std::vector<uint64_t> settings = checked_together(comm, digest, [&] {
    if (command_checks) command_checks();
    check_out_dir(job);
    cfg = job.cfg;
    if (job.batch > 0) cfg.json["train"]["batch_size"] = job.batch;
    if (job.steps >= 0) cfg.json["train"]["n_steps"] = job.steps;
    if (job.seed >= 0) cfg.json["seed"] = job.seed;
    // The data a run trains on is part of its settings (a later --resume without --data uses it).
    if (!job.data_path.empty() && cfg.json.contains("dataset"))
      cfg.json["dataset"]["path"] = io::absolute_path(job.data_path);
    // So are the weights a fine-tune starts from, recorded by absolute path (so that the record
    // holds from any folder) once the trainer has read them by the path as typed (its errors name
    // the file as the user gave it).
    const TrainSettings asked = train_settings(cfg);
    init = job.resume ? "" : asked.init_weights;
    same_on_every_rank([&] {  // the settings only: one line from rank 0 under mpirun
      // ignore_keys picks what is not taken from the weights, or (partial) what is trained: alone,
      // on a new run from the seed, it would change nothing.
      UVIT_CHECK(
          job.resume || !init.empty() || asked.partial || asked.ignore_keys.empty(),
          "train.ignore_keys names the parameters not taken from --init WEIGHTS; this run has "
          "none: give --init, or train.finetune=partial to train only those parameters "
          "(docs/cli.md \"Fine-tuning\")");
      // Refused before any file is made: LaVin-DiT has no training (docs/lavin_dit.md "Status"),
      // and a sample.algorithm the run's own `uvit sample` would refuse is caught now, not after
      // training.
      UVIT_CHECK(cfg.spec.name != "lavin_dit", "config ", cfg.config_name,
                 " is LaVin-DiT: uvit train does not train it (its official code has no training; "
                 "docs/lavin_dit.md \"Status\"); sample it with uvit lavin-sample");
      if (!is_flow(cfg) && cfg.json.contains("sample") && cfg.json["sample"].is_object() &&
          cfg.json["sample"].contains("algorithm"))
        sampler_for_algorithm(cfg.json["sample"].value("algorithm", ""), schedule_for(cfg).kind());
    });
  });
  const std::string dir = job.out_dir;
  same_on_every_rank([&] { check_world_matches_scheduler(comm); });  // srun: every task alike
  // Every rank resolved the settings itself (its node's presets, its own command line): a rank
  // with others (a learning rate, a dataset setting) is refused before anything is read or made,
  // not found by the replica check later, or never.
  check_train_settings_alike(comm, cfg.json, settings);
  const bool lead = comm.rank() == 0, quiet = job.quiet || !lead;
  if (!quiet && !job.start_note.empty()) std::fprintf(stderr, "%s\n", job.start_note.c_str());
  const TrainSettings ts = train_settings(cfg);
  const long target = ts.steps;
  RunFolderLock run_lock;  // held to the end of the run (its final grid included)
  if (job.resume && lead) finish_resumed_save(job, run_lock, quiet);
  if (job.resume) comm.barrier();  // every rank reads the checkpoint once it is whole
  CheckpointRecord rec;            // what the step and the log rows are taken from (--resume)
  const long at = check_run_dir(job, target, &rec);
  // UVIT_TEST_RECORD_PAUSE=FILE: waits while FILE exists, so that tests/mpi/train_config_check.sh
  // can save the checkpoint again between its record and its load.
  if (job.resume) io::pause_for_test("UVIT_TEST_RECORD_PAUSE");
  const std::string precision = settle_precision(job, rec, at, quiet);
  if (job.resume && at == target) {
    if (!quiet)
      std::fprintf(stderr,
                   "the run in %s is already at step %ld: nothing to train (give --steps N "
                   "to train further)\n",
                   dir.c_str(), at);
    return {at, 0, false, comm.rank(), comm.size(), precision};
  }

  // Before the data and the trainer: said once, by rank 0.
  same_on_every_rank([&] { data_parallel_width(ts, comm.size()); });
  if (comm.size() == 1 && !quiet && (ts.overlap || ts.zero > 0))
    std::fprintf(stderr,
                 "note: %s change%s nothing in a single process (%s the exchange between ranks, "
                 "docs/distributed.md); the run keeps %s for an mpirun --resume\n",
                 ts.overlap && ts.zero ? "train.overlap and train.zero"
                 : ts.overlap          ? "train.overlap"
                                       : "train.zero",
                 ts.overlap && ts.zero ? "" : "s",
                 ts.overlap && ts.zero ? "they act on" : "it acts on",
                 ts.overlap && ts.zero ? "them" : "it");
  auto ds = make_dataset(data_options_from_json(cfg.json, job.data_path));
  auto be = make_backend(job.device, precision);
  // Text models need prompts (`uvit sample --prompt`) and latent models the autoencoder (`uvit
  // sample --autoencoder`), so their runs keep only the loss curve. Rank 0's grids are part of
  // the Trainer's memory plan: a run that cannot draw them is refused before step 1.
  const bool can_draw = job.grids && !cfg.spec.text_conditional() && !cfg.json.contains("z_shape");
  EmaSampling grids;
  grids.opt.sampler = is_flow(cfg) ? kFlowGridSampler : kGridSampler;
  grids.opt.steps = is_flow(cfg) ? kFlowGridSteps : kGridSteps;
  grids.n = grid_count(cfg, job.grid_n > 0 ? job.grid_n : default_grid_images(cfg));
  Trainer tr(cfg, *be, ds, dir, &comm, lead && can_draw ? &grids : nullptr);
  if (job.resume) {
    tr.resume(job.resume_from);
    // The step and the log rows taken above are of the save the weights are of: a save that moved
    // in between (another uvit train re-saving the snapshot this fork reads) is refused, not mixed.
    // Each rank read the files itself, so one may see the save move and another not: decided
    // together, so that every rank refuses (one line, from rank 0) or every rank goes on.
    if (any_rank(comm, tr.resumed_metadata() != rec.state))
      throw SameOnEveryRank(cat(job.resume_from.empty() ? dir : job.resume_from,
                                ": saved again while this call read it (another uvit train is "
                                "writing its run); run the command again"));
    // Every rank read the checkpoint itself: a rank whose copy differs is refused in one line
    // before the first step (the replica check every log_interval is the same hash).
    check_loaded_alike(comm, "--resume " + (job.resume_from.empty() ? dir : job.resume_from),
                       [&] { return tr.weights_hash(); });
    if (lead && !job.resume_from.empty()) {
      if (job.resume_run != dir) {  // a fork: the new run starts as a copy of the other's
        fs::create_directories(dir);
        if (!run_lock.held()) run_lock.take(dir);
        set_aside_failed_start(dir, job.quiet);
        const std::string c = read_json_file(job.resume_run + "/config.json").dump(2) + "\n";
        write_file_atomic(dir + "/config.json", c.data(), c.size());
      }
      continue_log(job.resume_run, dir, job.resume_from, rec.log, tr.step_count(), job.resume_label,
                   job.quiet);
      if (!job.quiet)
        std::fprintf(stderr, "continuing from the checkpoint of step %ld in %s\n", tr.step_count(),
                     job.resume_from.c_str());
      if (const auto left = snapshot_branches(dir).stale; !job.quiet && !left.empty()) {
        std::string steps;
        for (const auto& snap : left) steps += cat(steps.empty() ? "" : ", ", snap.first);
        std::fprintf(stderr,
                     "note: snapshot%s %s in %s/ckpts %s of a branch the run went back from: "
                     "train.keep_snapshots does not count %s, and a save of this branch at %s "
                     "step replaces %s\n",
                     left.size() > 1 ? "s" : "", steps.c_str(), dir.c_str(),
                     left.size() > 1 ? "are" : "is", left.size() > 1 ? "them" : "it",
                     left.size() > 1 ? "their" : "its", left.size() > 1 ? "them" : "it");
      }
    }
    if (lead) record_overrides(dir, cfg, tr.step_count(), job.quiet);
  } else {
    tr.init();
    if (!init.empty()) {  // as for --resume: before the first step, and before the run's folder
      check_loaded_alike(comm, (job.init_flag ? "--init " : "train.init_weights ") + init,
                         [&] { return tr.weights_hash(); });
      cfg.json["train"]["init_weights"] = io::absolute_path(init);
    }
    if (lead) {
      fs::create_directories(dir);  // only now: a run that fails to start leaves no folder behind
      run_lock.take(dir);
      set_aside_failed_start(dir, job.quiet);
      if (!init.empty()) record_init(dir, cfg, tr, init, job.quiet);
      const std::string c = cfg.json.dump(2) + "\n";
      write_file_atomic(dir + "/config.json", c.data(), c.size());
    }
  }
  comm.barrier();
  const TrainSettings& s = tr.settings();
  if (!quiet)
    std::fprintf(
        stderr, "training %s on %s: %zu parameters, batch %d, steps %ld -> %ld, %s %s, run %s\n",
        cfg.config_name.c_str(), ds->describe().c_str(), tr.net().num_params(), s.batch,
        tr.step_count(), s.steps, be->name().c_str(), be->precision().c_str(), dir.c_str());
  if (!quiet && comm.size() > 1)
    std::fprintf(stderr,
                 "data parallel: %d ranks (%s), %d slices of %d images per step, exchange %s, "
                 "ZeRO-%d\n",
                 comm.size(), comm.name().c_str(), tr.dp_width(), s.batch / tr.dp_width(),
                 tr.exchange_mode().c_str(), tr.zero_level());

  if (lead) {  // a disk without room for a save: said now, not after hours of steps
    const long snap = (tr.step_count() / s.save_interval + 1) * s.save_interval;  // 1st snapshot
    const std::string w = save_room_warning(dir, tr.checkpoint_bytes(), snap <= s.steps ? snap : 0);
    if (!w.empty()) uvit::log(uvit::LogLevel::Warn, w);
  }

  g_signal = 0;
  // SIGUSR1: forwarded by mpirun, sent by Slurm --signal. Restored once the last checkpoint is
  // written: a signal during the final grid ends the process by the caller's disposition.
  std::optional<SignalScope> stop_on_signal(std::in_place, {SIGINT, SIGTERM, SIGUSR1}, on_signal);
  // SIGHUP (the terminal closed) and SIGPIPE (a `| tee log` whose reader is gone) stop the same
  // way, not by their default action, which loses the steps since the last checkpoint. Kept
  // ignored where the caller ignores them (nohup): that run goes on (docs/ux_audit.md, round 18).
  std::optional<SignalScope> stop_on_hangup(std::in_place, {SIGHUP, SIGPIPE}, on_signal,
                                            SignalScope::Ignored::Keep);
  std::ofstream log;
  if (lead) {
    log = append_log(dir);
    // What this call trains on and in (settle_precision reads it on --resume), and how its ranks
    // share the work (docs/distributed.md, "What ran").
    json j = log_row("start", tr.step_count());
    j.update({{"device", be->name()},
              {"precision", be->precision()},
              {"ranks", comm.size()},
              {"zero", tr.zero_level()},
              {"overlap", tr.overlapped()}});
    write_row(log, j, dir);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const long first = tr.step_count();
  const double fwd_flops = tr.net().forward_flops();
  Progress bar("train", s.steps, quiet, first);
  if (job.max_minutes > 0) bar.set_deadline(job.max_minutes * 60);
  LossWindow win = open_window(dir, first);
  // A stop inside a log window (the end of the run, a signal, the time limit, a failed snapshot):
  // its mean so far, and its sum, so that the first row after --resume averages the same steps as
  // a run that never stopped.
  auto log_open_window = [&](long k) {
    if (win.n == 0 || k == first || !lead) return;
    json j = log_row("train", k);
    j.update({{"loss", win.sum / win.n}, {"window_steps", win.n}, {"window_loss_sum", win.sum}});
    write_row(log, j, dir);
  };
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  const long grid_every = job.grid_every > 0 ? job.grid_every : s.eval_interval;
  long drawn_at = -1;
  // mid_run: a grid between steps, whose failure (a full disk) loses the steps since the last
  // checkpoint, said so; the final grid comes after the last save.
  auto grid = [&](bool mid_run) {
    if (!lead) return;  // the other ranks wait at the next step's collectives
    run_lock.check_in_place(dir);
    const auto or_stop = [&](const auto& write) {
      if (!mid_run) return write();
      saying(write, [&](const std::string& what) {
        return cat(what, "; the run stops: ", run_stands(dir, tr.step_count(), ""));
      });
    };
    or_stop([&] { write_loss_plot(dir); });
    if (!can_draw || drawn_at == tr.step_count()) return;
    bar.finish();  // the grid's progress goes on a line of its own
    char name[64];
    std::snprintf(name, sizeof name, "/samples/step_%07ld.png", tr.step_count());
    or_stop([&] {
      fs::create_directories(dir + "/samples");
      write_grid(tr.ema_net(), cfg, dir + name, grids.n, grids.opt, cat("grid ", name + 1), quiet);
    });
    log_event(log, dir, "sample", tr.step_count(), name + 1);
    drawn_at = tr.step_count();
  };
  bool timed_out = false;
  LimitProjection projection(job.max_minutes * 60, s.steps);
  double comm_s = 0;  // time in the data-parallel exchange (reported with several ranks)
  long saved_at = -1;  // the step of the last snapshot save, whose run files the final save holds
  // A batch the loader cannot build (a damaged image) ends the run as a signal does, with the
  // checkpoint of the last completed step, then the error: the step's batches are taken before
  // the step, so that every rank knows of any rank's failure before the step's collectives.
  std::string data_error;
  // Every rank leaves at the same step: a signal, the time limit or a data error seen by any rank
  // stops all.
  auto stop_requested = [&] {
    const std::string mine_error = tr.stage_batches();
    const int32_t mine[3] = {g_signal.load(),
                             job.max_minutes > 0 && elapsed() > job.max_minutes * 60,
                             !mine_error.empty()};
    std::vector<int32_t> all(3 * size_t(comm.size()));
    comm.allgather_bytes(mine, sizeof mine, all.data());
    int sig = 0, bad_rank = -1;
    for (size_t r = 0; r < all.size(); r += 3) {
      if (!sig) sig = all[r];
      timed_out = timed_out || all[r + 1];
      if (all[r + 2] && bad_rank < 0) bad_rank = int(r / 3);
    }
    g_signal = sig;
    if (bad_rank >= 0) {  // the first failing rank's line, to every rank (only now: a collective)
      constexpr size_t kLine = 1024;
      std::vector<char> line(kLine, '\0'), lines(kLine * size_t(comm.size()));
      mine_error.copy(line.data(), kLine - 1);
      comm.allgather_bytes(line.data(), kLine, lines.data());
      data_error = (comm.size() > 1 ? cat("rank ", bad_rank, ": ") : std::string()) +
                   std::string(lines.data() + kLine * size_t(bad_rank));
    }
    return sig != 0 || timed_out || bad_rank >= 0;
  };
  while (tr.step_count() < s.steps && !stop_requested()) {
    test_hook_die(comm, tr.step_count(), "step");
    const StepStats st = tr.step();
    UVIT_CHECK(std::isfinite(st.loss), "training diverged at step ", tr.step_count(), " (loss ",
               st.loss, ")");
    win.sum += st.loss;
    ++win.n;
    comm_s += st.comm_s;
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
    bar.update(k, extra, s.batch, "img/s");
    if (!quiet) projection.update(k, elapsed(), bar);
    if (k % s.log_interval == 0) tr.check_replicas();
    if (k % s.log_interval == 0 && lead) {
      json j = log_row("train", k);
      j.update({{"loss", win.sum / win.n},
                {"lr", st.lr},
                {"grad_norm", st.grad_norm},
                {"img_s", img_s},
                {"elapsed_s", elapsed()}});
      if (mfu > 0) j["mfu"] = mfu;
      write_row(log, j, dir);
      win = {};
    }
    if (k % s.save_interval == 0) {
      if (lead) run_lock.check_in_place(dir);
      try {
        tr.save(true);
      } catch (const std::exception&) {
        // The snapshot failed after the run's own files of this step landed (a full disk in
        // ckpts/; the trainer's line says so): log them and the loss window, as at a stop.
        bool landed = false;
        try {
          landed = lead && checkpoint_step(dir) == k;
        } catch (const std::exception&) {  // no readable checkpoint: the first error is the one
        }
        if (landed) {
          // A log that cannot take the rows (its disk full too) leaves the snapshot's error the
          // one said: RUN's checkpoint is whole, and --resume reads it without them.
          try {
            log_event(log, dir, "checkpoint", k, ".");
            log_open_window(k);
          } catch (const std::exception&) {
          }
        }
        throw;
      }
      if (lead) log_event(log, dir, "checkpoint", k, cat("ckpts/", k));
      saved_at = k;
    }
    if (k % grid_every == 0 && k < s.steps) grid(true);
  }
  bar.finish();
  if (lead) run_lock.check_in_place(dir);
  // A run that stops at its snapshot's step (the last step, a signal) has written this checkpoint:
  // saving it again would write the same bytes, and need room for a third copy (docs/cli.md).
  if (tr.step_count() != saved_at) tr.save();
  if (lead && tr.step_count() > first) log_event(log, dir, "checkpoint", tr.step_count(), ".");
  stop_on_signal.reset();
  stop_on_hangup.reset();
  const long k = tr.step_count();
  log_open_window(k);
  if (!data_error.empty())  // every rank, the same line: rank 0 prints it
    throw SameOnEveryRank(cat(data_error, "; checkpoint written at step ", k,
                              " (continue with --resume once the data is fixed)"));
  if (g_signal && lead)  // even with -q: the exit status alone does not say what happened
    std::fprintf(stderr, "interrupted: checkpoint written at step %ld; continue with --resume\n",
                 k);
  if (comm.size() > 1 && !quiet && k > first)
    std::fprintf(stderr, "data parallel: %.3f s of %.3f s in the gradient exchange (%.1f %%)\n",
                 comm_s, elapsed(), 100 * comm_s / elapsed());
  if (timed_out && !quiet)
    std::fprintf(stderr, "time limit reached at step %ld; checkpoint written\n", k);
  const bool trained = k > first;
  if (!g_signal && trained && job.final_grid)
    grid(false);
  else if (trained && lead)
    write_loss_plot(dir);
  return {k, g_signal, trained, comm.rank(), comm.size(), precision};
}

}  // namespace uvit::cli
