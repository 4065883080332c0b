// Strided 3x3 im2col on channels-last maps and its adjoint (U-ViT's patch_embed conv_stack runs
// each convolution as these plus a GEMM). Index shuffles only; the adjoint gathers, so every
// output element has one writer and no atomics are needed.
#include <algorithm>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace uvit {

namespace {
using cpu::as;
using cpu::ld;
using cpu::st;
constexpr int kChunk = 64;  // channels summed per pass of the adjoint

template <class T>

void conv3x3_im2col_t(const T* x, T* cols, int B, int C, int H, int W, int stride) {
  const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, K = 9 * C;
#pragma omp parallel for collapse(2) \
    schedule(static) if (static_cast <long>(B) * Ho * Wo * K >= 32768)
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Ho; ++i)
      for (int j = 0; j < Wo; ++j) {
        T* row = cols + ((static_cast<size_t>(b) * Ho + i) * Wo + j) * K;
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            const int r = i * stride + ky - 1, c = j * stride + kx - 1;
            T* dst = row + ky * 3 + kx;
            if (r < 0 || r >= H || c < 0 || c >= W) {  // padding: no pointer to (r, c) is formed
              for (int ch = 0; ch < C; ++ch) dst[ch * 9] = st<T>(0.f);
              continue;
            }
            const T* src = x + ((static_cast<size_t>(b) * H + r) * W + c) * C;
            for (int ch = 0; ch < C; ++ch) dst[ch * 9] = src[ch];
          }
      }
}

template <class T>
void conv3x3_col2im_t(const T* cols, T* x, int B, int C, int H, int W, int stride) {
  const int Ho = (H - 1) / stride + 1, Wo = (W - 1) / stride + 1, K = 9 * C;
#pragma omp parallel for collapse(2) \
    schedule(static) if (static_cast <long>(B) * H * W * C >= 32768)
  for (int b = 0; b < B; ++b)
    for (int r = 0; r < H; ++r)
      for (int c = 0; c < W; ++c) {
        T* dst = x + ((static_cast<size_t>(b) * H + r) * W + c) * C;
        // Sums in fp32 (at most 9 taps per element), rounded once, kChunk channels at a time.
        for (int c0 = 0; c0 < C; c0 += kChunk) {
          const int nc = std::min(kChunk, C - c0);
          float acc[kChunk] = {};
          // Output (i, j) reads (r, c) through tap (ky, kx) = (r + 1 - i s, c + 1 - j s).
          for (int ky = 0; ky < 3; ++ky) {
            const int ti = r + 1 - ky;
            if (ti < 0 || ti % stride || ti / stride >= Ho) continue;
            for (int kx = 0; kx < 3; ++kx) {
              const int tj = c + 1 - kx;
              if (tj < 0 || tj % stride || tj / stride >= Wo) continue;
              const T* row =
                  cols + ((static_cast<size_t>(b) * Ho + ti / stride) * Wo + tj / stride) * K;
              for (int ch = 0; ch < nc; ++ch) acc[ch] += ld(row[(c0 + ch) * 9 + ky * 3 + kx]);
            }
          }
          for (int ch = 0; ch < nc; ++ch) dst[c0 + ch] = st<T>(acc[ch]);
        }
      }
}

}  // namespace

void CpuBackend::conv3x3_im2col(const float* x, float* cols, int B, int C, int H, int W,
                                int stride) {
  UVIT_CPU_ACT(conv3x3_im2col_t(as<T>(x), as<T>(cols), B, C, H, W, stride));
}

void CpuBackend::conv3x3_col2im(const float* cols, float* x, int B, int C, int H, int W,
                                int stride) {
  UVIT_CPU_ACT(conv3x3_col2im_t(as<T>(cols), as<T>(x), B, C, H, W, stride));
}

}  // namespace uvit
