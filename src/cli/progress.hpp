// The progress display on stderr (docs/cli.md). On a terminal, tqdm's layout redrawn in place
// at most 10 times a second:
//   sample  43%|████▎     | 43/100 [00:12<00:16, 3.51it/s]
// When stderr is a file or a pipe, or a terminal that cannot move its cursor (TERM=dumb: Emacs'
// M-x shell, some CI consoles), plain lines with no '\r' nor escape, one when 10 % more of the
// total is done or 30 s have passed since the last one, whichever comes first, plus the last:
//   sample 43/100 (43%) 3.51 it/s elapsed 0:12 eta 0:16
// The formatting and the throttle are pure functions of the state and an injected clock, so the
// unit tests (tests/unit/test_progress.cpp) need no timing.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

namespace uvit::cli {

// What one progress line shows.
struct ProgressState {
  std::string label;
  long done = 0, total = 0;   // total < 0: not known in advance (an adaptive solver)
  long start = 0;             // done when the display started (a resumed run): rates count from it
  double elapsed = 0;         // seconds since the display started
  std::string extra;          // after the rate ("loss 0.1234")
  double items_per_unit = 1;  // items per counted unit ("img/s" = batch images per step)
  std::string unit = "it/s";  // the items' rate unit, shown beside it/s when not "it/s"
  double deadline = 0;        // seconds after the start when a time-bounded run stops; 0: none
};

// tqdm's clock: "00:12", "59:59", "1:02:03".
inline std::string progress_clock(double seconds) {
  const long t = std::lround(std::max(0.0, seconds));
  char b[32];
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%02ld:%02ld", t / 60, t % 60);
  return b;
}

namespace progress_detail {
// Steps per second, once one can be trusted: the first 0.2 s give noise (a first "1984126.98
// it/s"). 0 = not known yet.
inline double rate(const ProgressState& s) {
  return s.elapsed >= 0.2 && s.done > s.start ? (s.done - s.start) / s.elapsed : 0;
}
inline std::string num(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}
// "3.51it/s", "2.50s/it" (below one step a second, as tqdm and sd.cpp), "?it/s" (not known yet).
inline std::string step_rate(double r) {
  if (r <= 0) return "?it/s";
  return r >= 1 ? num("%.2f", r) + "it/s" : num("%.2f", 1 / r) + "s/it";
}
// ", 248 img/s" when the counted steps carry several items each.
inline std::string item_rate(const ProgressState& s, double r) {
  if (r <= 0 || (s.unit == "it/s" && s.items_per_unit == 1)) return "";
  const double v = r * s.items_per_unit;
  return ", " + num(v >= 100 ? "%.0f" : "%.2f", v) + " " + s.unit;
}
// A time-bounded run (the demo) that stops before its nominal total: the seconds it has left, or
// -1 when the total comes first (or no deadline is set), so an ETA for the total means something.
inline double time_left(const ProgressState& s, double r) {
  if (s.deadline <= 0 || s.total < 0) return -1;
  const double left = std::max(0.0, s.deadline - s.elapsed);
  return r > 0 && (s.total - s.done) / r <= left ? -1 : left;
}
}  // namespace progress_detail

// The terminal line: "label  43%|████▎     | 43/100 [00:12<00:16, 3.51it/s, extra]", a 10-cell
// bar in eighths of a cell; with an unknown total tqdm's "label 43it [00:12, 3.51it/s]".
inline std::string progress_bar_line(const ProgressState& s) {
  using namespace progress_detail;
  const double r = rate(s);
  const std::string tail = item_rate(s, r) + (s.extra.empty() ? "" : ", " + s.extra) + "]";
  if (s.total < 0)
    return s.label + " " + std::to_string(s.done) + "it [" + progress_clock(s.elapsed) + ", " +
           step_rate(r) + tail;
  if (const double left = time_left(s, r); left >= 0)
    return s.label + " " + std::to_string(s.done) + " done [" + progress_clock(s.elapsed) + ", " +
           progress_clock(left) + " left, " + step_rate(r) + tail;
  const double frac = s.total > 0 ? std::min(1.0, std::max(0.0, double(s.done) / s.total)) : 1;
  static const char* const eighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
  // 1e-9: 0.12 * 10 is 1.1999999999999999556, which is 1.2 cells, not 1.19.
  const int cells = 10, full = int(frac * cells + 1e-9);
  const int part = full < cells ? std::max(0, int((frac * cells - full) * 8 + 1e-9)) : 0;
  std::string bar;
  for (int i = 0; i < full; ++i) bar += "█";
  bar += eighths[part];
  const int used = full + (part > 0);
  bar += std::string(size_t(cells - used), ' ');
  char pct[16];
  std::snprintf(pct, sizeof pct, "%3d%%", int(frac * 100 + 1e-9));
  const std::string left = r > 0 && s.done < s.total ? progress_clock((s.total - s.done) / r)
                           : s.done >= s.total       ? "00:00"
                                                     : "?";
  return s.label + " " + pct + "|" + bar + "| " + std::to_string(s.done) + "/" +
         std::to_string(s.total) + " [" + progress_clock(s.elapsed) + "<" + left + ", " +
         step_rate(r) + tail;
}

// The plain line for logs: "label 43/100 (43%) extra 3.51 it/s elapsed 0:12 eta 0:16" (the rate
// and eta once known; "?" totals for an adaptive solver).
inline std::string progress_plain_line(const ProgressState& s) {
  using namespace progress_detail;
  const double r = rate(s);
  const double left = time_left(s, r);
  std::string out = s.label + " " + std::to_string(s.done);
  if (left >= 0)
    out += " done";
  else
    out += "/" + (s.total < 0 ? std::string("? (adaptive)") : std::to_string(s.total));
  if (s.total > 0 && left < 0) out += " (" + std::to_string(int(100.0 * s.done / s.total)) + "%)";
  if (!s.extra.empty()) out += " " + s.extra;
  if (r > 0) {
    out += r >= 1 ? num(" %.2f it/s", r) : num(" %.2f s/it", 1 / r);
    const std::string items = item_rate(s, r);
    if (!items.empty()) out += " " + items.substr(2);
  }
  // "0:12" rather than tqdm's "00:12": the log's own spelling (ecosystem R3).
  const auto clock = [](double t) {
    const std::string c = progress_clock(t);
    return c.size() == 5 && c[0] == '0' ? c.substr(1) : c;
  };
  out += " elapsed " + clock(s.elapsed);
  if (left >= 0)
    out += ", " + clock(left) + " left";
  else if (r > 0 && s.total >= 0)
    out += " eta " + clock(std::max(0L, s.total - s.done) / r);
  return out;
}

// When a plain (non-terminal) display prints: the first update, then whenever 10 % more of the
// total is done or 30 s have passed since the last line, whichever comes first, and always at the
// total. So a log gets at most about 10 + minutes * 2 lines, and a long stage a line every 30 s.
class PlainThrottle {
 public:
  static constexpr double kSeconds = 30, kFraction = 0.1;
  bool due(long done, long total, double now) const {
    if (!any_) return true;
    if (total >= 0 && done >= total) return done != last_done_;
    const bool step = total > 0 && done - last_done_ >= kFraction * total;
    return step || now - last_time_ >= kSeconds;
  }
  void shown(long done, double now) { any_ = true, last_done_ = done, last_time_ = now; }

