#include "train/grad_pages.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit {

namespace {
// Transparent huge pages: each step faults the gradient in again, and with 4 KB pages that is two
// faults a page (the accumulating GEMMs read first: the zero page, then a private copy), which
// cost more than the fill it replaces; with 2 MB pages it costs about the fill
// (docs/benchmarks.md, "ZeRO-2"). Releases stay at 4 KB: the kernel splits a huge page.
constexpr size_t kHuge = size_t(2) << 20;
}  // namespace

GradPages::GradPages(size_t n) : n_(n) {
  const size_t page = size_t(sysconf(_SC_PAGESIZE));
  page_ = page / sizeof(float);
  bytes_ = std::max<size_t>(1, (n * sizeof(float) + page - 1) / page) * page;
  map_bytes_ = bytes_ + kHuge;  // room to start at a huge-page boundary
  void* m = mmap(nullptr, map_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  UVIT_CHECK(m != MAP_FAILED, "train.zero=2: cannot map ", map_bytes_,
             " bytes for the gradient: ", std::strerror(errno));
  map_ = m;
  p_ = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(m) + kHuge - 1) / kHuge * kHuge);
  madvise(p_, bytes_, MADV_HUGEPAGE);  // a hint: without THP (or "never") 4 KB pages serve
}

GradPages::~GradPages() { munmap(map_, map_bytes_); }

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
