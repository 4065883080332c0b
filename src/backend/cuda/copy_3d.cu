// Backend::copy_3d on the device: one launch copies every row of every block (the per-block 2-D
// copies it replaces were one cudaMemcpy2DAsync each). One thread per 16-byte unit where the
// pointers, strides and row length allow it (4- or 2-byte units otherwise); bits are copied.
#include "backend/cuda/copy_unit.hpp"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

// Strides and the row length in U's.
template <class U>
__global__ void copy_3d_kernel(U* __restrict__ dst, size_t ld_dst, size_t bs_dst,
                               const U* __restrict__ src, size_t ld_src, size_t bs_src, size_t rows,
                               size_t units, size_t n) {
  UVIT_GRID_STRIDE(e, n) {
    const size_t c = e % units, i = e / units, r = i % rows, b = i / rows;
    dst[b * bs_dst + r * ld_dst + c] = src[b * bs_src + r * ld_src + c];
  }
}

template <class U>
void launch(void* dst, size_t ld_dst, size_t bs_dst, const void* src, size_t ld_src, size_t bs_src,
            size_t blocks, size_t rows, size_t row_bytes, size_t e) {
  auto in_units = [&](size_t stride) { return stride * e / sizeof(U); };
  const size_t units = row_bytes / sizeof(U), n = blocks * rows * units;
  copy_3d_kernel<U><<<grid_for(n, kThreads), kThreads>>>(
      static_cast<U*>(dst), in_units(ld_dst), in_units(bs_dst), static_cast<const U*>(src),
      in_units(ld_src), in_units(bs_src), rows, units, n);
  check_launch("copy_3d_kernel");
}

}  // namespace

void copy_3d(bool bf16, void* dst, long ld_dst, long bs_dst, const void* src, long ld_src,
             long bs_src, size_t blocks, size_t rows, size_t cols) {
  if (blocks == 0 || rows == 0 || cols == 0) return;
  const size_t e = bf16 ? 2 : 4, bytes = cols * e;
  const size_t unit = copy_unit({size_t(ld_dst) * e, size_t(bs_dst) * e, size_t(ld_src) * e,
                                 size_t(bs_src) * e, bytes, address(dst), address(src)});
  if (unit == 16)
    launch<uint4>(dst, ld_dst, bs_dst, src, ld_src, bs_src, blocks, rows, bytes, e);
  else if (unit == 4)
    launch<uint32_t>(dst, ld_dst, bs_dst, src, ld_src, bs_src, blocks, rows, bytes, e);
  else
    launch<uint16_t>(dst, ld_dst, bs_dst, src, ld_src, bs_src, blocks, rows, bytes, e);
}

}  // namespace uvit::cuda
