// The memory this process can have (docs/memory.md, "The memory check").
#include "core/mem_limit.hpp"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/env.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {
std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// The cgroup path of this process for a controller ("" for v2's unified line "0::PATH").
std::string own_cgroup(const std::string& controller) {
  std::istringstream in(slurp("/proc/self/cgroup"));
  for (std::string line; std::getline(in, line);) {
    const size_t a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string names = line.substr(a + 1, b - a - 1);
    if (controller.empty() ? names.empty() && line.compare(0, a, "0") == 0
                           : ("," + names + ",").find("," + controller + ",") != std::string::npos)
      return line.substr(b + 1);
  }
  return "";
}

// The smallest limit in `file` of the cgroup folder `root` + `path` and its ancestors (a
// container sees its own cgroup as the root; a systemd slice may sit between).
size_t cgroup_min(const std::string& root, std::string path, const char* file) {
  size_t lim = size_t(-1);
  for (;;) {
    const std::string text = slurp(root + path + "/" + file);
    if (!text.empty()) lim = std::min(lim, cgroup_limit_bytes(text));
    if (path.empty() || path == "/") break;
    path.resize(path.rfind('/'));
  }
  return lim;
}

std::atomic<size_t> cached{0};  // 0: not read yet
// Bytes of every CPU backend's live buffers: they share the machine (malloc_usable_size of each).
std::atomic<size_t> live{0};
// This thread's open MemPlans, and the bytes of the buffers they did not allocate.
thread_local int plans = 0;
thread_local size_t skipped = 0;
}  // namespace

size_t meminfo_bytes(const std::string& meminfo, const std::string& key) {
  const std::string k = "\n" + key + ":";
  const size_t at = ("\n" + meminfo).find(k);
  if (at == std::string::npos) return 0;
  return size_t(std::strtoull(meminfo.c_str() + at + key.size() + 1, nullptr, 10)) * 1024;  // kB
}

size_t cgroup_limit_bytes(const std::string& text) {
  char* end = nullptr;
  const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  return end == text.c_str() || v == 0 ? size_t(-1) : size_t(v);  // "max", or nothing read
}

std::string gib(size_t bytes) {
  char s[32];
  if (bytes >= (size_t{1} << 30))
    std::snprintf(s, sizeof s, "%.1f GiB", double(bytes) / double(size_t{1} << 30));
  else
    std::snprintf(s, sizeof s, "%.1f MiB", double(bytes) / double(size_t{1} << 20));
  return s;
}

MemLimit read_mem_limit() {
  MemLimit m;
  if (const char* t = std::getenv("UVIT_TEST_MEM_LIMIT"); t && *t) {
    m.machine = size_t(std::strtoull(t, nullptr, 10));
    m.source = "UVIT_TEST_MEM_LIMIT";
  } else {
    const std::string info = slurp("/proc/meminfo");
    m.machine = meminfo_bytes(info, "MemTotal") + meminfo_bytes(info, "SwapTotal");
    m.source = meminfo_bytes(info, "SwapTotal") ? "MemTotal + SwapTotal" : "MemTotal";
    const size_t v2 = cgroup_min("/sys/fs/cgroup", own_cgroup(""), "memory.max");
    const size_t v1 =
        cgroup_min("/sys/fs/cgroup/memory", own_cgroup("memory"), "memory.limit_in_bytes");
    if (const size_t cg = std::min(v1, v2); cg != size_t(-1) && (!m.machine || cg < m.machine)) {
      m.machine = cg;
      m.source = v2 <= v1 ? "cgroup memory.max" : "cgroup memory.limit_in_bytes";
    }
  }
  // The ranks of an MPI job on this node share its memory (Open MPI; MPICH's Hydra).
  m.ranks =
      int(std::max({1L, env_long("OMPI_COMM_WORLD_LOCAL_SIZE"), env_long("MPI_LOCALNRANKS")}));
  return m;
}

std::string MemLimit::describe() const {
  const bool cgroup = source.rfind("cgroup", 0) == 0;
  if (ranks == 1)
    return std::string("this ") + (cgroup ? "container" : "machine") + " has " + gib(machine) +
           " (" + source + ")";
  return "each of the " + std::to_string(ranks) + " ranks on this " +
         (cgroup ? "container" : "machine") + " has " + gib(bytes()) + " (" + gib(machine) + ", " +
         source + ", shared)";
}

size_t process_mem_limit() {
  size_t v = cached.load(std::memory_order_relaxed);
  if (!v) cached.store(v = read_mem_limit().bytes(), std::memory_order_relaxed);
  return v;
}

void forget_process_mem_limit() { cached.store(0); }

size_t live_buffer_bytes() { return live.load(std::memory_order_relaxed); }

bool count_buffer(size_t bytes) {
  const size_t limit = process_mem_limit();
  if (plans && bytes > limit) {               // never fits: counted for check(), not allocated
    skipped += (bytes + 4095) / 4096 * 4096;  // as malloc would map it: whole pages
    return false;
  }
  const size_t now = live.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  if (now > limit && !plans) {
    live.fetch_sub(bytes, std::memory_order_relaxed);
    fail("out of memory: the buffers need at least ", gib(now), ", ", read_mem_limit().describe());
  }
  return true;
}

void uncount_buffer(size_t bytes) { live.fetch_sub(bytes, std::memory_order_relaxed); }

void recount_buffer(size_t counted, size_t actual) {
  live.fetch_add(actual - counted, std::memory_order_relaxed);  // modulo 2^64: may be negative
}

bool in_mem_plan() { return plans > 0; }

MemPlan::MemPlan() {
  if (plans++ == 0) skipped = 0;
  live0_ = live_buffer_bytes();
  skipped0_ = skipped;
}
MemPlan::~MemPlan() {
  if (open_) --plans;
}

void MemPlan::count_host(size_t bytes) {
  if (open_) skipped += bytes;
}

void MemPlan::mark_model(size_t extra, const std::string& what) {
  model_ = live_buffer_bytes() - live0_ + skipped - skipped0_ + extra;
  model_what_ = what;
}

void MemPlan::check() {
  const size_t need = live_buffer_bytes() + skipped;
  if (open_) --plans;
  open_ = false;
  if (need <= process_mem_limit()) return;
  const MemLimit lim = read_mem_limit();
  std::string msg = "out of memory: the buffers need " + gib(need);
  if (!model_what_.empty())
    msg += " (" + gib(model_) + " of them the model's " + model_what_ + ", whatever the batch)";
  msg += ", " + lim.describe();
  // No batch size helps then; fewer ranks sharing the node do where the whole node would hold it.
  const bool alone = !model_what_.empty() && model_ > lim.bytes();
  if (alone)
    msg += lim.ranks > 1 && model_ <= lim.machine
               ? "; the model alone does not fit one rank's share: run fewer ranks on this " +
                     std::string(lim.source.rfind("cgroup", 0) == 0 ? "container" : "machine")
               : std::string(
                     "; the model alone does not fit: no batch size helps, it needs more "
                     "memory");
  throw OutOfMemory(msg, alone);
}

}  // namespace uvit
