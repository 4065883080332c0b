// Small elementwise kernels the GEMM context needs around cuBLASLt: the bias add when the bias
// epilogue cannot be used, and C = beta*C for K == 0. Matrices are row-major [M, N] with leading
// dimension ld; elements are bf16 when bf16 is set, else fp32.
#pragma once
#include <cuda_runtime.h>

namespace uvit::cuda {

void gemm_add_bias_rows(void* y, const void* bias, int M, int N, int ld, bool bf16,
                        cudaStream_t stream);
void gemm_scale_rows(void* c, float beta, int M, int N, int ld, bool bf16, cudaStream_t stream);

}  // namespace uvit::cuda
