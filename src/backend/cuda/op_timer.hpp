// UVIT_CUDA_OPTIME=1: the GPU time of every Backend operation by kind and shape, cut into
// intervals at each synchronize(), printed to stderr (op_profile.hpp formats it) when the backend
// is destroyed; docs/gpu.md, "Profiling", says how to read it. Each outermost operation is
// bracketed by two CUDA events on the default stream; nothing waits for them until the next
// synchronize() (or every kMaxPending operations), so the timed run keeps its launch pipeline and
// the gap between the interval's wall time and the sum of the operations is the launch and host
// overhead. Off (the default), a scope costs one branch and builds no name.
#pragma once
#include <cuda_runtime.h>

#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "backend/op_profile.hpp"
#include "uvit/error.hpp"

namespace uvit::cuda {

class OpTimes {
 public:
  OpTimes();  // reads UVIT_CUDA_OPTIME
  ~OpTimes();
  OpTimes(const OpTimes&) = delete;
  OpTimes& operator=(const OpTimes&) = delete;

  bool on() const { return on_; }
  // An operation starts: the start event when it is the outermost one, else nullptr (nested
  // operations are part of their caller's time).
  cudaEvent_t begin();
  void end(cudaEvent_t start, std::string name);
  // A host event that costs wall time (a cudaMalloc, a blocking copy).
  void count(const char* what);
  // After a device-wide synchronisation: resolves the pending events and closes the interval.
  void synchronized();

 private:
  struct Pending {
    std::string name;
    cudaEvent_t a, b;
  };
  static constexpr size_t kMaxPending = 16384;
  cudaEvent_t take();
  void resolve();

  bool on_ = false;
  int depth_ = 0;
  std::vector<cudaEvent_t> free_, all_;
  std::vector<Pending> pending_;
  std::unique_ptr<OpProfile> profile_;
};

// Times its scope when the timer is on; `name` (a callable returning the name) only runs then.
template <class Name>
class OpScope {
 public:
  OpScope(OpTimes& t, Name&& name) : t_(t), name_(std::forward<Name>(name)) {
    if (t_.on()) start_ = t_.begin();
  }
  ~OpScope() {
    if (t_.on()) t_.end(start_, start_ ? name_() : std::string());
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  OpTimes& t_;
  std::decay_t<Name> name_;
  cudaEvent_t start_ = nullptr;
};

template <class Name>
OpScope(OpTimes&, Name&&) -> OpScope<Name>;

}  // namespace uvit::cuda

// Times the enclosing Backend operation; the arguments make its name with cat() (only when timing):
// the kind first, then the shape.
#define UVIT_OPTIME(timer, ...) \
  ::uvit::cuda::OpScope uvit_optime_scope_((timer), [&] { return ::uvit::cat(__VA_ARGS__); })
