// Kernels of the inference-only encoders (autoencoder, FID Inception, CLIP text model), fp32 only.
// The reference semantics are the CPU backend's (src/backend/cpu/convnet.cpp, src/nn/*.cpp).
//
// - im2col, upsample, pool2d, channel_bias_act, resize_bilinear: one thread per output element
//   (grid-stride); images may be channel slices of wider tensors (strides between images).
// - group_norm: one block per (image, group) slab (contiguous in [B, C, HW]); two passes (mean,
//   then centred squares) with fixed-order block reductions, then the affine (+ swish) pass.
// - softmax_rows: one block per row, in place.
// - global_avg_pool: one warp per plane, accumulated in double as on the CPU.
// - causal_attention: one block per (batch, head), K and V staged in shared memory when they fit;
//   each warp takes queries in turn, two passes over its keys (max, then exp-sum and P V), so no
//   per-query score storage is needed and any N works.
#include <cmath>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum (or max) over the block, same value returned to every thread, in a fixed order (so the
// result is reproducible). blockDim.x must be a multiple of 32; red holds 33 floats.
template <bool kMax>
__device__ float block_reduce(float v, float* red) {
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = kMax ? warp_max(v) : warp_sum(v);
  __syncthreads();  // red may still be read from the previous call
  if (lane == 0) red[wid] = v;
  __syncthreads();
  if (wid == 0) {
    float t = lane < nw ? red[lane] : (kMax ? -INFINITY : 0.f);
    t = kMax ? warp_max(t) : warp_sum(t);
    if (lane == 0) red[32] = t;
  }
  __syncthreads();
  return red[32];
}

// ---- im2col ----
// cols[n, (c*kh + u)*kw + v, i*Wo + j] = x[n*xs + (c*H + i*sh - pt + u)*W + j*sw - pl + v]
// (0 outside the image)
__global__ void im2col_kernel(const float* __restrict__ x, float* __restrict__ cols, long xs, int H,
                              int W, int kh, int kw, int sh, int sw, int pt, int pl, int Ho, int Wo,
                              size_t per_img, size_t total) {
  const size_t L = size_t(Ho) * Wo;
  UVIT_GRID_STRIDE(e, total) {
    const size_t n = e / per_img, er = e % per_img;
    const size_t r = er / L;
    const int col = static_cast<int>(er % L);
    const int i = col / Wo, j = col % Wo;
    const int v = static_cast<int>(r % kw);
    const int u = static_cast<int>((r / kw) % kh);
    const size_t c = r / (size_t(kh) * kw);
    const int yy = i * sh - pt + u, xx = j * sw - pl + v;
    cols[e] = (yy >= 0 && yy < H && xx >= 0 && xx < W) ? x[n * xs + (c * H + yy) * W + xx] : 0.f;
  }
}

// ---- group norm ----
// One block per slab t = b*G + g: the cpg*HW contiguous values of channels g*cpg .. of image b.
// V = 4 when HW % 4 == 0 and x, y are 16-byte aligned (a pack then never straddles channels).
// x and y may alias: every element is read and written by the same thread, and the statistics
// passes finish (block_reduce synchronises) before any write.
template <int V>
__global__ void group_norm_kernel(const float* x, const float* __restrict__ w,
                                  const float* __restrict__ b, float* y, int C, int HW, int G,
                                  float eps, bool swish) {
  __shared__ float red[33];
  const int cpg = C / G;
  const int bi = blockIdx.x / G, g = blockIdx.x % G;
  const size_t off = (size_t(bi) * C + size_t(g) * cpg) * HW;
  const size_t n = size_t(cpg) * HW, nv = n / V;
  const float* xs = x + off;
  float* ys = y + off;

  float s = 0.f;
  for (size_t p = threadIdx.x; p < nv; p += blockDim.x) {
    float r[V];
    load_pack<V>(xs + p * V, r);
#pragma unroll
    for (int k = 0; k < V; ++k) s += r[k];
  }
  const float mean = block_reduce<false>(s, red) / float(n);

  float q = 0.f;
  for (size_t p = threadIdx.x; p < nv; p += blockDim.x) {
    float r[V];
    load_pack<V>(xs + p * V, r);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float d = r[k] - mean;
      q += d * d;
    }
  }
  const float var = block_reduce<false>(q, red) / float(n);  // biased
  const float rstd = 1.f / sqrtf(var + eps);

  for (size_t p = threadIdx.x; p < nv; p += blockDim.x) {
    const int ch = g * cpg + static_cast<int>((p * V) / HW);
    const float sc = rstd * w[ch], shift = b[ch] - mean * sc;
    float r[V];
    load_pack<V>(xs + p * V, r);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = r[k] * sc + shift;
      r[k] = swish ? v / (1.f + expf(-v)) : v;
    }
    store_pack<V>(ys + p * V, r);
  }
}

