// The simulated device's memory (docs/gpu.md, "The simulated device"): one reserved address range
// that host code cannot touch. It is PROT_NONE except while a backend call is running (Open), so
// a host read or write of "device" memory outside upload/download faults at the line that does
// it, as it would on a GPU. First-fit allocation inside it, 256-byte aligned as cudaMalloc's.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>

namespace uvit::simdev {

class GuardedArena {
 public:
  explicit GuardedArena(size_t capacity);  // reserves (MAP_NORESERVE), touches nothing
  ~GuardedArena();
  GuardedArena(const GuardedArena&) = delete;
  GuardedArena& operator=(const GuardedArena&) = delete;

  // Throws uvit::Error "out of memory: ..." when no free block of n bytes is left.
  void* alloc(size_t n);
  void free(void* p);  // throws for a pointer that is not a live block's start
  // Whether p lies in the reserved range (any block, live or not).
  bool contains(const void* p) const { return uintptr_t(p) - uintptr_t(base_) < capacity_; }
  // Whether [p, p + bytes) lies inside one live block.
  bool inside_block(const void* p, size_t bytes) const;
  size_t live_bytes() const;
  size_t peak_bytes() const;
  void reset_peak_bytes();

  // Read/write access for the host while one is held (nested and from several threads: the
  // memory closes again when the last one goes).
  class Open {
   public:
    explicit Open(GuardedArena& a) : a_(a) { a_.enter(); }
    ~Open() { a_.leave(); }
    Open(const Open&) = delete;
    Open& operator=(const Open&) = delete;

   private:
    GuardedArena& a_;
  };

 private:
  void enter();
  void leave();
  void protect(size_t from, size_t to, bool open);

  char* map_ = nullptr;  // the mapping; base_ is its first 2 MiB boundary
  char* base_ = nullptr;
  size_t capacity_ = 0;  // what the allocator hands out
  size_t reserved_ = 0;  // capacity_ rounded up to the switch's 2 MiB unit
  mutable std::mutex mu_;
  int depth_ = 0;   // Open handles alive
  size_t top_ = 0;  // page-rounded end of the highest block ever handed out: what enter opens
  size_t live_ = 0, peak_ = 0;
  std::map<size_t, size_t> free_, used_;  // offset -> bytes
};

}  // namespace uvit::simdev
