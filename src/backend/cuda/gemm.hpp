// cuBLASLt GEMMs for the CUDA backend. Row-major semantics as in include/uvit/backend.hpp; "act"
// operands are fp32 or bf16 by the context's precision; accumulation is always fp32.
#pragma once
#include <cuda_runtime.h>

#include <memory>

namespace uvit {
class AlgoAutotuner;
}

namespace uvit::cuda {

class GemmContext {
 public:
  virtual ~GemmContext() = default;
  // C[M,N] = alpha op(A) op(B) + beta C, all act.
  virtual void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void* A,
                    int lda, const void* B, int ldb, float beta, void* C, int ldc) = 0;
  // For i < batch: C_i = alpha op(A_i) op(B_i) + beta C_i with X_i = X + i * strideX (elements;
  // a stride of 0 shares one matrix across the batch), all act.
  virtual void gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                            const void* A, int lda, long long stride_a, const void* B, int ldb,
                            long long stride_b, float beta, void* C, int ldc, long long stride_c,
                            int batch) = 0;
  // C[M,N] (fp32) += A^T B, A [K,M] and B [K,N] act.
  virtual void gemm_wgrad(int M, int N, int K, const void* A, int lda, const void* B, int ldb,
                          float* C, int ldc) = 0;
  // y = x w^T + bias + residual (Backend::linear's contract), all act; bias/residual nullable,
  // residual == y means accumulate.
  virtual void linear(const void* x, int ldx, const void* w, int ldw, const void* bias,
                      const void* residual, void* y, int ldy, int M, int N, int K) = 0;
  // Device bytes held as workspace, for peak-memory reports.
  virtual size_t workspace_bytes() const { return 0; }
  // The autotuner's choices so far (UVIT_CUBLASLT_AUTOTUNE), nullptr when tuning is off.
  virtual const AlgoAutotuner* autotuner() const { return nullptr; }
};

// bf16: act is __nv_bfloat16, else float. fp32 acts multiply in pure fp32 (CUBLAS_COMPUTE_32F)
// unless tf32: then on TF32 tensor cores (CUBLAS_COMPUTE_32F_FAST_TF32: 10-bit mantissa inputs,
// fp32 accumulation; what PyTorch's convolutions do by default). bf16 ignores tf32.
// autotune: how many of cuBLASLt's heuristic candidates to time per GEMM plan at its first use,
// keeping the fastest (0: off, the heuristic's first choice, the default; -1: read
// UVIT_CUBLASLT_AUTOTUNE; docs/gpu.md, "GEMM autotuning").
std::unique_ptr<GemmContext> make_gemm_context(cudaStream_t stream, bool bf16, bool tf32 = false,
                                               int autotune = -1);

}  // namespace uvit::cuda
