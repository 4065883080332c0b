// Shared helpers of the CUDA backend: status checks that throw uvit::Error, launch checks, and (in
// .cu files) the act-type load/store helpers and packed 16-byte accesses for memory-bound kernels.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "uvit/error.hpp"

namespace uvit::cuda {

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear a non-sticky error so later calls start clean
    fail("CUDA: ", what, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  }
}

// After every kernel launch: configuration errors surface here, asynchronous faults at the next
// synchronising call.
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

#define UVIT_CUDA_CHECK(call) ::uvit::cuda::check((call), #call)

// Grow-only device memory that frees itself (also when an exception unwinds its owner): reserve()
// reallocates only when more is needed, freeing the old block first so the peak is one block.
// `what` names it in the out-of-memory error.
class GrowBuffer {
 public:
  explicit GrowBuffer(const char* what) : what_(what) {}
  ~GrowBuffer() {
    if (p_) cudaFree(p_);
  }
  GrowBuffer(const GrowBuffer&) = delete;
  GrowBuffer& operator=(const GrowBuffer&) = delete;

  void* reserve(size_t bytes) {
    if (bytes <= bytes_) return p_;
    if (p_) cudaFree(p_);  // waits for the work still using it
    p_ = nullptr;
    bytes_ = 0;
    const cudaError_t e = cudaMalloc(&p_, bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      p_ = nullptr;
      fail("CUDA: cudaMalloc of ", bytes, " bytes (", what_, ") failed: ", cudaGetErrorName(e),
           " (", cudaGetErrorString(e), ")");
    }
    bytes_ = bytes;
    return p_;
  }
  void* get() const { return p_; }
  size_t bytes() const { return bytes_; }

 private:
  const char* what_;
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Whether p may be read/written with load_pack<V>/store_pack<V> at offsets that are multiples of V.
template <class T>
bool pack_ok(const T* p, int V) {
  const size_t a = sizeof(T) * V < 16 ? sizeof(T) * V : 16;
  return reinterpret_cast<uintptr_t>(p) % a == 0;
}

// Grid size for a grid-stride loop over n work items with `threads` per block.
inline unsigned grid_for(size_t n, unsigned threads, unsigned max_blocks = 1u << 16) {
  size_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b < max_blocks ? b : max_blocks);
}

#ifdef __CUDACC__
// A grid-stride loop of size_t index i over [0, n) (launch with grid_for).
#define UVIT_GRID_STRIDE(i, n)                                            \
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += size_t(gridDim.x) * blockDim.x)

using bf16 = __nv_bfloat16;

__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
template <class T>
__device__ __forceinline__ T from_f(float v);
template <>
__device__ __forceinline__ float from_f<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ bf16 from_f<bf16>(float v) {
  return __float2bfloat16_rn(v);
}

// V consecutive elements moved as aligned vector accesses of min(16, V * sizeof(T)) bytes each.
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};
template <class T, int V>
constexpr int kSubPack = (sizeof(T) * V > 16) ? int(16 / sizeof(T)) : V;

template <int V, class T>
__device__ __forceinline__ void load_pack(const T* p, float (&r)[V]) {
  constexpr int W = kSubPack<T, V>;
#pragma unroll
  for (int s = 0; s < V; s += W) {
    const Pack<T, W> k = *reinterpret_cast<const Pack<T, W>*>(p + s);
#pragma unroll
    for (int j = 0; j < W; ++j) r[s + j] = to_f(k.v[j]);
  }
}

template <int V, class T>
__device__ __forceinline__ void store_pack(T* p, const float (&r)[V]) {
  constexpr int W = kSubPack<T, V>;
#pragma unroll
  for (int s = 0; s < V; s += W) {
    Pack<T, W> k;
#pragma unroll
    for (int j = 0; j < W; ++j) k.v[j] = from_f<T>(r[s + j]);
    *reinterpret_cast<Pack<T, W>*>(p + s) = k;
  }
}

template <class T>
T* as(void* p) {
  return static_cast<T*>(p);
}
template <class T>
const T* as(const void* p) {
  return static_cast<const T*>(p);
}

// Runs the statements with T = __nv_bfloat16 or float.
#define UVIT_ACT_DISPATCH(is_bf16, T, ...) \
  do {                                     \
    if (is_bf16) {                         \
      using T = ::uvit::cuda::bf16;        \
      __VA_ARGS__;                         \
    } else {                               \
      using T = float;                     \
      __VA_ARGS__;                         \
    }                                      \
  } while (0)

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
#endif

}  // namespace uvit::cuda
