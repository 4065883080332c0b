// Backend::move_rows on the CPU: rows gathered/scattered through int32 index lists, in parallel
// over rows. A copy moves bytes; an accumulate adds in fp32 and rounds once, which is axpy_act's
// arithmetic with a = 1 bit for bit (the per-row calls it replaces in mdt.cpp).
#include <cstring>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {

constexpr long kParallelMin = 1 << 15;  // elements; below this a parallel region costs more

template <class T>
void move_rows_t(T* dst, const int32_t* dst_idx, const T* src, const int32_t* src_idx, long n,
                 long len, bool accumulate) {
  const size_t bytes = sizeof(T) * size_t(len);
#pragma omp parallel for schedule(static) if (n * len >= kParallelMin)
  for (long i = 0; i < n; ++i) {
    T* d = dst + size_t(dst_idx ? dst_idx[i] : i) * size_t(len);
    if (!src) {
      std::memset(d, 0, bytes);  // +0.0 is all-zero bits in fp32 and bf16
      continue;
    }
    const T* s = src + size_t(src_idx ? src_idx[i] : i) * size_t(len);
    if (!accumulate) {
      std::memcpy(d, s, bytes);
      continue;
    }
    cpu::for_each16(len, [=](long j, long m) {
      cpu::store16(d + j, cpu::load16(d + j, m) + cpu::load16(s + j, m), m);
    });
  }
}

}  // namespace

void CpuBackend::move_rows(float* dst, const int32_t* dst_idx, const float* src,
                           const int32_t* src_idx, long n, long row_len, bool accumulate,
                           bool act) {
  UVIT_CHECK(n >= 0 && row_len >= 0, "move_rows: ", n, " rows of ", row_len, " elements");
  UVIT_CHECK(src || !accumulate, "move_rows: accumulating needs a source");
  if (n == 0 || row_len == 0) return;
  if (!act) return move_rows_t(dst, dst_idx, src, src_idx, n, row_len, accumulate);
  UVIT_CPU_ACT(
      move_rows_t(cpu::as<T>(dst), dst_idx, cpu::as<T>(src), src_idx, n, row_len, accumulate));
}

}  // namespace uvit
