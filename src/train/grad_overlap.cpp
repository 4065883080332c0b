#include "train/grad_overlap.hpp"

#include <algorithm>
#include <cstdlib>

#include "uvit/error.hpp"

namespace uvit {

GradOverlap::GradOverlap(Exchange exchange, bool concurrent)
    : exchange_(std::move(exchange)),
      thread_(concurrent ? std::thread([this] { run(); }) : std::thread()) {
  const char* s = std::getenv("UVIT_TEST_OVERLAP_SYNC");
  sync_ = s && *s && *s != '0';
}

GradOverlap::~GradOverlap() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void GradOverlap::exchange(size_t lo, size_t hi) {
  if (error_) return;  // after a failure the rest is only drained
  try {
    exchange_(lo, hi);
  } catch (...) {
    error_ = std::current_exception();
  }
}

void GradOverlap::run() {
  std::unique_lock<std::mutex> l(mu_);
  for (;;) {
    cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_, nothing left
    const auto [lo, hi] = queue_.front();
    queue_.pop_front();
    l.unlock();
    exchange(lo, hi);  // error_: the main thread reads it only once pending_ is 0
    l.lock();
    --pending_;
    cv_.notify_all();
  }
}

void GradOverlap::begin(size_t n) {
  n_ = n;
  ranges_.clear();
}

void GradOverlap::ready(size_t lo, size_t hi) {
  UVIT_CHECK(lo < hi && hi <= n_, "gradient range [", lo, ", ", hi,
             ") announced by backward is not within [0, ", n_, ")");
  for (const auto& [a, b] : ranges_)
    UVIT_CHECK(hi <= a || b <= lo, "gradient range [", lo, ", ", hi,
               ") announced by backward meets [", a, ", ", b, ") announced before");
  ranges_.emplace_back(lo, hi);
  if (!thread_.joinable()) {
    exchange(lo, hi);
    return;
  }
  std::unique_lock<std::mutex> l(mu_);
  queue_.emplace_back(lo, hi);
  ++pending_;
  cv_.notify_all();
  if (sync_) cv_.wait(l, [&] { return pending_ == 0; });
}

void GradOverlap::finish() {
  std::vector<std::pair<size_t, size_t>> done = ranges_;
  std::sort(done.begin(), done.end());
  size_t at = 0;
  for (const auto& [a, b] : done) {
    if (a > at) ready(at, a);
    at = b;
  }
  if (at < n_) ready(at, n_);
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return pending_ == 0; });
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace uvit
