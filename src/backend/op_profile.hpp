// The host half of UVIT_CUDA_OPTIME (src/backend/cuda/op_timer.hpp; docs/gpu.md, "Profiling"):
// sums the GPU time of each timed operation by name ("kind shape...") and by kind (the name's
// first word), cut into intervals at each Backend::synchronize() (in `uvit bench` one interval is
// one timed iteration), and formats the report, slowest first. The first interval (construction,
// uploads, warm-up) is left out of the per-interval figures whenever later ones exist. The wall
// clock is injected so that the aggregation is testable without a GPU.
#pragma once
#include <functional>
#include <map>
#include <string>

namespace uvit {

class OpProfile {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic
  explicit OpProfile(Clock wall_clock);

  // One timed operation of `ms` GPU milliseconds.
  void add(const std::string& name, double ms);
  // A host-side event worth counting (a cudaMalloc, a blocking copy): it shows in the gap.
  void count(const std::string& what);
  // A synchronize() returned: closes the current interval at the wall clock's time.
  void end_interval();

  // Intervals closed so far, the first included.
  int intervals() const { return intervals_; }
  // The report: per interval (the steady ones when there are any, else everything timed), the wall
  // time, the timed total and the gap, then the kinds and the names, each sorted by time.
  std::string report() const;

 private:
  struct Sum {
    double ms = 0;
    long calls = 0;
  };
  using Table = std::map<std::string, Sum>;
  Clock clock_;
  double last_sync_ = 0;  // the clock at the previous end_interval (or at construction)
  int intervals_ = 0;
  Table current_, first_, steady_;  // the open interval; the first closed one; the others
  std::map<std::string, long> counts_current_, counts_first_, counts_steady_;
  double wall_first_ = 0, wall_steady_ = 0;
};

}  // namespace uvit
