// Variable-length attention on CUDA (Backend::attention_varlen_fwd/bwd, FiTv2's packed batches):
// composed from the dense attention kernels, which already take any sequence length. A run of
// full-length samples is one dense call; a padded sample b is a call with B = 1 over its first n
// rows (same row strides, so the rows are addressed in place), its logsumexp passing through a
// contiguous [H, n] workspace because the dense kernels lay it out [B, H, n] and ours is
// [B, H, N]. The lengths are host memory, so nothing waits on the device.
#include "backend/cuda/cuda_backend.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {

void check_lens(const int32_t* lens, int B, int N, const char* op) {
  UVIT_CHECK(lens != nullptr || B == 0, op, ": lens is null");
  for (int b = 0; b < B; ++b)
    UVIT_CHECK(lens[b] >= 1 && lens[b] <= N, op, ": sample ", b, " has ", lens[b],
               " valid tokens, outside [1, ", N, "]");
}

// The end of the run of full-length samples starting at b.
int full_run_end(const int32_t* lens, int b, int B, int N) {
  int e = b;
  while (e < B && lens[e] == N) ++e;
  return e;
}

}  // namespace

void CudaBackend::attention_varlen_fwd(const float* qkv, const int32_t* lens, float* out,
                                       float* lse, int B, int N, int H, int Dh, float scale) {
  check_lens(lens, B, N, "attention_varlen_fwd");
  const size_t D = size_t(H) * Dh;
  for (int b = 0; b < B;) {
    const size_t r0 = size_t(b) * N;  // first row of sample b
    const int e = full_run_end(lens, b, B, N);
    if (e > b) {
      attention_fwd(act_at(qkv, r0 * 3 * D), act_at(out, r0 * D),
                    lse ? lse + size_t(b) * H * N : nullptr, e - b, N, H, Dh, scale);
      b = e;
      continue;
    }
    const int n = lens[b];
    float* l = lse ? workspace(size_t(H) * n) : nullptr;
    attention_fwd(act_at(qkv, r0 * 3 * D), act_at(out, r0 * D), l, 1, n, H, Dh, scale);
    zero_act(act_at(out, (r0 + n) * D), size_t(N - n) * D);
    if (lse) {
      float* lb = lse + size_t(b) * H * N;
      copy_2d(lb, N, l, n, H, n);
      for (int h = 0; h < H; ++h) fill(lb + size_t(h) * N + n, 0.f, size_t(N - n));
    }
    ++b;
  }
}

void CudaBackend::attention_varlen_bwd(const float* dout, const float* qkv, const float* out,
                                       const float* lse, const int32_t* lens, float* dqkv, int B,
                                       int N, int H, int Dh, float scale) {
  check_lens(lens, B, N, "attention_varlen_bwd");
  UVIT_CHECK(lse != nullptr, "cuda attention_varlen_bwd: lse is null (run the forward with lse)");
  const size_t D = size_t(H) * Dh;
  for (int b = 0; b < B;) {
    const size_t r0 = size_t(b) * N;
    const int e = full_run_end(lens, b, B, N);
    if (e > b) {
      attention_bwd(act_at(dout, r0 * D), act_at(qkv, r0 * 3 * D), act_at(out, r0 * D),
                    lse + size_t(b) * H * N, act_at(dqkv, r0 * 3 * D), e - b, N, H, Dh, scale);
      b = e;
      continue;
    }
    const int n = lens[b];
    float* l = workspace(size_t(H) * n);
    copy_2d(l, n, lse + size_t(b) * H * N, N, H, n);
    attention_bwd(act_at(dout, r0 * D), act_at(qkv, r0 * 3 * D), act_at(out, r0 * D), l,
                  act_at(dqkv, r0 * 3 * D), 1, n, H, Dh, scale);
    zero_act(act_at(dqkv, (r0 + n) * 3 * D), size_t(N - n) * 3 * D);
    ++b;
  }
}

}  // namespace uvit
