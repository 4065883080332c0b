// The CPU backend's kernels for the inference-only encoders (autoencoder, FID Inception, CLIP text
// model): thin wrappers over the nn:: layers, plus CLIP's causal attention.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "uvit/nn.hpp"

namespace uvit {

void CpuBackend::conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
                        float* y) {
  nn::conv2d(s, x, w, b, y);
}

void CpuBackend::group_norm(const float* x, const float* w, const float* b, float* y, int B, int C,
                            int HW, int G, float eps, bool swish) {
  nn::group_norm(x, w, b, y, B, C, HW, G, eps, swish);
}

void CpuBackend::upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  nn::upsample_nearest2x(x, y, N, H, W);
}

void CpuBackend::spatial_attention(const float* q, const float* k, const float* v, float* out,
                                   int B, int C, int HW, float scale) {
  const size_t img = size_t(C) * HW;
  for (int b = 0; b < B; ++b)
    nn::spatial_attention(q + b * img, k + b * img, v + b * img, out + b * img, C, HW, scale);
}

void CpuBackend::pool2d(const float* x, float* y, int N, int H, int W, int k, int stride, int pad,
                        bool max) {
  nn::pool2d(x, y, N, H, W, k, stride, pad, max);
}

void CpuBackend::global_avg_pool(const float* x, float* y, int N, int HW) {
  nn::global_avg_pool(x, y, N, HW);
}

void CpuBackend::channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c) {
      float* p = x + (size_t(b) * C + c) * HW;
      const float bc = bias ? bias[c] : 0.f;
#pragma omp simd
      for (int i = 0; i < HW; ++i) {
        const float v = p[i] + bc;
        p[i] = relu ? std::max(v, 0.f) : v;
      }
    }
}

// Per (batch, head): out_i = sum_{j <= i} softmax_j(scale q_i . k_j) v_j.
void CpuBackend::causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                                      float scale) {
  const int D = H * Dh;
#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(N));
#pragma omp for collapse(2) schedule(static)
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        const float* base = qkv + size_t(b) * N * 3 * D + size_t(h) * Dh;
        for (int i = 0; i < N; ++i) {
          const float* q = base + size_t(i) * 3 * D;
          float mx = -INFINITY;
          for (int j = 0; j <= i; ++j) {
            const float* k = base + size_t(j) * 3 * D + D;
            float acc = 0.f;
            for (int d = 0; d < Dh; ++d) acc += q[d] * k[d];
            s[size_t(j)] = acc * scale;
            mx = std::max(mx, s[size_t(j)]);
          }
          float sum = 0.f;
          for (int j = 0; j <= i; ++j) sum += (s[size_t(j)] = std::exp(s[size_t(j)] - mx));
          const float inv = 1.f / sum;
          float* o = out + (size_t(b) * N + i) * D + size_t(h) * Dh;
          for (int d = 0; d < Dh; ++d) o[d] = 0.f;
          for (int j = 0; j <= i; ++j) {
            const float* v = base + size_t(j) * 3 * D + 2 * D;
            const float p = s[size_t(j)] * inv;
            for (int d = 0; d < Dh; ++d) o[d] += p * v[d];
          }
        }
      }
  }
}

}  // namespace uvit
