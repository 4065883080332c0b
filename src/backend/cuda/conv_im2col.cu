// Strided 3x3 im2col on channels-last act maps and its adjoint (U-ViT's patch_embed conv_stack):
// one thread per output element; the adjoint gathers (no atomics), summing in fp32.
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

// cols[(b Ho + i) Wo + j, ch*9 + ky*3 + kx] = x[b, i s + ky - 1, j s + kx - 1, ch] (0 outside)
template <class T>
__global__ void im2col3_kernel(const T* __restrict__ x, T* __restrict__ cols, int B, int C, int H,
                               int W, int s) {
  const int Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1, K = 9 * C;
  const size_t total = size_t(B) * Ho * Wo * K;
  UVIT_GRID_STRIDE(e, total) {
    const int k = static_cast<int>(e % K);
    const size_t pix = e / K;
    const int j = static_cast<int>(pix % Wo), i = static_cast<int>((pix / Wo) % Ho);
    const int b = static_cast<int>(pix / (size_t(Wo) * Ho));
    const int ch = k / 9, ky = (k % 9) / 3, kx = k % 3;
    const int r = i * s + ky - 1, c = j * s + kx - 1;
    cols[e] = (r >= 0 && r < H && c >= 0 && c < W) ? x[((size_t(b) * H + r) * W + c) * C + ch]
                                                   : from_f<T>(0.f);
  }
}

template <class T>
__global__ void col2im3_kernel(const T* __restrict__ cols, T* __restrict__ x, int B, int C, int H,
                               int W, int s) {
  const int Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1, K = 9 * C;
  const size_t total = size_t(B) * H * W * C;
  UVIT_GRID_STRIDE(e, total) {
    const int ch = static_cast<int>(e % C);
    const size_t pix = e / C;
    const int c = static_cast<int>(pix % W), r = static_cast<int>((pix / W) % H);
    const int b = static_cast<int>(pix / (size_t(W) * H));
    float acc = 0.f;
    for (int ky = 0; ky < 3; ++ky) {
      const int ti = r + 1 - ky;
      if (ti < 0 || ti % s || ti / s >= Ho) continue;
      for (int kx = 0; kx < 3; ++kx) {
        const int tj = c + 1 - kx;
        if (tj < 0 || tj % s || tj / s >= Wo) continue;
        acc += to_f(cols[((size_t(b) * Ho + ti / s) * Wo + tj / s) * K + ch * 9 + ky * 3 + kx]);
      }
    }
    x[e] = from_f<T>(acc);
  }
}

}  // namespace

void conv3x3_im2col(bool bf16, const void* x, void* cols, int B, int C, int H, int W, int stride) {
  const size_t n = size_t(B) * ((H - 1) / stride + 1) * ((W - 1) / stride + 1) * 9 * C;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    im2col3_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(x), as<T>(cols), B, C,
                                                                        H, W, stride));
  check_launch("im2col3_kernel");
}

void conv3x3_col2im(bool bf16, const void* cols, void* x, int B, int C, int H, int W, int stride) {
  const size_t n = size_t(B) * H * W * C;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    col2im3_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(cols), as<T>(x), B, C,
                                                                        H, W, stride));
  check_launch("col2im3_kernel");
}

}  // namespace uvit::cuda
