// Backend::copy_3d on the CPU: one parallel loop over every row of every block (the per-block
// copy_act_2d calls it replaces were a parallel region each). copy_act_2d is its one-block case.
#include <cstring>

#include "backend/copy_3d_check.hpp"
#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {

constexpr long kParallelMin = 1 << 15;  // elements; below this a parallel region costs more

template <class T>
void copy_3d_t(T* dst, long ld_dst, long bs_dst, const T* src, long ld_src, long bs_src,
               long blocks, long rows, long cols) {
  const size_t bytes = sizeof(T) * size_t(cols);
#pragma omp parallel for collapse(2) schedule(static) if (blocks * rows * cols >= kParallelMin)
  for (long b = 0; b < blocks; ++b)
    for (long r = 0; r < rows; ++r)
      std::memcpy(dst + b * bs_dst + r * ld_dst, src + b * bs_src + r * ld_src, bytes);
}

}  // namespace

void CpuBackend::copy_3d(float* dst, long ld_dst, long bs_dst, const float* src, long ld_src,
                         long bs_src, long blocks, long rows, long cols, bool act) {
  check_copy_3d(ld_dst, bs_dst, ld_src, bs_src, blocks, rows, cols);
  if (blocks == 0 || rows == 0 || cols == 0) return;
  if (!act) return copy_3d_t(dst, ld_dst, bs_dst, src, ld_src, bs_src, blocks, rows, cols);
  UVIT_CPU_ACT(copy_3d_t(cpu::as<T>(dst), ld_dst, bs_dst, cpu::as<T>(src), ld_src, bs_src, blocks,
                         rows, cols));
}

}  // namespace uvit
