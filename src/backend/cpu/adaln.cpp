// DiT's adaLN kernels (modulate, gate). The per-sample sums of the backward passes run over tokens
// for a block of features at a time, so each thread owns its output and the reduction order is
// fixed (results do not depend on the thread count).
#include <algorithm>

#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
constexpr long kParallelMin = 1 << 14;
constexpr int kChunk = 64;  // features per task of the token reductions

// Calls f(b, d0, d1) for every sample and feature block, in parallel.
template <class F>
void for_blocks(int B, int D, long work, F f) {
  const int nb = (D + kChunk - 1) / kChunk;
  const long tasks = long(B) * nb;
#pragma omp parallel for schedule(static) if (work >= kParallelMin)
  for (long k = 0; k < tasks; ++k) {
    const int b = int(k / nb), d0 = int(k % nb) * kChunk;
    f(b, d0, std::min(D, d0 + kChunk));
  }
}
}  // namespace

void CpuBackend::modulate_fwd(const float* x, const float* shift, const float* scale, int ldm,
                              float* y, int B, int N, int D) {
  const long work = long(B) * N * D;
#pragma omp parallel for schedule(static) if (work >= kParallelMin)
  for (long r = 0; r < long(B) * N; ++r) {
    const long b = r / N;
    const float* sc = scale + b * ldm;
    const float* xr = x + r * D;
    float* yr = y + r * D;
    if (shift) {
      const float* sh = shift + b * ldm;
#pragma omp simd
      for (int d = 0; d < D; ++d) yr[d] = xr[d] * (1.f + sc[d]) + sh[d];
    } else {
#pragma omp simd
      for (int d = 0; d < D; ++d) yr[d] = xr[d] * (1.f + sc[d]);
    }
  }
}

void CpuBackend::modulate_bwd(const float* dy, const float* x, const float* scale, int ldm,
                              float* dx, float* dshift, float* dscale, int B, int N, int D) {
  for_blocks(B, D, long(B) * N * D, [&](int b, int d0, int d1) {
    float s_sh[kChunk] = {}, s_sc[kChunk] = {};
    const float* sc = scale + long(b) * ldm;
    for (int n = 0; n < N; ++n) {
      const long r = (long(b) * N + n) * D;
      for (int d = d0; d < d1; ++d) {
        const float g = dy[r + d];
        s_sh[d - d0] += g;
        s_sc[d - d0] += g * x[r + d];
        dx[r + d] = g * (1.f + sc[d]);
      }
    }
    for (int d = d0; d < d1; ++d) {
      if (dshift) dshift[long(b) * ldm + d] = s_sh[d - d0];
      dscale[long(b) * ldm + d] = s_sc[d - d0];
    }
  });
}

void CpuBackend::gate_fwd(const float* x, const float* y, const float* gate, int ldm, float* out,
                          int B, int N, int D) {
  const long work = long(B) * N * D;
#pragma omp parallel for schedule(static) if (work >= kParallelMin)
  for (long r = 0; r < long(B) * N; ++r) {
    const float* g = gate + (r / N) * ldm;
#pragma omp simd
    for (int d = 0; d < D; ++d) out[r * D + d] = x[r * D + d] + g[d] * y[r * D + d];
  }
}

void CpuBackend::gate_bwd(const float* dout, const float* y, const float* gate, int ldm, float* dy,
                          float* dgate, int B, int N, int D) {
  for_blocks(B, D, long(B) * N * D, [&](int b, int d0, int d1) {
    float s[kChunk] = {};
    const float* g = gate + long(b) * ldm;
    for (int n = 0; n < N; ++n) {
      const long r = (long(b) * N + n) * D;
      for (int d = d0; d < d1; ++d) {
        const float go = dout[r + d];
        s[d - d0] += go * y[r + d];
        dy[r + d] = go * g[d];
      }
    }
    for (int d = d0; d < d1; ++d) dgate[long(b) * ldm + d] = s[d - d0];
  });
}

}  // namespace uvit
