// FlashAttention-2-style bf16 attention forward (mma.sync, online softmax), the default bf16
// forward of attention.cu. Same layouts and semantics as Backend::attention_fwd; lse may be
// nullptr.
#pragma once
#include <cuda_runtime.h>

namespace uvit::cuda {

bool flash_attention_supported(int Dh);  // head dims 1..128
void flash_attention_fwd_bf16(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                              float scale, cudaStream_t stream);

}  // namespace uvit::cuda
