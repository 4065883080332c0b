// CudaBackend's inference-only encoder kernels (autoencoder, FID Inception, CLIP). They are fp32
// models: convolutions are im2col + cuBLASLt strided-batched GEMMs (exact fp32; in tf32, cuDNN
// where it takes the geometry), the spatial attention two GEMMs around a row softmax; the rest are
// the launchers of convnet.cu.
#include <algorithm>

#include "backend/cuda/cuda_backend.hpp"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/cudnn_conv.hpp"
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
  cuda::OpScope t(optimes_, [&] {
    return cat("conv2d ", s.kh, "x", s.kw, "/", s.sh, " ", s.Cin, "->", s.Cout, " ", s.H, "x", s.W,
               " B", s.B, tf32_ && cudnn_ ? " tf32" : "");
  });
  const int Ho = s.out_h(), Wo = s.out_w(), K = s.Cin * s.kh * s.kw, L = Ho * Wo;
  const long xs = s.in_stride(), ys = s.out_stride();
  auto add_bias = [&] {
    if (b) cuda::channel_bias_act(y, b, s.B, s.Cout, L, false, ys);
  };
  if (tf32_) {  // cuDNN, as PyTorch (created on the first tf32 convolution)
    if (!cudnn_tried_) cudnn_ = cuda::make_cudnn_conv(0), cudnn_tried_ = true;
    if (cudnn_ && cudnn_->forward(s, x, w, y)) return add_bias();
  }
  const bool direct = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.pt == 0 && s.pl == 0 &&
                      s.pb == 0 && s.pr == 0;
  // y_n [Cout, L] = w [Cout, K] x cols_n [K, L] for all images in one strided-batched GEMM (w
  // shared: stride 0). The columns of a chunk of images are capped at kColFloats (the workspace).
  constexpr size_t kColFloats = size_t(64) << 20;  // 256 MiB
  const size_t per_img = size_t(K) * L;
  const int chunk = direct ? s.B : int(std::clamp<size_t>(kColFloats / per_img, 1, size_t(s.B)));
  float* cols = direct ? nullptr : workspace(per_img * chunk);
  for (int n0 = 0; n0 < s.B; n0 += chunk) {
    const int nb = std::min(chunk, s.B - n0);
    const float* xn = x + n0 * xs;
    if (!direct) cuda::im2col(xn, cols, s, nb);
    gemm_->gemm_batched(false, false, s.Cout, L, K, 1.f, w, K, 0, direct ? xn : cols, L,
                        direct ? xs : long(per_img), 0.f, y + n0 * ys, L, ys, nb);
  }
  add_bias();
}

void CudaBackend::group_norm(const float* x, const float* w, const float* b, float* y, int B, int C,
                             int HW, int G, float eps, bool swish) {
  require_fp32("group_norm");
  cuda::OpScope t(optimes_, [&] { return cat("group_norm C", C, " HW", HW, " B", B); });
  UVIT_CHECK(B > 0 && C > 0 && HW > 0 && G > 0 && C % G == 0, "group_norm: ", C,
             " channels do not split into ", G, " groups");
  cuda::group_norm(x, w, b, y, B, C, HW, G, eps, swish);
}

void CudaBackend::upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  require_fp32("upsample_nearest2x");
  cuda::OpScope t(optimes_, [&] { return cat("upsample2x ", N, " planes ", H, "x", W); });
  cuda::upsample_nearest2x(x, y, N, H, W);
}

void CudaBackend::spatial_attention(const float* q, const float* k, const float* v, float* out,
                                    int B, int C, int HW, float scale) {
  require_fp32("spatial_attention");
  cuda::OpScope t(optimes_, [&] { return cat("spatial_attention C", C, " HW", HW, " B", B); });
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

void CudaBackend::pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride,
                         int pad, bool max, long x_stride, long y_stride) {
  UVIT_OPTIME(optimes_, "pool2d B=", B, " C=", C, " ", H, "x", W, " k=", k, max ? " max" : " avg");
  require_fp32("pool2d");
  cuda::pool2d(x, y, B, C, H, W, k, stride, pad, max, x_stride, y_stride);
}

void CudaBackend::global_avg_pool(const float* x, float* y, int N, int HW) {
  UVIT_OPTIME(optimes_, "global_avg_pool N=", N, " HW=", HW);
  require_fp32("global_avg_pool");
  cuda::global_avg_pool(x, y, N, HW);
}

void CudaBackend::channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu,
                                   long stride) {
  UVIT_OPTIME(optimes_, "channel_bias_act B=", B, " C=", C, " HW=", HW);
  require_fp32("channel_bias_act");
  cuda::channel_bias_act(x, bias, B, C, HW, relu, stride);
}

void CudaBackend::resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh,
                                  int ow, float scale, float shift, bool tf1) {
  UVIT_OPTIME(optimes_, "resize_bilinear planes=", planes, " ", H, "x", W, "->", oh, "x", ow,
              tf1 ? " tf1" : "");
  require_fp32("resize_bilinear");
  cuda::resize_bilinear(x, y, planes, H, W, oh, ow, scale, shift, tf1);
}

void CudaBackend::copy_2d(float* dst, long ld_dst, const float* src, long ld_src, long rows,
                          long cols) {
  UVIT_OPTIME(optimes_, "copy_2d rows=", rows, " cols=", cols);
  if (rows <= 0 || cols <= 0) return;
  UVIT_CHECK(ld_dst >= cols && ld_src >= cols, "copy_2d: rows of ", cols,
             " floats do not fit leading dimensions ", ld_dst, " and ", ld_src);
  UVIT_CUDA_CHECK(cudaMemcpy2DAsync(dst, size_t(ld_dst) * sizeof(float), src,
                                    size_t(ld_src) * sizeof(float), size_t(cols) * sizeof(float),
                                    size_t(rows), cudaMemcpyDeviceToDevice, 0));
}

void CudaBackend::causal_attention_fwd(const float* qkv, float* out, int B, int N, int H, int Dh,
                                       float scale) {
  UVIT_OPTIME(optimes_, "causal_attention_fwd B=", B, " N=", N, " H=", H, " Dh=", Dh);
  require_fp32("causal_attention_fwd");
  cuda::causal_attention(qkv, out, B, N, H, Dh, scale);
}

}  // namespace uvit
