// See gemm_kernels.hpp.
#include <cuda_bf16.h>

#include "backend/cuda/gemm_kernels.hpp"
#include "uvit/error.hpp"

namespace uvit::cuda {

namespace {

__device__ inline float ld_f(const float* p) { return *p; }
__device__ inline float ld_f(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ inline void st_f(float* p, float v) { *p = v; }
__device__ inline void st_f(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <class T>
__global__ void add_bias_kernel(T* y, const T* bias, int M, int N, int ld) {
  const size_t total = size_t(M) * N;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const int m = int(i / N), n = int(i % N);
    T* p = y + size_t(m) * ld + n;
    st_f(p, ld_f(p) + ld_f(bias + n));
  }
}

template <class T>
__global__ void scale_kernel(T* c, float beta, int M, int N, int ld) {
  const size_t total = size_t(M) * N;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const int m = int(i / N), n = int(i % N);
    T* p = c + size_t(m) * ld + n;
    st_f(p, beta == 0.f ? 0.f : beta * ld_f(p));  // beta 0 overwrites NaN/garbage, like BLAS
  }
}

unsigned grid_for(size_t total) {
  const size_t blocks = (total + 255) / 256;
  return unsigned(blocks < 65535 ? (blocks ? blocks : 1) : 65535);
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) fail("cuda gemm: launch of ", what, " failed: ", cudaGetErrorString(e));
}

}  // namespace

void gemm_add_bias_rows(void* y, const void* bias, int M, int N, int ld, bool bf16,
                        cudaStream_t stream) {
  if (M <= 0 || N <= 0) return;
  const unsigned g = grid_for(size_t(M) * N);
  if (bf16)
    add_bias_kernel<<<g, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(y),
                                           static_cast<const __nv_bfloat16*>(bias), M, N, ld);
  else
    add_bias_kernel<<<g, 256, 0, stream>>>(static_cast<float*>(y), static_cast<const float*>(bias),
                                           M, N, ld);
  check_launch("add_bias_kernel");
}

void gemm_scale_rows(void* c, float beta, int M, int N, int ld, bool bf16, cudaStream_t stream) {
  if (M <= 0 || N <= 0 || beta == 1.f) return;
  const unsigned g = grid_for(size_t(M) * N);
  if (bf16)
    scale_kernel<<<g, 256, 0, stream>>>(static_cast<__nv_bfloat16*>(c), beta, M, N, ld);
  else
    scale_kernel<<<g, 256, 0, stream>>>(static_cast<float*>(c), beta, M, N, ld);
  check_launch("scale_kernel");
}

}  // namespace uvit::cuda
