// UVIT_CUDA_OPTIME=1: the GPU time of each encoder operation (by kind and shape), summed over the
// run and printed to stderr, slowest first, when the backend is destroyed. A tuning aid for
// machines without Nsight: every timed operation is synchronised (cudaEventSynchronize), so the
// whole run is slower while it is on. Off (the default), a scope costs one branch.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace uvit::cuda {

class OpTimes {
 public:
  OpTimes() {
    const char* e = std::getenv("UVIT_CUDA_OPTIME");
    on_ = e && *e && std::string(e) != "0";
  }
  ~OpTimes() {
    if (!on_ || ms_.empty()) return;
    std::vector<std::pair<std::string, std::pair<double, long>>> v(ms_.begin(), ms_.end());
    std::sort(v.begin(), v.end(),
              [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
    double total = 0;
    for (const auto& kv : v) total += kv.second.first;
    std::fprintf(stderr, "uvit cuda op times (UVIT_CUDA_OPTIME): %.2f ms in all\n", total);
    for (const auto& [name, t] : v)
      std::fprintf(stderr, "  %9.3f ms %6ld x  %s\n", t.first, t.second, name.c_str());
  }
  bool on() const { return on_; }
  void add(const std::string& name, double ms) {
    auto& t = ms_[name];
    t.first += ms;
    t.second += 1;
  }

 private:
  bool on_ = false;
  std::map<std::string, std::pair<double, long>> ms_;
};

// Times its scope on the default stream when the timer is on; `name` is only built then.
template <class Name>
class OpScope {
 public:
  OpScope(OpTimes& t, Name&& name) : t_(t) {
    if (!t_.on()) return;
    name_ = name();
    cudaEventCreate(&a_);
    cudaEventCreate(&b_);
    cudaEventRecord(a_, 0);
  }
  ~OpScope() {
    if (!t_.on()) return;
    cudaEventRecord(b_, 0);
    cudaEventSynchronize(b_);
    float ms = 0;
    cudaEventElapsedTime(&ms, a_, b_);
    t_.add(name_, ms);
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  OpTimes& t_;
  std::string name_;
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

template <class Name>
OpScope(OpTimes&, Name&&) -> OpScope<Name>;

}  // namespace uvit::cuda
