// 3x3 convolution, padding 1 (U-ViT's optional final conv: C = 3..4 channels, so direct kernels:
// one thread per output element). The weight/bias gradients are reductions over B*H*W positions:
// per-block partials for (co, ci, chunk of positions), then a fixed-order second pass (+=).
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;
constexpr int kPerThread = 16;  // positions per thread in the dw/db reduction
constexpr int kTaps = 10;       // 9 weight taps + the bias

__global__ void conv_fwd_kernel(const float* __restrict__ x, const float* __restrict__ w,
                                const float* __restrict__ b, float* __restrict__ y, int B, int Cin,
                                int Cout, int H, int W) {
  const size_t total = size_t(B) * Cout * H * W;
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(e % W), r = static_cast<int>((e / W) % H);
    const size_t nc = e / (size_t(H) * W);
    const int co = static_cast<int>(nc % Cout), n = static_cast<int>(nc / Cout);
    float s = b ? b[co] : 0.f;
    for (int ci = 0; ci < Cin; ++ci) {
      const float* xi = x + (size_t(n) * Cin + ci) * H * W;
      const float* k = w + (size_t(co) * Cin + ci) * 9;
#pragma unroll
      for (int ky = 0; ky < 3; ++ky) {
        const int sr = r + ky - 1;
        if (sr < 0 || sr >= H) continue;
#pragma unroll
        for (int kx = 0; kx < 3; ++kx) {
          const int sc = c + kx - 1;
          if (sc < 0 || sc >= W) continue;
          s += k[ky * 3 + kx] * xi[size_t(sr) * W + sc];
        }
      }
    }
    y[e] = s;
  }
}

// dx[n, ci, r, c] = sum_{co, ky, kx} w[co, ci, ky, kx] * dy[n, co, r - ky + 1, c - kx + 1]
__global__ void conv_dx_kernel(const float* __restrict__ dy, const float* __restrict__ w,
                               float* __restrict__ dx, int B, int Cin, int Cout, int H, int W) {
  const size_t total = size_t(B) * Cin * H * W;
  for (size_t e = size_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x) {
    const int c = static_cast<int>(e % W), r = static_cast<int>((e / W) % H);
    const size_t nc = e / (size_t(H) * W);
    const int ci = static_cast<int>(nc % Cin), n = static_cast<int>(nc / Cin);
    float s = 0.f;
    for (int co = 0; co < Cout; ++co) {
      const float* g = dy + (size_t(n) * Cout + co) * H * W;
      const float* k = w + (size_t(co) * Cin + ci) * 9;
#pragma unroll
      for (int ky = 0; ky < 3; ++ky) {
        const int sr = r - ky + 1;
        if (sr < 0 || sr >= H) continue;
#pragma unroll
        for (int kx = 0; kx < 3; ++kx) {
          const int sc = c - kx + 1;
          if (sc < 0 || sc >= W) continue;
          s += k[ky * 3 + kx] * g[size_t(sr) * W + sc];
        }
      }
    }
    dx[e] = s;
  }
}

