// The memory this process can have: the machine's (MemTotal + SwapTotal), or less under a cgroup
// limit, shared among the MPI ranks on this node (docs/memory.md). The CPU backend refuses an
// allocation that would take its live bytes above it, before the kernel's OOM killer would.
#pragma once
#include <cstddef>
#include <string>

#include "uvit/error.hpp"

namespace uvit {

struct MemLimit {
  size_t machine = 0;  // bytes the machine or container has (0: unknown, no limit)
  std::string source;  // where that came from: "MemTotal + SwapTotal", "cgroup memory.max", ...
  int ranks = 1;       // processes of an MPI job on this node, sharing it
  size_t bytes() const { return machine ? machine / size_t(ranks) : size_t(-1); }  // per process
  std::string describe() const;  // "this machine has 23.5 GiB (MemTotal + SwapTotal)"
};

// Reads /proc/meminfo, the cgroup v2 and v1 limits, the launcher's local rank count and the
// UVIT_TEST_MEM_LIMIT override (bytes, in place of the machine's; for tests) each call.
MemLimit read_mem_limit();
// read_mem_limit().bytes(), read once (lock-free after that); forget_... makes the next call
// read again (tests that set UVIT_TEST_MEM_LIMIT).
size_t process_mem_limit();
void forget_process_mem_limit();

// The bytes of the CPU backends' live buffers, all together (docs/memory.md).
size_t live_buffer_bytes();
// Counts a buffer of `bytes` the CPU backend is about to allocate. Outside a MemPlan: throws
// "out of memory: the buffers need at least ..." when the live bytes would go above
// process_mem_limit(). Inside one (this thread): never throws; returns false, without counting it
// as live, for a buffer that alone is above the limit (the caller allocates nothing and returns
// null: MemPlan::check() then refuses the plan).
bool count_buffer(size_t bytes);
void uncount_buffer(size_t bytes);  // a freed (or failed) buffer
// A counted buffer's size corrected to what the allocator gave (not checked: a page or so more).
void recount_buffer(size_t counted, size_t actual);

// MemPlan::check()'s refusal. model_alone: the model's part (MemPlan::mark_model) alone is above
// the limit, so that no batch size can help (the CLI then names no size option).
struct OutOfMemory : Error {
  OutOfMemory(const std::string& msg, bool model_alone) : Error(msg), model_alone(model_alone) {}
  bool model_alone;
};

// A run's setup (docs/memory.md, "Refused up front"): while one is open on this thread, the
// buffers the run will hold (parameters, gradients, optimizer state, EMA, one step's activations)
// are allocated untouched and not refused one by one; check() refuses their sum, naming the whole
// need, before anything is initialised. Plans nest; only check() throws.
class MemPlan {
 public:
  MemPlan();
  ~MemPlan();
  MemPlan(const MemPlan&) = delete;
  MemPlan& operator=(const MemPlan&) = delete;
  // Closes the plan (later buffers are checked one by one again), then throws "out of memory: the
  // buffers need N, this machine has ..." when the live bytes and the buffers not allocated for
  // being above the limit alone exceed process_mem_limit().
  void check();
  // Host memory (vectors outside the backends: the samples a run returns) it will hold along with
  // its buffers: counted towards check()'s need as a buffer not allocated.
  void count_host(size_t bytes);
  // What the plan holds so far, plus `extra` bytes still to come (the gradient reserve() will
  // allocate), is the model's part, `what` ("parameters, gradient, AdamW moments and EMA"),
  // whatever the batch: check()'s message names it, and says when it alone cannot fit.
  void mark_model(size_t extra, const std::string& what);

 private:
  bool open_ = true;
  size_t live0_, skipped0_;  // at the plan's start
  size_t model_ = 0;
  std::string model_what_;
};

bool in_mem_plan();  // whether a MemPlan is open on this thread

// Parsers, exposed for tests: a /proc/meminfo field in bytes (0 if absent); a cgroup limit file's
// value (size_t(-1) for "max" or an unparsable one).
size_t meminfo_bytes(const std::string& meminfo, const std::string& key);
size_t cgroup_limit_bytes(const std::string& text);
std::string gib(size_t bytes);  // "23.5 GiB", or "80.0 MiB" below 1 GiB

}  // namespace uvit