// ---- upsample ----
// y [N, 2H, 2W]: output row r (over all planes) reads input row r / 2.
__global__ void upsample2x_kernel(const float* __restrict__ x, float* __restrict__ y, int W,
                                  size_t total) {
  const int W2 = 2 * W;
  UVIT_GRID_STRIDE(e, total) {
    const size_t r = e / W2;
    const int ox = static_cast<int>(e % W2);
    y[e] = x[(r >> 1) * W + (ox >> 1)];
  }
}

// ---- softmax over rows (one block per row, in place) ----
__global__ void softmax_rows_kernel(float* x, int cols) {
  __shared__ float red[33];
  float* r = x + size_t(blockIdx.x) * cols;
  float m = -INFINITY;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, r[j]);
  m = block_reduce<true>(m, red);
  float s = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) {
    const float e = expf(r[j] - m);
    r[j] = e;  // read back below by this same thread
    s += e;
  }
  const float inv = 1.f / block_reduce<false>(s, red);
  for (int j = threadIdx.x; j < cols; j += blockDim.x) r[j] *= inv;
}

// ---- pooling ----
// The max, or the mean over the in-image taps (count_include_pad=False), of each window. Plane
// (b, c) of x is at b*xs + c*H*W, of y at b*ys + c*Ho*Wo.
__global__ void pool2d_kernel(const float* __restrict__ x, float* __restrict__ y, int C, int H,
                              int W, int Ho, int Wo, int k, int stride, int pad, bool is_max,
                              long xs, long ys, size_t total) {
  const size_t ohw = size_t(Ho) * Wo;
  UVIT_GRID_STRIDE(e, total) {
    const int j = static_cast<int>(e % Wo);
    const int i = static_cast<int>((e / Wo) % Ho);
    const size_t plane = e / ohw, b = plane / C, c = plane % C;
    const float* xp = x + b * xs + c * H * W;
    const int u0 = max(i * stride - pad, 0), u1 = min(i * stride - pad + k, H);
    const int v0 = max(j * stride - pad, 0), v1 = min(j * stride - pad + k, W);
    float out = 0.f;  // a window with no in-image tap (pad >= k, invalid in PyTorch) gives 0
    if (u0 < u1 && v0 < v1) {
      float acc = is_max ? xp[u0 * W + v0] : 0.f;  // padding never wins a max
      for (int u = u0; u < u1; ++u)
        for (int v = v0; v < v1; ++v) {
          const float t = xp[u * W + v];
          acc = is_max ? fmaxf(acc, t) : acc + t;
        }
      out = is_max ? acc : acc / float((u1 - u0) * (v1 - v0));
    }
    y[b * ys + c * ohw + size_t(i) * Wo + j] = out;
  }
}

// One warp per plane; the plane's sum in double (as the CPU).
constexpr int kGapWarps = 8;
__global__ void global_avg_pool_kernel(const float* __restrict__ x, float* __restrict__ y, int N,
                                       int HW) {
  const int lane = threadIdx.x & 31;
  const long p = long(blockIdx.x) * kGapWarps + (threadIdx.x >> 5);
  if (p >= N) return;
  const float* xp = x + size_t(p) * HW;
  double s = 0;
  for (int i = lane; i < HW; i += 32) s += xp[i];
  s = warp_sum_d(s);
  if (lane == 0) y[p] = static_cast<float>(s / double(HW));
}

// x[b*stride + c*HW + i] += bias[c] (when bias), then ReLU. V = 4 when HW and stride are
// multiples of 4 and x is aligned (a pack then never straddles channels or images).
template <int V>
__global__ void channel_bias_act_kernel(float* x, const float* __restrict__ bias, int C, int HW,
                                        bool relu, long stride, size_t total_packs) {
  const size_t chw = size_t(C) * HW;
  UVIT_GRID_STRIDE(p, total_packs) {
    const size_t e = p * V, b = e / chw, r0 = e % chw;
    const float bc = bias ? bias[r0 / HW] : 0.f;
    float* xe = x + b * stride + r0;
    float r[V];
    load_pack<V>(xe, r);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const float v = r[k] + bc;
      r[k] = v < 0.f && relu ? 0.f : v;  // NaN passes through, as std::max(v, 0.f)
    }
    store_pack<V>(xe, r);
  }
}

