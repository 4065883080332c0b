// Backend::move_rows on the device: one launch moves every row of an index list (the per-row
// copies it replaces were one launch each). One thread per 16-byte unit of a row where the rows
// and pointers allow it (4- or 2-byte units otherwise); a copy moves bits, an accumulate adds in
// fp32 and rounds once (axpy_act's arithmetic with a = 1).
#include "backend/cuda/copy_unit.hpp"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

__device__ __forceinline__ size_t row_of(const int32_t* idx, size_t i) {
  return idx ? size_t(idx[i]) : i;
}

// Rows of `units` U's each; src nullptr writes zeros.
template <class U>
__global__ void move_rows_copy_kernel(U* __restrict__ dst, const int32_t* __restrict__ dst_idx,
                                      const U* __restrict__ src,
                                      const int32_t* __restrict__ src_idx, size_t n, size_t units) {
  UVIT_GRID_STRIDE(e, n * units) {
    const size_t i = e / units, c = e % units;
    U v{};
    if (src) v = src[row_of(src_idx, i) * units + c];
    dst[row_of(dst_idx, i) * units + c] = v;
  }
}

// dst row += src row, V elements per thread (rows of `packs` packs).
template <class T, int V>
__global__ void move_rows_add_kernel(T* __restrict__ dst, const int32_t* __restrict__ dst_idx,
                                     const T* __restrict__ src, const int32_t* __restrict__ src_idx,
                                     size_t n, size_t packs) {
  UVIT_GRID_STRIDE(e, n * packs) {
    const size_t i = e / packs, c = e % packs;
    T* d = dst + (row_of(dst_idx, i) * packs + c) * V;
    const T* s = src + (row_of(src_idx, i) * packs + c) * V;
    float a[V], b[V];
    load_pack<V>(d, a);
    load_pack<V>(s, b);
#pragma unroll
    for (int k = 0; k < V; ++k) a[k] += b[k];
    store_pack<V>(d, a);
  }
}

template <class U>
void launch_copy(void* dst, const int32_t* dst_idx, const void* src, const int32_t* src_idx,
                 size_t n, size_t row_bytes) {
  const size_t units = row_bytes / sizeof(U);
  move_rows_copy_kernel<U><<<grid_for(n * units, kThreads), kThreads>>>(
      static_cast<U*>(dst), dst_idx, static_cast<const U*>(src), src_idx, n, units);
  check_launch("move_rows_copy_kernel");
}

template <class T>
void launch_add(T* dst, const int32_t* dst_idx, const T* src, const int32_t* src_idx, size_t n,
                size_t len) {
  constexpr int V = 16 / sizeof(T);
  if (copy_unit({len * sizeof(T), address(dst), address(src)}) == 16) {  // whole aligned packs
    move_rows_add_kernel<T, V>
        <<<grid_for(n * (len / V), kThreads), kThreads>>>(dst, dst_idx, src, src_idx, n, len / V);
  } else {
    move_rows_add_kernel<T, 1>
        <<<grid_for(n * len, kThreads), kThreads>>>(dst, dst_idx, src, src_idx, n, len);
  }
  check_launch("move_rows_add_kernel");
}

}  // namespace

void move_rows(bool bf16, void* dst, const int32_t* dst_idx, const void* src,
               const int32_t* src_idx, size_t n, size_t row_len, bool accumulate) {
  if (n == 0 || row_len == 0) return;
  if (accumulate) {
    UVIT_ACT_DISPATCH(bf16, T, launch_add(as<T>(dst), dst_idx, as<T>(src), src_idx, n, row_len));
    return;
  }
  const size_t bytes = row_len * (bf16 ? 2 : 4);
  // Rows start at multiples of `bytes` from the base pointers (src nullptr: zeros, no reads).
  const size_t unit = copy_unit({bytes, address(dst), address(src)});
  if (unit == 16)
    launch_copy<uint4>(dst, dst_idx, src, src_idx, n, bytes);
  else if (unit == 4)
    launch_copy<uint32_t>(dst, dst_idx, src, src_idx, n, bytes);
  else
    launch_copy<uint16_t>(dst, dst_idx, src, src_idx, n, bytes);
}

}  // namespace uvit::cuda
