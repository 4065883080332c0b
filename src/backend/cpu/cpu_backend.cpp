// CpuBackend: construction, memory and the flat elementwise helpers; backend selection by name.
#include "backend/cpu/cpu_backend.hpp"

#include <malloc.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backend/cpu/act.hpp"
#include "core/mem_limit.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {
constexpr size_t kAlign = 64;                  // one cache line / one AVX-512 register
constexpr size_t kMaxBytes = size_t{1} << 46;  // 64 TiB
constexpr size_t kParallelMin = 1 << 15;  // below this a parallel region costs more than it saves
}  // namespace

size_t CpuBackend::live_bytes() { return live_buffer_bytes(); }

void* CpuBackend::alloc_bytes(size_t n) {
  // aligned_alloc needs a size that is a multiple of the alignment (and > 0 for a unique pointer).
  const size_t rounded = (n + kAlign - 1) / kAlign * kAlign;
  const size_t want = rounded == 0 ? kAlign : rounded;
  // Sizes no machine can hold (a corrupt shape) fail here, also under ASan, whose allocator would
  // abort instead of returning null; in a MemPlan they count towards its need (below).
  if (rounded < n || (n > kMaxBytes && !in_mem_plan()))
    fail("out of memory: could not allocate ", n, " bytes");
  // Linux overcommits: buffers that together exceed the machine are each granted, then the OOM
  // killer ends the process once they are touched. Refuse what can never fit (docs/memory.md);
  // under a MemPlan a buffer that alone cannot fit is not allocated (null) and the plan refuses.
  if (!count_buffer(want)) return nullptr;
  void* p = n > kMaxBytes ? nullptr : std::aligned_alloc(kAlign, want);  // (no limit known)
  if (!p) {
    uncount_buffer(want);
    fail("out of memory: could not allocate ", n, " bytes");
  }
  recount_buffer(want, malloc_usable_size(p));  // what free subtracts
  return p;
}

void CpuBackend::free_bytes(void* p) {
  if (!p) return;
  gemm_weights_written(p, 0);  // forgets blocked copies of weights that lived here
  uncount_buffer(malloc_usable_size(p));
  std::free(p);
}

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

// Over fixed blocks of about 16 384 elements (at most 1024 blocks), each summed on its own and
// the partials added in block order: the same bits at any thread count (docs/cli.md,
// "Reproducibility"; one partial per thread changed the logged grad_norm and the clip factor).
double CpuBackend::sum_squares(const float* x, size_t n) {
  const cpu::FixedBlocks blocks(static_cast<long>(n), 16384, 1024);
  std::vector<double> part(static_cast<size_t>(blocks.count), 0.0);
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (long b = 0; b < blocks.count; ++b) {
    double s = 0;
#pragma omp simd reduction(+ : s)
    for (long i = blocks.begin(b); i < blocks.end(b); ++i) s += static_cast<double>(x[i]) * x[i];
    part[static_cast<size_t>(b)] = s;
  }
  double s = 0;
  for (const double p : part) s += p;
  return s;
}

// ---- activation precision: conversions between fp32 and the act type ----

void CpuBackend::to_act(const float* src, float* dst_act, size_t n) {
  UVIT_CPU_ACT(cpu::convert(cpu::as<T>(dst_act), src, long(n)));
}

void CpuBackend::params_to_act(const float* src, float* dst_act, size_t n) {
  if (src != dst_act) to_act(src, dst_act, n);  // fp32: the parameters are their own act copy
  gemm_weights_written(dst_act, n * act_bytes());
}

void CpuBackend::from_act(const float* src_act, float* dst, size_t n) {
  UVIT_CPU_ACT(cpu::convert(dst, cpu::as<T>(src_act), long(n)));
}

void CpuBackend::copy_act(float* dst, const float* src, size_t n) {
  UVIT_CPU_ACT(cpu::convert(cpu::as<T>(dst), cpu::as<T>(src), long(n)));
}

void CpuBackend::zero_act(float* dst, size_t n) {
  if (n) std::memset(dst, 0, n * act_bytes());  // +0.0 is all-zero bits in fp32 and bf16
}

void CpuBackend::axpy_act(float* y, const float* x, float a, size_t n) {
  if (!bf16_) return axpy(y, x, a, n);
  cpu::bf16* ys = cpu::as<cpu::bf16>(y);
  const cpu::bf16* xs = cpu::as<cpu::bf16>(x);
  const long ln = static_cast<long>(n), nv = (ln + 15) / 16;
#pragma omp parallel for if (n >= kParallelMin) schedule(static)
  for (long v = 0; v < nv; ++v) {
    const long i = 16 * v, m = std::min(16L, ln - i);
    cpu::store16(ys + i, cpu::load16(ys + i, m) + a * cpu::load16(xs + i, m), m);
  }
}

void CpuBackend::copy_act_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                             long cols) {
  copy_3d(dst, ld_dst, 0, src, ld_src, 0, 1, rows, cols);  // one block of rows
}

void CpuBackend::require_fp32(const char* op) const {
  UVIT_CHECK(!bf16_, "cpu backend: ", op, " runs in fp32 only (this backend is bf16)");
}

bool cpu_has_bf16() {
  // avx512_core_bf16's bits are a subset of avx512_core_amx's, so one mask covers both.
  const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
  const unsigned bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
  return (isa & bf16) == bf16;
}

// UVIT_KEPT_WEIGHTS_MB is checked here, before any weights are loaded, not at the first product.
std::unique_ptr<Backend> make_cpu_backend() {
  gemm_kept_budget();
  return std::make_unique<CpuBackend>();
}
std::unique_ptr<Backend> make_cpu_bf16_backend() {
  gemm_kept_budget();
  return std::make_unique<CpuBackend>(true);
}

}  // namespace uvit