// ---- bilinear resize (align_corners=False), then * scale + shift ----
// One source axis tap, as nn::resize_bilinear computes it on the host: src = max(r * (d + 0.5) -
// 0.5, 0), r = in / out; the lower index, the upper one (clamped) and the upper weight.
// Explicitly rounded products and sums (__fmul_rn, __fadd_rn): nvcc would otherwise contract them
// into FMAs, whose one-ulp differences in src (3e-5 at src ~ 300) move the weights off the CPU's.
__device__ __forceinline__ void resize_tap(int d, int in, float r, int& i0, int& i1, float& l1) {
  const float src = fmaxf(__fadd_rn(__fmul_rn(r, float(d) + 0.5f), -0.5f), 0.f);
  i0 = static_cast<int>(src);
  i1 = i0 + (i0 < in - 1 ? 1 : 0);
  l1 = fminf(fmaxf(src - float(i0), 0.f), 1.f);
}

// TF 1.x's legacy tap (nn::resize_bilinear_tf1): src = d * r, lower floor, upper min(ceil, in - 1).
__device__ __forceinline__ void resize_tap_tf1(int d, int in, float r, int& i0, int& i1,
                                               float& l1) {
  const float src = __fmul_rn(float(d), r);
  const float f = floorf(src);
  i0 = max(static_cast<int>(f), 0);
  i1 = min(static_cast<int>(ceilf(src)), in - 1);
  l1 = __fsub_rn(src, f);
}

// The TF1 kernel: TF's lerps, top = tl + (tr - tl) * xl, out = top + (bottom - top) * yl, each
// operation rounded (no FMA) as on the host.
__global__ void resize_bilinear_tf1_kernel(const float* __restrict__ x, float* __restrict__ y,
                                           int H, int W, int oh, int ow, float rh, float rw,
                                           float scale, float shift, bool affine, size_t total) {
  UVIT_GRID_STRIDE(e, total) {
    const int j = static_cast<int>(e % ow);
    const int i = static_cast<int>((e / ow) % oh);
    const float* xp = x + (e / (size_t(oh) * ow)) * H * W;
    int i0, i1, j0, j1;
    float yl, xl;
    resize_tap_tf1(i, H, rh, i0, i1, yl);
    resize_tap_tf1(j, W, rw, j0, j1, xl);
    const float *r0 = xp + size_t(i0) * W, *r1 = xp + size_t(i1) * W;
    const float top = __fadd_rn(r0[j0], __fmul_rn(__fsub_rn(r0[j1], r0[j0]), xl));
    const float bottom = __fadd_rn(r1[j0], __fmul_rn(__fsub_rn(r1[j1], r1[j0]), xl));
    const float v = __fadd_rn(top, __fmul_rn(__fsub_rn(bottom, top), yl));
    y[e] = affine ? __fadd_rn(__fmul_rn(v, scale), shift) : v;
  }
}

__global__ void resize_bilinear_kernel(const float* __restrict__ x, float* __restrict__ y, int H,
                                       int W, int oh, int ow, float rh, float rw, float scale,
                                       float shift, bool affine, size_t total) {
  UVIT_GRID_STRIDE(e, total) {
    const int j = static_cast<int>(e % ow);
    const int i = static_cast<int>((e / ow) % oh);
    const float* xp = x + (e / (size_t(oh) * ow)) * H * W;
    int i0, i1, j0, j1;
    float a1, b1;
    resize_tap(i, H, rh, i0, i1, a1);
    resize_tap(j, W, rw, j0, j1, b1);
    const float a0 = 1.f - a1, b0 = 1.f - b1;
    const float *r0 = xp + size_t(i0) * W, *r1 = xp + size_t(i1) * W;
    const float t0 = __fadd_rn(__fmul_rn(b0, r0[j0]), __fmul_rn(b1, r0[j1]));
    const float t1 = __fadd_rn(__fmul_rn(b0, r1[j0]), __fmul_rn(b1, r1[j1]));
    const float v = __fadd_rn(__fmul_rn(a0, t0), __fmul_rn(a1, t1));
    y[e] = affine ? __fadd_rn(__fmul_rn(v, scale), shift) : v;
  }
}

// ---- causal attention ----
constexpr int kCaWarps = 8;
constexpr size_t kSmemLimit = 48 * 1024;  // no opt-in needed below this

