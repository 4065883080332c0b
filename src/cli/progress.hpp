// A one-line progress display on stderr: "label k/n [extra] rate ETA". On a terminal the line is
// redrawn in place (at most 10 times a second); when stderr is a file or a pipe, plain lines at
// most every 10 seconds, plus the last one, so that logs stay readable.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

namespace uvit::cli {

class Progress {
 public:
  // `start`: the count already done when the display starts (a resumed run shows absolute steps;
  // the rate counts from `start`).
  Progress(std::string label, long total, bool quiet = false, long start = 0)
      : label_(std::move(label)),
        total_(total),
        start_(start),
        quiet_(quiet),
        tty_(isatty(2) != 0),
        t0_(clock::now()),
        last_(t0_) {}
  // An error on the way out starts on a line of its own.
  ~Progress() {
    if (tty_ && shown_ > 0) std::fprintf(stderr, "\n");
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void set_total(long total) { total_ = total; }
  // A time limit `seconds` after construction (a run bounded by time, e.g. the demo): while it
  // comes before `total`, the line shows the steps done and the time left instead of an ETA for
  // the nominal total.
  void set_deadline(double seconds) { deadline_ = seconds; }
  // `done` counts from 0 (not from `start`); `extra` is printed after the counter.
  void update(long done, const std::string& extra = "", double items_per_unit = 1,
              const char* unit = "it/s") {
    if (quiet_) return;
    const auto now = clock::now();
    line_ = format(done, extra, items_per_unit, unit, seconds(t0_, now));
    if (seconds(last_, now) >= (tty_ ? 0.1 : 10.0) || done == total_) show(now);
  }
  // Ends the display: the last state is shown and the terminal line closed.
  void finish() {
    if (quiet_) return;
    if (!line_.empty()) show(clock::now());
    if (tty_ && shown_ > 0) std::fprintf(stderr, "\n");
    shown_ = 0;
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
  static double seconds(clock::time_point a, clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }
  std::string format(long done, const std::string& extra, double per, const char* unit,
                     double s) const {
    // A negative total is not known in advance (an adaptive solver's network evaluations).
    std::string out = label_ + " " + std::to_string(done) + "/" +
                      (total_ < 0 ? std::string("? (adaptive)") : std::to_string(total_));
    if (!extra.empty()) out += " " + extra;
    // A rate from the first few milliseconds is noise (a first "1984126.98 it/s"): wait for 0.2 s.
    if (s >= 0.2 && done > start_ && total_ >= 0) {
      const double rate = (done - start_) / s;
      char b[96];
      const double left = deadline_ - s;
      if (deadline_ > 0 && (total_ - done) / rate > left) {
        std::snprintf(b, sizeof b, " %.2f %s, %s left", rate * per, unit,
                      fmt_time(left > 0 ? left : 0).c_str());
        return label_ + " " + std::to_string(done) + " done" + (extra.empty() ? "" : " " + extra) +
               b;
      }
      std::snprintf(b, sizeof b, " %.2f %s ETA %s", rate * per, unit,
                    fmt_time((total_ - done) / rate).c_str());
      out += b;
    }
    return out;
  }
  void show(clock::time_point now) {
    if (tty_) {
      // Spaces over what is left of a longer previous line.
      const size_t pad = shown_ > line_.size() ? shown_ - line_.size() : 0;
      std::fprintf(stderr, "\r%s%s", line_.c_str(), std::string(pad, ' ').c_str());
      shown_ = line_.size();
    } else {
      std::fprintf(stderr, "%s\n", line_.c_str());
      shown_ = 1;
    }
    std::fflush(stderr);
    line_.clear();
    last_ = now;
  }

  std::string label_;
  long total_, start_;
  double deadline_ = 0;  // seconds; 0 = none
  bool quiet_, tty_;
  clock::time_point t0_, last_;
  std::string line_;  // the latest state, not yet shown
  size_t shown_ = 0;  // characters on the terminal line (tty), or whether anything was printed
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
