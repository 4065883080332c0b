#include "backend/op_profile.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <utility>
#include <vector>

namespace uvit {

namespace {

__attribute__((format(printf, 1, 2))) std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

}  // namespace

OpProfile::OpProfile(Clock wall_clock) : clock_(std::move(wall_clock)), last_sync_(clock_()) {}

void OpProfile::add(const std::string& name, double ms) {
  Sum& s = current_[name];
  s.ms += ms;
  s.calls += 1;
}

void OpProfile::count(const std::string& what) { ++counts_current_[what]; }

void OpProfile::end_interval() {
  const double now = clock_();
  const double wall_ms = 1e3 * (now - last_sync_);
  last_sync_ = now;
  Table& into = intervals_ == 0 ? first_ : steady_;
  auto& counts = intervals_ == 0 ? counts_first_ : counts_steady_;
  (intervals_ == 0 ? wall_first_ : wall_steady_) += wall_ms;
  for (const auto& [name, s] : current_) {
    into[name].ms += s.ms;
    into[name].calls += s.calls;
  }
  for (const auto& [what, n] : counts_current_) counts[what] += n;
  current_.clear();
  counts_current_.clear();
  ++intervals_;
}

std::string OpProfile::report() const {
  // What the figures cover: the steady intervals, or (without any) everything timed so far.
  const bool steady = intervals_ >= 2;
  Table ops = steady ? steady_ : first_;
  std::map<std::string, long> counts = steady ? counts_steady_ : counts_first_;
  double wall = steady ? wall_steady_ : wall_first_;
  if (!steady) {
    for (const auto& [name, s] : current_) {
      ops[name].ms += s.ms;
      ops[name].calls += s.calls;
    }
    for (const auto& [what, n] : counts_current_) counts[what] += n;
    wall += 1e3 * (clock_() - last_sync_);
  }
  const double per = steady ? double(intervals_ - 1) : 1.0;
  Table kinds;
  double timed = 0;
  for (const auto& [name, s] : ops) {
    Sum& k = kinds[name.substr(0, name.find(' '))];
    k.ms += s.ms;
    k.calls += s.calls;
    timed += s.ms;
  }
  auto sorted = [](const Table& t) {
    std::vector<std::pair<std::string, Sum>> v(t.begin(), t.end());
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
    return v;
  };
  const double pct = timed > 0 ? 100.0 / timed : 0.0;
  std::string out = "uvit cuda op profile (UVIT_CUDA_OPTIME): ";
  if (steady) {
    out +=
        fmt("per interval, the mean of %.0f intervals between synchronize() calls after the "
            "first (construction, uploads, warm-up: %.2f ms wall, left out)\n",
            per, wall_first_);
  } else {
    out += "everything timed (no synchronize() interval after the first)\n";
  }
  out +=
      fmt("  wall %.3f ms, timed operations %.3f ms (%.1f%%), gap %.3f ms (launch and host "
          "overhead, untimed work)\n",
          wall / per, timed / per, wall > 0 ? 100.0 * timed / wall : 0.0, (wall - timed) / per);
  for (const auto& [what, n] : counts)
    out += fmt("  host: %.1f x %s per interval\n", double(n) / per, what.c_str());
  out += "by kind:\n       ms     %   calls  kind\n";
  for (const auto& [kind, s] : sorted(kinds))
    out += fmt("  %9.3f %5.1f %7.1f  %s\n", s.ms / per, s.ms * pct, double(s.calls) / per,
               kind.c_str());
  out += "by operation and shape:\n       ms     %   calls  us/call  operation\n";
  for (const auto& [name, s] : sorted(ops))
    out += fmt("  %9.3f %5.1f %7.1f %8.1f  %s\n", s.ms / per, s.ms * pct, double(s.calls) / per,
               1e3 * s.ms / double(s.calls), name.c_str());
  return out;
}

}  // namespace uvit
