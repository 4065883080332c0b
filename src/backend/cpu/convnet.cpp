// The CPU backend's kernels for the inference-only encoders (autoencoder, FID Inception, CLIP text
// model): thin wrappers over the nn:: layers, plus CLIP's causal attention.
#include <algorithm>
#include <cmath>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "uvit/error.hpp"
#include "uvit/inception.hpp"  // nn::resize_bilinear
#include "uvit/nn.hpp"

namespace uvit {

void CpuBackend::conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
                        float* y) {
  require_fp32("conv2d");
  s.check();
  Conv2dShape d = s;  // nn::conv2d takes dense images
  d.x_stride = d.y_stride = 0;
  if (s.B == 1 || (s.in_stride() == d.in_stride() && s.out_stride() == d.out_stride()))
    return nn::conv2d(d, x, w, b, y);
  d.B = 1;  // channel slices of wider tensors: one image at a time
  for (int n = 0; n < s.B; ++n) nn::conv2d(d, x + n * s.in_stride(), w, b, y + n * s.out_stride());
}

void CpuBackend::group_norm(const float* x, const float* w, const float* b, float* y, int B, int C,
                            int HW, int G, float eps, bool swish) {
  require_fp32("group_norm");
  nn::group_norm(x, w, b, y, B, C, HW, G, eps, swish);
}

void CpuBackend::upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  nn::upsample_nearest2x(x, y, N, H, W);
}

void CpuBackend::spatial_attention(const float* q, const float* k, const float* v, float* out,
                                   int B, int C, int HW, float scale) {
  require_fp32("spatial_attention");
  const size_t img = size_t(C) * HW;
  for (int b = 0; b < B; ++b)
    nn::spatial_attention(q + b * img, k + b * img, v + b * img, out + b * img, C, HW, scale);
}

void CpuBackend::pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride,
                        int pad, bool max, long x_stride, long y_stride) {
  UVIT_CHECK(k > 0 && stride > 0 && pad >= 0, "pool2d: invalid window k=", k, " stride=", stride,
             " pad=", pad);
  const long Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
  const long xs = x_stride ? x_stride : long(C) * H * W, ys = y_stride ? y_stride : C * Ho * Wo;
  if (B == 1 || (xs == long(C) * H * W && ys == C * Ho * Wo))
    return nn::pool2d(x, y, B * C, H, W, k, stride, pad, max);
  for (int b = 0; b < B; ++b)  // channel slices of wider tensors: one image at a time
    nn::pool2d(x + b * xs, y + b * ys, C, H, W, k, stride, pad, max);
}

void CpuBackend::global_avg_pool(const float* x, float* y, int N, int HW) {
  nn::global_avg_pool(x, y, N, HW);
}

void CpuBackend::channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                                  long stride) {
  const size_t st = stride ? size_t(stride) : size_t(C) * HW;
#pragma omp parallel for collapse(2) schedule(static)
  for (int b = 0; b < B; ++b)
    for (int c = 0; c < C; ++c) {
      float* p = x + size_t(b) * st + size_t(c) * HW;
      const float bc = bias ? bias[c] : 0.f;
#pragma omp simd
      for (int i = 0; i < HW; ++i) {
        const float v = p[i] + bc;
        p[i] = relu ? std::max(v, 0.f) : v;
      }
    }
}

void CpuBackend::resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh, int ow,
                                 float scale, float shift, bool tf1) {
  if (tf1)
    nn::resize_bilinear_tf1(x, y, planes, H, W, oh, ow);
  else
    nn::resize_bilinear(x, y, planes, H, W, oh, ow);
  if (scale == 1.f && shift == 0.f) return;
  const long n = long(planes) * oh * ow;
#pragma omp parallel for simd schedule(static)
  for (long i = 0; i < n; ++i) y[i] = y[i] * scale + shift;
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