 private:
  bool any_ = false;
  long last_done_ = 0;
  double last_time_ = 0;
};

// Whether stderr takes the redrawn bar: a terminal that understands '\r' and "\033[K" (not
// TERM=dumb, which prints the escape as text).
inline bool stderr_redraws() {
  const char* term = std::getenv("TERM");
  return isatty(2) != 0 && !(term && std::strcmp(term, "dumb") == 0);
}

// Where a Progress writes and what time it is: stderr and the steady clock, or a test's own.
struct ProgressIo {
  bool tty = stderr_redraws();
  std::function<double()> seconds;                // monotonic seconds; empty: the steady clock
  std::function<void(const std::string&)> write;  // empty: stderr (flushed)
};

class Progress {
 public:
  // `start`: the count already done when the display starts (a resumed run shows absolute steps;
  // the rate counts from `start`).
  Progress(std::string label, long total, bool quiet = false, long start = 0,
           ProgressIo io = ProgressIo{})
      : io_(std::move(io)), quiet_(quiet) {
    if (!io_.seconds) {
      const auto t0 = std::chrono::steady_clock::now();
      io_.seconds = [t0] {
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      };
    }
    if (!io_.write)
      io_.write = [](const std::string& s) {
        std::fputs(s.c_str(), stderr);
        std::fflush(stderr);
      };
    st_.label = std::move(label);
    st_.total = total;
    st_.start = start;
    t0_ = io_.seconds();
  }
  // An error on the way out starts on a line of its own.
  ~Progress() {
    if (io_.tty && shown_ > 0) io_.write("\n");
  }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void set_total(long total) { st_.total = total; }
  // A time limit `seconds` after construction (a run bounded by time, e.g. the demo): while it
  // comes before the total, the line shows the steps done and the time left instead of an ETA for
  // the nominal total.
  void set_deadline(double seconds) { st_.deadline = seconds; }
  // `done` counts from 0 (not from `start`); `extra` is printed after the rate; the rate is also
  // shown as `items_per_unit` items per step in `unit`.
  void update(long done, const std::string& extra = "", double items_per_unit = 1,
              const char* unit = "it/s") {
    if (quiet_) return;
    const double now = io_.seconds();
    st_.done = done, st_.extra = extra, st_.items_per_unit = items_per_unit, st_.unit = unit;
    st_.elapsed = now - t0_;
    pending_ = true;
    const bool at_end = st_.total >= 0 && done >= st_.total;
    if (io_.tty ? (now - last_ >= 0.1 || at_end) : plain_.due(done, st_.total, now)) show(now);
  }
  // Ends the display: the last state is shown and the terminal line closed.
  void finish() {
    if (quiet_) return;
    if (pending_) show(io_.seconds());
    if (io_.tty && shown_ > 0) io_.write("\n");
    shown_ = 0;
  }
  // "1m05s", "2h03m": a duration in a sentence (kept for callers outside the bar).
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
  void show(double now) {
    if (io_.tty) {
      // "\033[K" clears what is left of a longer previous line.
      std::string line = "\r";
      line += progress_bar_line(st_);
      line += "\033[K";
      io_.write(line);
      shown_ = 1;
    } else {
      io_.write(progress_plain_line(st_) + "\n");
      plain_.shown(st_.done, now);
      shown_ = 1;
    }
    pending_ = false;
    last_ = now;
  }

  ProgressIo io_;
  bool quiet_;
  ProgressState st_;
  PlainThrottle plain_;
  double t0_ = 0, last_ = -1;
  bool pending_ = false;  // a state not shown yet
  size_t shown_ = 0;      // whether a line is on the terminal (tty) or anything was printed
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
