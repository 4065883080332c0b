// cuDNN's fused SDPA (flash attention) through the vendored cudnn-frontend graph API
// (third_party/cudnn-frontend), the opt-in bf16 attention path UVIT_ATTENTION=cudnn (docs/gpu.md).
// Same layouts and semantics as Backend::attention_fwd/bwd (attention.hpp): Q, K, V read in place
// from the fused qkv [B, N, 3*H*Dh] and dQ, dK, dV written in place into dqkv, O [B, N, H*Dh],
// lse [B, H, N] fp32 (cuDNN's softmax statistics are the natural-log logsumexp of the scaled
// scores, the quantity our kernels save). bf16 I/O, fp32 softmax and accumulation, non-causal.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <memory>

namespace uvit::cuda {

class CudnnAttention {
 public:
  virtual ~CudnnAttention() = default;
  // false when cuDNN does not take this call (no engine for the shape, or a pointer that is not
  // 16-byte aligned): the caller runs its own kernel. A shape cuDNN turns down is said once on
  // stderr. lse may be nullptr (inference graph, no statistics). Execution errors throw.
  virtual bool forward(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                       float scale) = 0;
  // dqkv overwritten; lse from either forward (the same quantity). Deterministic algorithm.
  virtual bool backward(const void* dout, const void* qkv, const void* out, const float* lse,
                        void* dqkv, int B, int N, int H, int Dh, float scale) = 0;
  // Device bytes held as workspace (grow-only, shared by the cached graphs).
  virtual size_t workspace_bytes() const = 0;
};

// nullptr, said once on stderr, when this build has no cuDNN SDPA or cuDNN cannot be initialised
// here.
std::unique_ptr<CudnnAttention> make_cudnn_attention(cudaStream_t stream);

}  // namespace uvit::cuda