// One block per (b, h). Shared memory: [K: N x (Dh+1) | V: N x Dh] when staged (the +1 keeps the
// lanes' reads of different key rows on different banks), then per warp q [Dh] and o [Dh].
__global__ void causal_attention_kernel(const float* __restrict__ qkv, float* __restrict__ out,
                                        int N, int H, int Dh, float scale, bool stage) {
  extern __shared__ float smem[];
  const int D = H * Dh, ld = 3 * D;
  const int b = blockIdx.x / H, h = blockIdx.x % H;
  const float* base = qkv + size_t(b) * N * ld + size_t(h) * Dh;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;

  const float* K = base + D;  // key j at K + j * kld
  const float* Vv = base + 2 * D;
  size_t kld = ld, vld = ld;
  float* wbuf = smem;
  if (stage) {
    float* sK = smem;
    float* sV = smem + size_t(N) * (Dh + 1);
    for (size_t e = threadIdx.x; e < size_t(N) * Dh; e += blockDim.x) {
      const size_t j = e / Dh;
      const int d = static_cast<int>(e % Dh);
      sK[j * (Dh + 1) + d] = K[j * ld + d];
      sV[j * Dh + d] = Vv[j * ld + d];
    }
    K = sK;
    Vv = sV;
    kld = Dh + 1;
    vld = Dh;
    wbuf = sV + size_t(N) * Dh;
    __syncthreads();
  }
  float* sq = wbuf + size_t(wid) * 2 * Dh;
  float* so = sq + Dh;

  for (int i = wid; i < N; i += kCaWarps) {
    __syncwarp();  // the previous query's reads of sq / so are done
    const float* q = base + size_t(i) * ld;
    for (int d = lane; d < Dh; d += 32) {
      sq[d] = q[d];
      so[d] = 0.f;
    }
    __syncwarp();
    // Pass 1: the maximum score over keys j <= i (lanes over keys).
    float m = -INFINITY;
    for (int j = lane; j <= i; j += 32) {
      const float* kj = K + size_t(j) * kld;
      float acc = 0.f;
      for (int d = 0; d < Dh; ++d) acc += sq[d] * kj[d];
      m = fmaxf(m, acc * scale);
    }
    m = warp_max(m);
    // Pass 2: p_j = exp(s_j - m) per lane's key, then o += p_j v_j with lanes over d.
    float sum = 0.f;
    for (int j0 = 0; j0 <= i; j0 += 32) {
      const int j = j0 + lane;
      float p = 0.f;
      if (j <= i) {
        const float* kj = K + size_t(j) * kld;
        float acc = 0.f;
        for (int d = 0; d < Dh; ++d) acc += sq[d] * kj[d];
        p = expf(acc * scale - m);
        sum += p;
      }
      const int cnt = min(32, i - j0 + 1);
      for (int jj = 0; jj < cnt; ++jj) {
        const float pj = __shfl_sync(0xffffffffu, p, jj);
        const float* vj = Vv + size_t(j0 + jj) * vld;
        for (int d = lane; d < Dh; d += 32) so[d] += pj * vj[d];
      }
    }
    const float inv = 1.f / warp_sum(sum);
    float* o = out + (size_t(b) * N + i) * D + size_t(h) * Dh;
    for (int d = lane; d < Dh; d += 32) o[d] = so[d] * inv;  // so[d] is this lane's own
  }
}

}  // namespace

void im2col(const float* x, float* cols, const Conv2dShape& s, int images) {
  const int Ho = s.out_h(), Wo = s.out_w();
  if (images <= 0 || s.Cin <= 0 || Ho <= 0 || Wo <= 0) return;
  const size_t per_img = size_t(s.Cin) * s.kh * s.kw * Ho * Wo, total = per_img * images;
  im2col_kernel<<<grid_for(total, kThreads), kThreads>>>(
      x, cols, s.in_stride(), s.H, s.W, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, Ho, Wo, per_img, total);
  check_launch("im2col_kernel");
}

void group_norm(const float* x, const float* w, const float* b, float* y, int B, int C, int HW,
                int G, float eps, bool swish) {
  UVIT_CHECK(B > 0 && C > 0 && HW > 0 && G > 0 && C % G == 0, "group_norm: ", C,
             " channels do not split into ", G, " groups");
  const long blocks = long(B) * G;
  UVIT_CHECK(blocks < (1L << 31), "group_norm: ", blocks, " (image, group) slabs is too many");
  constexpr unsigned threads = 512;
  if (HW % 4 == 0 && aligned16(x) && aligned16(y))
    group_norm_kernel<4><<<unsigned(blocks), threads>>>(x, w, b, y, C, HW, G, eps, swish);
  else
    group_norm_kernel<1><<<unsigned(blocks), threads>>>(x, w, b, y, C, HW, G, eps, swish);
  check_launch("group_norm_kernel");
}

