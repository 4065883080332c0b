// FlashAttention-2-style bf16 attention forward (mma.sync, online softmax), the default bf16
// forward of attention.cu. Same layouts and semantics as Backend::attention_fwd; lse may be
// nullptr.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

namespace uvit::cuda {

bool flash_attention_supported(int Dh);  // head dims 1..128
void flash_attention_fwd_bf16(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                              float scale, cudaStream_t stream);

// The matching backward (attention_flash_bwd.cu), deterministic (no atomics): same layouts and
// semantics as Backend::attention_bwd (dqkv overwritten); lse required. delta is device scratch of
// flash_attention_bwd_scratch_bytes(B, N, H) bytes (Delta = rowsum(dO * O), fp32 [B, H, N]).
size_t flash_attention_bwd_scratch_bytes(int B, int N, int H);
void flash_attention_bwd_bf16(const void* dout, const void* qkv, const void* out, const float* lse,
                              void* dqkv, float* delta, int B, int N, int H, int Dh, float scale,
                              cudaStream_t stream);

}  // namespace uvit::cuda