// Block (k = co*Cin + ci, chunk): part[(chunk*CC + k)*10 + t] = sum over the chunk's positions of
// dy[n, co, r, c] * x[n, ci, r + ky - 1, c + kx - 1] (t = ky*3 + kx), and of dy itself (t = 9).
__global__ void conv_dw_partial_kernel(const float* __restrict__ dy, const float* __restrict__ x,
                                       float* __restrict__ part, int B, int Cin, int Cout, int H,
                                       int W) {
  const int k = blockIdx.x, CC = Cin * Cout;
  const int co = k / Cin, ci = k % Cin;
  const size_t P = size_t(B) * H * W;
  const size_t p0 = size_t(blockIdx.y) * kThreads * kPerThread;
  const size_t p1 = min(P, p0 + size_t(kThreads) * kPerThread);
  float acc[kTaps];
#pragma unroll
  for (int t = 0; t < kTaps; ++t) acc[t] = 0.f;
  for (size_t pos = p0 + threadIdx.x; pos < p1; pos += kThreads) {
    const int c = static_cast<int>(pos % W), r = static_cast<int>((pos / W) % H);
    const int n = static_cast<int>(pos / (size_t(H) * W));
    const float g = dy[((size_t(n) * Cout + co) * H + r) * W + c];
    const float* xi = x + (size_t(n) * Cin + ci) * H * W;
#pragma unroll
    for (int ky = 0; ky < 3; ++ky) {
      const int sr = r + ky - 1;
      if (sr < 0 || sr >= H) continue;
#pragma unroll
      for (int kx = 0; kx < 3; ++kx) {
        const int sc = c + kx - 1;
        if (sc < 0 || sc >= W) continue;
        acc[ky * 3 + kx] += g * xi[size_t(sr) * W + sc];
      }
    }
    acc[9] += g;
  }
  __shared__ float sh[kThreads / 32][kTaps];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < kTaps; ++t) {
    const float v = warp_sum(acc[t]);
    if (lane == 0) sh[warp][t] = v;
  }
  __syncthreads();
  if (threadIdx.x < kTaps) {
    float s = 0.f;
    for (int wi = 0; wi < int(kThreads / 32); ++wi) s += sh[wi][threadIdx.x];
    part[(size_t(blockIdx.y) * CC + k) * kTaps + threadIdx.x] = s;
  }
}

__global__ void conv_dw_final_kernel(const float* __restrict__ part, int chunks, int Cin, int Cout,
                                     float* dw, float* db) {
  const int CC = Cin * Cout;
  const int e = blockIdx.x * blockDim.x + threadIdx.x;
  if (e >= CC * kTaps) return;
  const int k = e / kTaps, t = e % kTaps;
  if (t == 9 && (!db || k % Cin != 0)) return;  // the bias once per co (from ci == 0)
  double s = 0;
  for (int ch = 0; ch < chunks; ++ch) s += part[(size_t(ch) * CC + k) * kTaps + t];
  if (t < 9)
    dw[size_t(k) * 9 + t] += static_cast<float>(s);
  else
    db[k / Cin] += static_cast<float>(s);
}

}  // namespace

void conv3x3_fwd(const float* x, const float* w, const float* b, float* y, int B, int Cin, int Cout,
                 int H, int W) {
  const size_t n = size_t(B) * Cout * H * W;
  if (n == 0) return;
  conv_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(x, w, b, y, B, Cin, Cout, H, W);
  check_launch("conv3x3_fwd_kernel");
}

void conv3x3_bwd(const float* dy, const float* x, const float* w, float* dx, float* dw, float* db,
                 int B, int Cin, int Cout, int H, int W, Scratch& scratch) {
  const size_t P = size_t(B) * H * W;
  if (P == 0 || Cin <= 0 || Cout <= 0) return;
  if (dx) {
    const size_t n = size_t(B) * Cin * H * W;
    conv_dx_kernel<<<grid_for(n, kThreads), kThreads>>>(dy, w, dx, B, Cin, Cout, H, W);
    check_launch("conv3x3_dx_kernel");
  }
  const size_t per_chunk = size_t(kThreads) * kPerThread;
  const size_t nchunks = (P + per_chunk - 1) / per_chunk;
  UVIT_CHECK(nchunks <= 65535, "conv3x3_bwd: ", P, " positions exceed the reduction grid");
  const int chunks = static_cast<int>(nchunks);
  const int CC = Cin * Cout;
  float* part = scratch.get(size_t(chunks) * CC * kTaps);
  conv_dw_partial_kernel<<<dim3(CC, chunks), kThreads>>>(dy, x, part, B, Cin, Cout, H, W);
  check_launch("conv3x3_dw_partial_kernel");
  conv_dw_final_kernel<<<(CC * kTaps + 127) / 128, 128>>>(part, chunks, Cin, Cout, dw, db);
  check_launch("conv3x3_dw_final_kernel");
}

}  // namespace uvit::cuda