void upsample_nearest2x(const float* x, float* y, int N, int H, int W) {
  if (N <= 0 || H <= 0 || W <= 0) return;
  const size_t total = size_t(N) * 4 * H * W;
  upsample2x_kernel<<<grid_for(total, kThreads), kThreads>>>(x, y, W, total);
  check_launch("upsample2x_kernel");
}

void softmax_rows(float* x, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return;
  softmax_rows_kernel<<<unsigned(rows), kThreads>>>(x, cols);
  check_launch("softmax_rows_kernel");
}

void pool2d(const float* x, float* y, int B, int C, int H, int W, int k, int stride, int pad,
            bool max, long xs, long ys) {
  UVIT_CHECK(k > 0 && stride > 0 && pad >= 0, "pool2d: invalid window k=", k, " stride=", stride,
             " pad=", pad);
  const int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
  if (B <= 0 || C <= 0 || H <= 0 || W <= 0 || Ho <= 0 || Wo <= 0) return;
  const size_t total = size_t(B) * C * Ho * Wo;
  if (xs == 0) xs = long(C) * H * W;
  if (ys == 0) ys = long(C) * Ho * Wo;
  pool2d_kernel<<<grid_for(total, kThreads), kThreads>>>(x, y, C, H, W, Ho, Wo, k, stride, pad, max,
                                                         xs, ys, total);
  check_launch("pool2d_kernel");
}

void global_avg_pool(const float* x, float* y, int N, int HW) {
  if (N <= 0 || HW <= 0) return;
  const unsigned blocks = unsigned((long(N) + kGapWarps - 1) / kGapWarps);
  global_avg_pool_kernel<<<blocks, kGapWarps * 32>>>(x, y, N, HW);
  check_launch("global_avg_pool_kernel");
}

void channel_bias_act(float* x, const float* bias, int B, int C, int HW, bool relu, long stride) {
  if (B <= 0 || C <= 0 || HW <= 0 || (!bias && !relu)) return;
  const size_t total = size_t(B) * C * HW;
  if (stride == 0) stride = long(C) * HW;
  if (HW % 4 == 0 && stride % 4 == 0 && aligned16(x))
    channel_bias_act_kernel<4>
        <<<grid_for(total / 4, kThreads), kThreads>>>(x, bias, C, HW, relu, stride, total / 4);
  else
    channel_bias_act_kernel<1>
        <<<grid_for(total, kThreads), kThreads>>>(x, bias, C, HW, relu, stride, total);
  check_launch("channel_bias_act_kernel");
}

void resize_bilinear(const float* x, float* y, int planes, int H, int W, int oh, int ow,
                     float scale, float shift, bool tf1) {
  if (planes <= 0 || H <= 0 || W <= 0 || oh <= 0 || ow <= 0) return;
  const size_t total = size_t(planes) * oh * ow;
  const bool affine = scale != 1.f || shift != 0.f;
  const float rh = float(H) / float(oh), rw = float(W) / float(ow);
  if (tf1) {
    resize_bilinear_tf1_kernel<<<grid_for(total, kThreads), kThreads>>>(
        x, y, H, W, oh, ow, rh, rw, scale, shift, affine, total);
    check_launch("resize_bilinear_tf1_kernel");
    return;
  }
  resize_bilinear_kernel<<<grid_for(total, kThreads), kThreads>>>(x, y, H, W, oh, ow, rh, rw, scale,
                                                                  shift, affine, total);
  check_launch("resize_bilinear_kernel");
}

void causal_attention(const float* qkv, float* out, int B, int N, int H, int Dh, float scale) {
  if (B <= 0 || N <= 0 || H <= 0 || Dh <= 0) return;
  const size_t warp_bytes = size_t(kCaWarps) * 2 * Dh * sizeof(float);
  UVIT_CHECK(warp_bytes <= kSmemLimit, "causal_attention: head dim ", Dh, " is too large (max ",
             kSmemLimit / (kCaWarps * 2 * sizeof(float)), ")");
  const size_t staged = size_t(N) * (2 * Dh + 1) * sizeof(float) + warp_bytes;
  const bool stage = staged <= kSmemLimit;
  const long blocks = long(B) * H;
  UVIT_CHECK(blocks < (1L << 31), "causal_attention: ", blocks, " (batch, head) pairs is too many");
  causal_attention_kernel<<<unsigned(blocks), kCaWarps * 32, stage ? staged : warp_bytes>>>(
      qkv, out, N, H, Dh, scale, stage);
  check_launch("causal_attention_kernel");
}

}  // namespace uvit::cuda
