// Opt-in algorithm autotuning (UVIT_CUBLASLT_AUTOTUNE; docs/gpu.md, "GEMM autotuning"): the
// candidates a library's heuristic offers, in its order, are each timed and the fastest kept for
// the process, as PyTorch's cudnn.benchmark does. Host-only: the timer is injected (the CUDA GEMM
// wrapper passes one that runs an algorithm between two events; the tests pass a fake one).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace uvit {

// UVIT_CUBLASLT_AUTOTUNE's value -> how many heuristic candidates to time (0: off). Unset, "" and
// "0" are off, "1" is the default 16, 2..64 that many; anything else is an error naming the
// variable.
int autotune_candidates(const char* env_value);

struct AutotuneChoice {
  int winner = 0;          // index into the candidates (0: the heuristic's own choice)
  std::vector<double> ms;  // per candidate: the median of the timed runs; negative: unusable
  double heuristic_ms() const { return ms.empty() ? -1 : ms[0]; }
  double best_ms() const { return ms.empty() ? -1 : ms[size_t(winner)]; }
};

class AlgoAutotuner {
 public:
  // Milliseconds of one run of candidate i; a negative value (or an exception) marks it unusable.
  using Timer = std::function<double(int)>;
  // reps timed runs per candidate after one untimed run; a challenger replaces the heuristic's
  // choice only when it is faster by more than min_gain (a fraction): timing noise must not trade
  // a known algorithm for an equal one.
  explicit AlgoAutotuner(int reps = 3, double min_gain = 0.01) : reps_(reps), min_gain_(min_gain) {}

  // The cached choice for `key`, or the result of timing its n candidates (cached).
  const AutotuneChoice& choose(const std::string& key, int n, const Timer& time);
  bool has(const std::string& key) const { return cache_.count(key) != 0; }
  // Every choice in the order it was made, one line each (heuristic vs best, ms and gain).
  std::string report() const;
  const std::vector<std::string>& keys() const { return order_; }
  const AutotuneChoice& at(const std::string& key) const { return cache_.at(key); }

 private:
  AutotuneChoice measure(int n, const Timer& time) const;
  int reps_;
  double min_gain_;
  std::map<std::string, AutotuneChoice> cache_;
  std::vector<std::string> order_;
};

}  // namespace uvit
