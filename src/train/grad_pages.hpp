// train.zero=2 (docs/distributed.md, "ZeRO-2"): the network's flat gradient in an anonymous
// mapping whose pages go back to the system once their floats are reduced, so that a rank holds
// only the gradient backward has written and not yet exchanged (plus its reduced shard).
#pragma once
#include <cstddef>
#include <map>

namespace uvit {

class GradPages {
 public:
  explicit GradPages(size_t n);  // n floats, zero
  ~GradPages();
  GradPages(const GradPages&) = delete;
  GradPages& operator=(const GradPages&) = delete;

  float* data() const { return p_; }
  // Every page released: the next touch reads zeros (private anonymous memory), the same zeros
  // a fill would write without committing a page. Forgets the reduced ranges (a new backward).
  void clear();
  // Floats [lo, hi) are reduced and no longer read: the whole pages all of whose floats are
  // reduced are released (a page shared with a range still being written is released with the
  // later of the two).
  void reduced(size_t lo, size_t hi);

 private:
  void release(size_t lo, size_t hi);  // whole pages within floats [lo, hi)
  void* map_ = nullptr;  // the mapping, map_bytes_ long; p_ its first huge-page boundary
  size_t map_bytes_ = 0;
  float* p_ = nullptr;
  size_t n_ = 0, bytes_ = 0, page_ = 0;  // page_: floats per page
  std::map<size_t, size_t> done_;        // reduced floats, merged: lo -> hi
};

}  // namespace uvit
