// GuardedArena: the reservation, the first-fit allocator, the access switch, and a SIGSEGV
// handler that names a fault inside an arena before the process dies as it would anyway.
#include "backend/simdev/guarded_arena.hpp"

#include <execinfo.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit::simdev {

namespace {
constexpr size_t kAlign = 256;  // cudaMalloc's alignment
// The unit of the access switch: 2 MiB, a transparent huge page, so that switching a large arena
// changes one page-table entry per 2 MiB, not 512 (a 5x faster DiT-S forward, docs/gpu.md).
constexpr size_t kPage = size_t{2} << 20;
constexpr int kMaxArenas = 16;

// The live arenas' ranges, read by the signal handler (lock-free).
std::atomic<uintptr_t> g_lo[kMaxArenas], g_hi[kMaxArenas];
struct sigaction g_previous;

void put(const char* s) { (void)!::write(2, s, std::strlen(s)); }

void on_segv(int sig, siginfo_t* info, void* ctx) {
  const auto a = reinterpret_cast<uintptr_t>(info->si_addr);
  for (int i = 0; i < kMaxArenas; ++i) {
    if (a < g_lo[i].load() || a >= g_hi[i].load()) continue;
    char hex[19] = "0x";
    for (int k = 0; k < 16; ++k) hex[2 + k] = "0123456789abcdef"[(a >> (60 - 4 * k)) & 15];
    hex[18] = 0;
    put("simdev: host code touched device memory at ");
    put(hex);
    put(" outside upload/download (a GPU would fault here: docs/gpu.md, \"The simulated "
        "device\"); the stack:\n");
    void* frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
    break;
  }
  // Returning re-runs the faulting access under the previous disposition (the default: the core).
  sigaction(sig, &g_previous, nullptr);
  (void)ctx;
}

void install_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    void* warm[1];
    backtrace(warm, 1);  // loads libgcc now, not inside the handler
    struct sigaction sa {};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_previous);
  });
}

void register_range(const char* lo, size_t n, bool add) {
  const auto l = reinterpret_cast<uintptr_t>(lo);
  for (int i = 0; i < kMaxArenas; ++i) {
    uintptr_t expect = add ? 0 : l;
    if (g_lo[i].compare_exchange_strong(expect, add ? l : 0)) {
      g_hi[i].store(add ? l + n : 0);
      return;
    }
  }
}
}  // namespace

GuardedArena::GuardedArena(size_t capacity)
    : capacity_((capacity + kAlign - 1) / kAlign * kAlign),
      reserved_((capacity_ + kPage - 1) / kPage * kPage) {
  void* p = mmap(nullptr, reserved_ + kPage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) fail("simdev: could not reserve ", capacity_, " bytes of address space");
  map_ = static_cast<char*>(p);
  base_ = map_ + (kPage - reinterpret_cast<uintptr_t>(map_) % kPage) % kPage;
  madvise(base_, reserved_, MADV_HUGEPAGE);  // a hint: without it the switch is slower, not wrong
  free_.emplace(0, capacity_);
  install_handler();
  register_range(base_, capacity_, true);
}

GuardedArena::~GuardedArena() {
  register_range(base_, capacity_, false);
  munmap(map_, reserved_ + kPage);
}

void GuardedArena::protect(size_t from, size_t to, bool open) {
  if (to > from && mprotect(base_ + from, to - from, open ? PROT_READ | PROT_WRITE : PROT_NONE))
    fail("simdev: mprotect failed: ", std::strerror(errno));
}

void GuardedArena::enter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (depth_++ == 0) protect(0, top_, true);
}

void GuardedArena::leave() {
  std::lock_guard<std::mutex> lock(mu_);
  if (--depth_ == 0) protect(0, top_, false);
}

void* GuardedArena::alloc(size_t n) {
  const size_t want = n == 0 ? kAlign : (n + kAlign - 1) / kAlign * kAlign;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = want < n ? free_.end() : std::find_if(free_.begin(), free_.end(), [&](const auto& f) {
    return f.second >= want;
  });
  if (it == free_.end())
    fail("out of memory: could not allocate ", n, " bytes on the simulated device (", live_, " of ",
         capacity_, " bytes in use; UVIT_SIMDEV_BYTES sets its size)");
  const size_t at = it->first, left = it->second - want;
  free_.erase(it);
  if (left) free_.emplace(at + want, left);
  used_.emplace(at, want);
  live_ += want;
  peak_ = std::max(peak_, live_);
  const size_t end = (at + want + kPage - 1) / kPage * kPage;
  if (end > top_) {
    if (depth_ > 0) protect(top_, end, true);  // an open arena stays open to its new top
    top_ = end;
  }
  return base_ + at;
}

void GuardedArena::free(void* p) {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mu_);
  const auto u = used_.find(size_t(static_cast<char*>(p) - base_));
  UVIT_CHECK(contains(p) && u != used_.end(), "simdev: free_bytes of ", p,
             ", which is not a live block of the simulated device (a double free?)");
  size_t at = u->first, n = u->second;
  used_.erase(u);
  live_ -= n;
  auto next = free_.lower_bound(at);
  if (next != free_.end() && next->first == at + n) {
    n += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == at) {
      prev->second += n;
      return;
    }
  }
  free_.emplace(at, n);
}

bool GuardedArena::inside_block(const void* p, size_t bytes) const {
  if (!contains(p)) return false;
  const size_t at = size_t(static_cast<const char*>(p) - base_);
  std::lock_guard<std::mutex> lock(mu_);
  auto u = used_.upper_bound(at);
  if (u == used_.begin()) return false;
  --u;
  return at + bytes <= u->first + u->second;
}

size_t GuardedArena::live_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return live_;
}
size_t GuardedArena::peak_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_;
}
void GuardedArena::reset_peak_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_ = live_;
}

}  // namespace uvit::simdev
