// SimDevBackend: construction, memory and the only two host<->device paths (upload, download).
#include "backend/simdev/simdev_backend.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backend/cpu/cpu_backend.hpp"
#include "core/mem_limit.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {
// The device's size: $UVIT_SIMDEV_BYTES, else what the process may use (its pages are the host's).
size_t device_bytes() {
  if (const char* e = std::getenv("UVIT_SIMDEV_BYTES"); e && *e) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(e, &end, 10);
    UVIT_CHECK(*end == 0 && v >= 4096, "UVIT_SIMDEV_BYTES=", e, ": expected a byte count >= 4096");
    return size_t(v);
  }
  return std::min(process_mem_limit(), size_t{1} << 40);
}
}  // namespace

SimDevBackend::SimDevBackend(const std::string& precision, size_t capacity)
    : cpu_(make_cpu_backend_for(precision)), arena_(capacity) {}

std::string SimDevBackend::precision() const { return cpu_->precision(); }
void SimDevBackend::synchronize() {
  const simdev::GuardedArena::Open open(arena_);
  cpu_->synchronize();
}
double SimDevBackend::peak_flops() const { return cpu_->peak_flops(); }
size_t SimDevBackend::act_bytes() const { return cpu_->act_bytes(); }

void* SimDevBackend::alloc_bytes(size_t n) {
  const simdev::GuardedArena::Open open(arena_);
  void* p = arena_.alloc(n);
  // Fresh device memory is garbage, not zeros: NaN bytes make a read before a write show.
  std::memset(p, 0xff, n);
  return p;
}

void SimDevBackend::free_bytes(void* p) {
  const simdev::GuardedArena::Open open(arena_);
  gemm_weights_written(p, 0);  // as CpuBackend::free_bytes: the CPU's kept copies of p go
  arena_.free(p);
}

void SimDevBackend::upload(void* dst, const void* host, size_t bytes) {
  if (!bytes) return;
  const simdev::GuardedArena::Open open(arena_);
  UVIT_CHECK(arena_.inside_block(dst, bytes), "simdev: upload of ", bytes, " bytes to ", dst,
             ", which is not inside one device buffer");
  UVIT_CHECK(!arena_.contains(host), "simdev: upload from ", host,
             ", which is device memory, not host memory");
  std::memcpy(dst, host, bytes);
}

void SimDevBackend::download(void* host, const void* src, size_t bytes) {
  if (!bytes) return;
  const simdev::GuardedArena::Open open(arena_);
  UVIT_CHECK(arena_.inside_block(src, bytes), "simdev: download of ", bytes, " bytes from ", src,
             ", which is not inside one device buffer");
  UVIT_CHECK(!arena_.contains(host), "simdev: download to ", host,
             ", which is device memory, not host memory");
  std::memcpy(host, src, bytes);
}

simdev::GuardedArena::Open SimDevBackend::enter(const char* op,
                                                std::initializer_list<Arg> args) const {
  for (const auto& [arg, p] : args)
    UVIT_CHECK(!p || arena_.contains(p), "simdev: ", op, " was given host memory as ", arg, " (", p,
               "): a kernel reads and writes device memory only");
  return simdev::GuardedArena::Open(arena_);
}

std::unique_ptr<Backend> make_simdev_backend(const std::string& precision) {
  return std::make_unique<SimDevBackend>(precision, device_bytes());
}

}  // namespace uvit
