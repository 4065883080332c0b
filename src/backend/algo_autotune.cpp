#include "backend/algo_autotune.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "uvit/error.hpp"

namespace uvit {

int autotune_candidates(const char* v) {
  if (!v || !*v || std::string(v) == "0") return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  UVIT_CHECK(end && *end == '\0' && n >= 1 && n <= 64, "UVIT_CUBLASLT_AUTOTUNE='", v,
             "': expected 0 (off), 1 (time the top 16 algorithms) or a count from 2 to 64");
  return n == 1 ? 16 : int(n);
}

AutotuneChoice AlgoAutotuner::measure(int n, const Timer& time) const {
  AutotuneChoice c;
  c.ms.assign(size_t(std::max(n, 0)), -1.0);
  for (int i = 0; i < n; ++i) {
    try {
      if (time(i) < 0) continue;  // the untimed run: first-use costs, and usability
      std::vector<double> t;
      for (int r = 0; r < reps_; ++r) t.push_back(time(i));
      if (*std::min_element(t.begin(), t.end()) < 0) continue;
      std::sort(t.begin(), t.end());
      c.ms[size_t(i)] = t[t.size() / 2];
    } catch (const std::exception&) {
      c.ms[size_t(i)] = -1.0;
    }
  }
  // The fastest usable one; it must beat a usable heuristic choice by more than min_gain.
  int best = -1;
  for (int i = 0; i < n; ++i)
    if (c.ms[size_t(i)] >= 0 && (best < 0 || c.ms[size_t(i)] < c.ms[size_t(best)])) best = i;
  c.winner = best < 0 ? 0 : best;
  if (best > 0 && c.ms[0] >= 0 && c.ms[size_t(best)] > c.ms[0] * (1.0 - min_gain_)) c.winner = 0;
  return c;
}

const AutotuneChoice& AlgoAutotuner::choose(const std::string& key, int n, const Timer& time) {
  auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  order_.push_back(key);
  return cache_.emplace(key, measure(n, time)).first->second;
}

std::string AlgoAutotuner::report() const {
  std::string out;
  char buf[160];
  for (const std::string& k : order_) {
    const AutotuneChoice& c = cache_.at(k);
    int usable = 0;
    for (double m : c.ms) usable += m >= 0;
    const double h = c.heuristic_ms(), b = c.best_ms();
    if (h >= 0 && b >= 0)
      std::snprintf(buf, sizeof buf,
                    "heuristic %.4f ms, best #%d %.4f ms (%+.1f%%), %d of %zu usable", h, c.winner,
                    b, 100.0 * (b - h) / h, usable, c.ms.size());
    else
      std::snprintf(buf, sizeof buf, "heuristic unusable, #%d %.4f ms, %d of %zu usable", c.winner,
                    b, usable, c.ms.size());
    out += "  " + k + ": " + buf + "\n";
  }
  return out;
}

}  // namespace uvit
