// CudaBackend's inference-only encoder kernels (autoencoder, FID Inception, CLIP). They are fp32
// models: convolutions are im2col + cuBLASLt fp32 GEMMs per image, the spatial attention two GEMMs
// around a row softmax; the rest are the launchers of convnet.cu.
#include <algorithm>

#include "backend/cuda/cuda_backend.hpp"
#include "uvit/error.hpp"

namespace uvit {

void CudaBackend::require_fp32(const char* op) const {
  UVIT_CHECK(!bf16_, "cuda backend: ", op, " runs in fp32 only (this backend is bf16)");
}

float* CudaBackend::workspace(size_t floats) {
  if (floats > ws_floats_) {
    if (ws_) free_bytes(ws_);  // cudaFree waits for kernels still reading it
    ws_ = nullptr;
    ws_floats_ = 0;
    ws_ = alloc(floats);
    ws_floats_ = floats;
  }
  return ws_;
}

void CudaBackend::conv2d(const Conv2dShape& s, const float* x, const float* w, const float* b,
                         float* y) {
  require_fp32("conv2d");
  s.check();  // a bad shape must not size the workspace or the kernels
  const int Ho = s.out_h(), Wo = s.out_w(), K = s.Cin * s.kh * s.kw;
  const size_t in_img = size_t(s.Cin) * s.H * s.W, out_img = size_t(s.Cout) * Ho * Wo;
  const bool direct = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pl == 0 &&
                      s.pb == 0 && s.pr == 0;
  float* cols = direct ? nullptr : workspace(size_t(K) * Ho * Wo);
  for (int n = 0; n < s.B; ++n) {
    const float* xn = x + n * in_img;
    if (!direct) cuda::im2col(xn, cols, s);
    // y_n [Cout, Ho*Wo] = w [Cout, K] x cols [K, Ho*Wo]
    gemm_->gemm(false, false, s.Cout, Ho * Wo, K, 1.f, w, K, direct ? xn : cols, Ho * Wo, 0.f,
                y + n * out_img, Ho * Wo);
  }
  if (b) cuda::channel_bias_act(y, b, s.B, s.Cout, Ho * Wo, false);
}

void CudaBackend::group_norm(const float* x, const float* w, const float* b, float* y, int B, int C,
                             int HW, int G, float eps, bool swish) {
  require_fp32("group_norm");
  UVIT_CHECK(B > 0 && C > 0 && HW > 0 && G > 0 && C % G == 0, "group_norm: ", C,
             " channels do not split into ", G, " groups");
  cuda::group_norm(x, w, b, y, B, C, HW, G, eps, swish);
}

void CudaBackend::upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  require_fp32("upsample_nearest2x");
  cuda::upsample_nearest2x(x, y, N, H, W);
}

void CudaBackend::spatial_attention(const float* q, const float* k, const float* v, float* out,
                                    int B, int C, int HW, float scale) {
  require_fp32("spatial_attention");
  const size_t img = size_t(C) * HW;
  float* s = workspace(size_t(HW) * HW);  // 64 MiB at 512 px (HW = 4096)
  for (int n = 0; n < B; ++n) {
    // s[i, j] = scale * sum_d q[d, i] k[d, j]   (q, k stored [C, HW])
    gemm_->gemm(true, false, HW, HW, C, scale, q + n * img, HW, k + n * img, HW, 0.f, s, HW);
    cuda::softmax_rows(s, HW, HW);
    // out[c, i] = sum_j v[c, j] s[i, j]
    gemm_->gemm(false, true, C, HW, HW, 1.f, v + n * img, HW, s, HW, 0.f, out + n * img, HW);
  }
}

void CudaBackend::pool2d(const float* x, float* y, int N, int H, int W, int k, int stride, int pad,
                         bool max) {
  require_fp32("pool2d");
  cuda::pool2d(x, y, N, H, W, k, stride, pad, max);
}

void CudaBackend::global_avg_pool(const float* x, float* y, int N, int HW) {
  require_fp32("global_avg_pool");
  cuda::global_avg_pool(x, y, N, HW);
}

void CudaBackend::channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu) {
  require_fp32("channel_bias_act");
  cuda::channel_bias_act(x, bias, B, C, HW, relu);
}

void CudaBackend::causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                                       float scale) {
  require_fp32("causal_attention_fwd");
  cuda::causal_attention(qkv, out, B, N, H, Dh, scale);
}

}  // namespace uvit
