// Attention for the CUDA backend: the layouts and semantics of Backend::attention_fwd/bwd.
// qkv [B, N, 3*H*Dh], out [B, N, H*Dh] (act: fp32 or bf16), lse [B, H, N] fp32.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

namespace uvit::cuda {

class GemmContext;

class AttentionContext {
 public:
  virtual ~AttentionContext() = default;
  virtual void forward(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                       float scale) = 0;
  virtual void backward(const void* dout, const void* qkv, const void* out, const float* lse,
                        void* dqkv, int B, int N, int H, int Dh, float scale) = 0;
  // With an additive bias (Backend::attention_bias_fwd/bwd: table [R, H] fp32, index [Lf, Lf] and
  // ids [B, N] int32, ids nullptr for the full grid); dtable +=. The unfused path only.
  struct Bias {
    const float* table;
    const int32_t* index;
    const int32_t* ids;
    int R, Lf;
  };
  virtual void forward_bias(const void* qkv, const Bias& bias, void* out, float* lse, int B, int N,
                            int H, int Dh, float scale);
  virtual void backward_bias(const void* dout, const void* qkv, const void* out, const float* lse,
                             const Bias& bias, void* dqkv, float* dtable, int B, int N, int H,
                             int Dh, float scale);
  // Device bytes held as scratch (grow-only), for peak-memory reports.
  virtual size_t workspace_bytes() const { return 0; }
};

std::unique_ptr<AttentionContext> make_attention_context(cudaStream_t stream, bool bf16);

// Delta[(b*H + h)*N + i] = sum_d dO[b, i, h*Dh + d] * O[b, i, h*Dh + d] (fp32) for the first `rows`
// = B*H*N rows: the softmax-backward term of both attention backwards. dout, out act.
void attention_delta(bool bf16, const void* dout, const void* out, float* delta, size_t rows, int N,
                     int H, int Dh, cudaStream_t stream);

}  // namespace uvit::cuda
