// train.overlap (docs/distributed.md, "Overlap"): the data-parallel exchange of gradient ranges a
// network's backward announces final, run on a communication thread while backward goes on.
#pragma once
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace uvit {

class GradOverlap {
 public:
  // exchange(lo, hi) runs for each range, in the order announced: on the communication thread,
  // or (not `concurrent`: train.zero=2 without the overlap) in ready() on the announcing thread,
  // while backward waits.
  using Exchange = std::function<void(size_t lo, size_t hi)>;
  explicit GradOverlap(Exchange exchange, bool concurrent = true);
  ~GradOverlap();  // waits for the thread (which then ends)
  GradOverlap(const GradOverlap&) = delete;
  GradOverlap& operator=(const GradOverlap&) = delete;

  // A backward over a gradient of n floats starts: no range of it is exchanged yet.
  void begin(size_t n);
  // [lo, hi) is final: queued for the thread (or exchanged now). Throws when it is outside [0, n)
  // or meets a range announced before (a network bug: the sum would be taken twice).
  void ready(size_t lo, size_t hi);
  // Backward has returned: the parts of [0, n) never announced are queued in ascending order, then
  // waits until every range is exchanged. Rethrows the thread's error.
  void finish();
  // Tests: UVIT_TEST_OVERLAP_SYNC=1 makes ready() wait until its range is exchanged, so that a
  // range announced before its gradient is final always gives other bits (unsynchronised, that
  // race is usually won by the small test models' backward).
  // The ranges exchanged in the last backward, in order (the tests' view).
  const std::vector<std::pair<size_t, size_t>>& ranges() const { return ranges_; }

 private:
  void run();
  void exchange(size_t lo, size_t hi);  // one range; the first error is kept, the rest skipped
  Exchange exchange_;
  size_t n_ = 0;
  std::vector<std::pair<size_t, size_t>> ranges_;  // announced, in order
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<size_t, size_t>> queue_;
  size_t pending_ = 0;  // queued or running
  bool stop_ = false;
  bool sync_ = false;  // UVIT_TEST_OVERLAP_SYNC
  std::exception_ptr error_;
  std::thread thread_;  // last: starts once the members above exist; none when not concurrent
};

}  // namespace uvit
