#include "train/grad_pages.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit {

GradPages::GradPages(size_t n) : n_(n) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  page_ = page / sizeof(float);
  bytes_ = std::max<size_t>(1, (n * sizeof(float) + page - 1) / page) * page;
  void* p = mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  UVIT_CHECK(p != MAP_FAILED, "train.zero=2: cannot map ", bytes_,
             " bytes for the gradient: ", std::strerror(errno));
  p_ = static_cast<float*>(p);
}

GradPages::~GradPages() { munmap(p_, bytes_); }

void GradPages::release(size_t lo, size_t hi) {
  // The tail past n is never written: the last page counts as whole when hi reaches n.
  const size_t a = (lo + page_ - 1) / page_,
               b = hi >= n_ ? bytes_ / sizeof(float) / page_ : hi / page_;
  if (a >= b) return;
  UVIT_CHECK(madvise(p_ + a * page_, (b - a) * page_ * sizeof(float), MADV_DONTNEED) == 0,
             "train.zero=2: madvise(MADV_DONTNEED) of the gradient failed: ", std::strerror(errno));
}

void GradPages::clear() {
  done_.clear();
  release(0, n_);
}

void GradPages::reduced(size_t lo, size_t hi) {
  if (lo >= hi) return;
  // Merge [lo, hi) with the reduced ranges it touches.
  size_t a = lo, b = hi;
  auto it = done_.upper_bound(lo);
  if (it != done_.begin() && std::prev(it)->second >= lo) --it;
  while (it != done_.end() && it->first <= hi) {
    a = std::min(a, it->first);
    b = std::max(b, it->second);
    it = done_.erase(it);
  }
  done_[a] = b;
  // Only the pages that meet [lo, hi) can have become whole: the one page each side that it
  // shares with a neighbour, and those inside.
  release(std::max(a, lo / page_ * page_), std::min(b, (hi + page_ - 1) / page_ * page_));
}

}  // namespace uvit
