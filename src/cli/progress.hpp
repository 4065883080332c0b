// A one-line progress display on stderr: "label  k/n  [extra]  rate  ETA".
#pragma once
#include <chrono>
#include <cstdio>
#include <string>

namespace uvit::cli {

class Progress {
 public:
  Progress(std::string label, long total, bool quiet = false)
      : label_(std::move(label)), total_(total), quiet_(quiet), t0_(clock::now()) {}
  // `done` counts from the start of this display; `extra` is printed after the counter.
  void update(long done, const std::string& extra = "", double items_per_unit = 1,
              const char* unit = "it/s") {
    if (quiet_) return;
    const double s = std::chrono::duration<double>(clock::now() - t0_).count();
    const double rate = s > 0 ? done / s : 0;
    const double eta = rate > 0 ? (total_ - done) / rate : 0;
    std::fprintf(stderr, "\r%s %ld/%ld %s %.2f %s ETA %s   ", label_.c_str(), done, total_,
                 extra.c_str(), rate * items_per_unit, unit, fmt_time(eta).c_str());
    std::fflush(stderr);
  }
  void finish() {
    if (!quiet_) std::fprintf(stderr, "\n");
  }
  static std::string fmt_time(double s) {
    char b[32];
    const long t = long(s + 0.5);
    if (t >= 3600)
      std::snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else
      std::snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
    return b;
  }

 private:
  using clock = std::chrono::steady_clock;
  std::string label_;
  long total_;
  bool quiet_;
  clock::time_point t0_;
};

// Items per second after the first progress report: the first batch also pays one-time set-up
// (library handles, lazy kernel loading, algorithm choice), which a benchmark against a warmed-up
// PyTorch twin leaves out. 0 until two reports have come.
class SteadyRate {
 public:
  void update(long done) {
    const auto now = clock::now();
    if (!started_) started_ = true, t0_ = now, n0_ = done;
    t_ = now, n_ = done;
  }
  double per_second() const {
    const double s = std::chrono::duration<double>(t_ - t0_).count();
    return s > 0 ? (n_ - n0_) / s : 0;
  }

 private:
  using clock = std::chrono::steady_clock;
  bool started_ = false;
  clock::time_point t0_, t_;
  long n0_ = 0, n_ = 0;
};

}  // namespace uvit::cli
