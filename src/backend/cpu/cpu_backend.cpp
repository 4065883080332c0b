// CpuBackend: construction, memory and the flat elementwise helpers; backend selection by name.
#include "backend/cpu/cpu_backend.hpp"

#include <cstdlib>
#include <cstring>

#include "uvit/error.hpp"

namespace uvit {

namespace {
constexpr size_t kAlign = 64;                  // one cache line / one AVX-512 register
constexpr size_t kMaxBytes = size_t{1} << 46;  // 64 TiB
constexpr size_t kParallelMin = 1 << 15;  // below this a parallel region costs more than it saves
}  // namespace

void* CpuBackend::alloc_bytes(size_t n) {
  // aligned_alloc needs a size that is a multiple of the alignment (and > 0 for a unique pointer).
  const size_t rounded = (n + kAlign - 1) / kAlign * kAlign;
  // Sizes no machine can hold (a corrupt shape) fail here, also under ASan, whose allocator would
  // abort instead of returning null.
  if (rounded < n || n > kMaxBytes) fail("out of memory: could not allocate ", n, " bytes");
  void* p = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (!p) fail("out of memory: could not allocate ", n, " bytes");
  return p;
}

void CpuBackend::free_bytes(void* p) { std::free(p); }

void CpuBackend::upload(void* dst, const void* host, size_t bytes) {
  if (bytes) std::memcpy(dst, host, bytes);
}
void CpuBackend::download(void* host, const void* src, size_t bytes) {
  if (bytes) std::memcpy(host, src, bytes);
}
void CpuBackend::copy(float* dst, const float* src, size_t n) {
  if (n && dst != src) std::memmove(dst, src, n * sizeof(float));
}

void CpuBackend::fill(float* dst, float v, size_t n) {
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) dst[i] = v;
}

void CpuBackend::axpy(float* y, const float* x, float a, size_t n) {
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) y[i] += a * x[i];
}

void CpuBackend::scale(float* x, float a, size_t n) {
  const long ln = static_cast<long>(n);
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static)
  for (long i = 0; i < ln; ++i) x[i] *= a;
}

double CpuBackend::sum_squares(const float* x, size_t n) {
  const long ln = static_cast<long>(n);
  double s = 0;
#pragma omp parallel for simd if (n >= kParallelMin) schedule(static) reduction(+ : s)
  for (long i = 0; i < ln; ++i) s += static_cast<double>(x[i]) * x[i];
  return s;
}

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }


}  // namespace uvit
