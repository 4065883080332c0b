#include "backend/cuda/op_timer.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace uvit::cuda {

namespace {
double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

OpTimes::OpTimes() {
  const char* e = std::getenv("UVIT_CUDA_OPTIME");
  on_ = e && *e && std::string(e) != "0";
  if (on_) profile_ = std::make_unique<OpProfile>(steady_seconds);
}

OpTimes::~OpTimes() {
  if (!on_) return;
  resolve();
  std::fprintf(stderr, "%s", profile_->report().c_str());
  for (cudaEvent_t e : all_) cudaEventDestroy(e);
}

cudaEvent_t OpTimes::take() {
  if (free_.empty()) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) {
      (void)cudaGetLastError();
      return nullptr;
    }
    all_.push_back(e);
    return e;
  }
  cudaEvent_t e = free_.back();
  free_.pop_back();
  return e;
}

cudaEvent_t OpTimes::begin() {
  if (depth_++ > 0) return nullptr;
  cudaEvent_t a = take();
  if (a) cudaEventRecord(a, 0);
  return a;
}

void OpTimes::end(cudaEvent_t start, std::string name) {
  --depth_;
  if (!start) return;
  cudaEvent_t b = take();
  if (!b) {
    free_.push_back(start);
    return;
  }
  cudaEventRecord(b, 0);
  pending_.push_back({std::move(name), start, b});
  if (pending_.size() >= kMaxPending) resolve();
}

void OpTimes::count(const char* what) {
  if (on_) profile_->count(what);
}

void OpTimes::synchronized() {
  if (!on_) return;
  resolve();
  profile_->end_interval();
}

void OpTimes::resolve() {
  if (pending_.empty()) return;
  cudaEventSynchronize(pending_.back().b);
  for (Pending& p : pending_) {
    float ms = 0;
    if (cudaEventElapsedTime(&ms, p.a, p.b) == cudaSuccess)
      profile_->add(p.name, ms);
    else
      (void)cudaGetLastError();
    free_.push_back(p.a);
    free_.push_back(p.b);
  }
  pending_.clear();
}

}  // namespace uvit::cuda
