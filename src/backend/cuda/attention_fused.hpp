// The fused bf16 attention forward (tensor cores, K/V tiles in shared memory), used by
// attention.cu for bf16 inference and training forwards. Same layouts and semantics as
// Backend::attention_fwd; lse may be nullptr.
#pragma once
#include <cuda_runtime.h>

namespace uvit::cuda {

bool fused_attention_supported(int Dh);  // head dims up to 128
void fused_attention_fwd_bf16(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                              float scale, cudaStream_t stream);

}  // namespace uvit::cuda
