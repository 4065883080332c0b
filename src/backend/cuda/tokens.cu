// Token plumbing on the device: patch im2col/col2im, sequence assembly with position embeddings
// (and its backward, whose dpos is a column sum over the batch), timestep and label embeddings,
// unpatchify. One thread per output element (or 16-byte pack of them); index shuffles only.
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

// cols[b*L + i*g + j, (c*p + u)*p + v] = x[b, c, i*p + u, j*p + v]
template <class T>
__global__ void im2col_kernel(const float* __restrict__ x, T* __restrict__ cols, int B, int C,
                              int H, int W, int p) {
  const int gw = W / p, L = (H / p) * gw, P = C * p * p;
  const size_t total = size_t(B) * L * P;
  UVIT_GRID_STRIDE(e, total) {
    const size_t row = e / P;
    const int col = static_cast<int>(e % P);
    const int b = static_cast<int>(row / L), l = static_cast<int>(row % L);
    const int i = l / gw, j = l % gw;
    const int c = col / (p * p), u = (col / p) % p, v = col % p;
    cols[e] = from_f<T>(x[((size_t(b) * C + c) * H + i * p + u) * W + j * p + v]);
  }
}

template <class T>
__global__ void col2im_kernel(const T* __restrict__ cols, float* __restrict__ x, int B, int C,
                              int H, int W, int p) {
  const int gw = W / p, L = (H / p) * gw, P = C * p * p;
  const size_t total = size_t(B) * C * H * W;
  UVIT_GRID_STRIDE(e, total) {
    const int xx = static_cast<int>(e % W);
    const int yy = static_cast<int>((e / W) % H);
    const size_t bc = e / (size_t(H) * W);
    const int c = static_cast<int>(bc % C), b = static_cast<int>(bc / C);
    const int i = yy / p, u = yy % p, j = xx / p, v = xx % p;
    x[e] = to_f(cols[(size_t(b) * L + i * gw + j) * P + (c * p + u) * p + v]);
  }
}

// seq[b, t, :] = (t < E ? extras[b, t, :] : patches[b, t - E, :]) + pos[t, :], V per thread.
template <class T, int V>
__global__ void tokens_fwd_kernel(const T* __restrict__ extras, const T* __restrict__ patches,
                                  const float* __restrict__ pos, T* __restrict__ seq, int B, int E,
                                  int L, int D) {
  const int T_ = E + L, DV = D / V;
  const size_t total = size_t(B) * T_ * DV;
  UVIT_GRID_STRIDE(e, total) {
    const int d = static_cast<int>(e % DV) * V;
    const size_t bt = e / DV;
    const int t = static_cast<int>(bt % T_), b = static_cast<int>(bt / T_);
    const T* src = t < E ? extras + (size_t(b) * E + t) * D : patches + (size_t(b) * L + t - E) * D;
    float s[V], q[V];
    load_pack<V>(src + d, s);
    load_pack<V>(pos + size_t(t) * D + d, q);
#pragma unroll
    for (int k = 0; k < V; ++k) s[k] += q[k];
    store_pack<V>(seq + bt * D + d, s);
  }
}

// One thread per (t, pack of V features): copies dseq into dextras/dpatches for every b and adds
// the batch sum into dpos (fixed order over b, no atomics).
template <class T, int V>
__global__ void tokens_bwd_kernel(const T* __restrict__ dseq, T* __restrict__ dextras,
                                  T* __restrict__ dpatches, float* __restrict__ dpos, int B, int E,
                                  int L, int D) {
  const int T_ = E + L, DV = D / V;
  const size_t total = size_t(T_) * DV;
  UVIT_GRID_STRIDE(e, total) {
    const int d = static_cast<int>(e % DV) * V;
    const int t = static_cast<int>(e / DV);
    float acc[V];
#pragma unroll
    for (int k = 0; k < V; ++k) acc[k] = 0.f;
#pragma unroll 4
    for (int b = 0; b < B; ++b) {
      float g[V];
      load_pack<V>(dseq + (size_t(b) * T_ + t) * D + d, g);
      T* dst = t < E ? (dextras ? dextras + (size_t(b) * E + t) * D : nullptr)
                     : dpatches + (size_t(b) * L + t - E) * D;
      if (dst) store_pack<V>(dst + d, g);
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] += g[k];
    }
    float* dp = dpos + size_t(t) * D + d;
    float cur[V];
    load_pack<V>(dp, cur);
#pragma unroll
    for (int k = 0; k < V; ++k) cur[k] += acc[k];
    store_pack<V>(dp, cur);
  }
}

// out[b*ldo + d]: cos(t_b f_d) for d < half, sin(t_b f_{d-half}) below 2*half, 0 in an odd last.
template <class T>
__global__ void timestep_kernel(const float* __restrict__ t, const float* __restrict__ freqs,
                                T* __restrict__ out, int B, int D, int ldo) {
  const int half = D / 2;
  const size_t total = size_t(B) * D;
  UVIT_GRID_STRIDE(e, total) {
    const int d = static_cast<int>(e % D), b = static_cast<int>(e / D);
    float v = 0.f;
    if (d < half)
      v = cosf(t[b] * freqs[d]);
    else if (d < 2 * half)
      v = sinf(t[b] * freqs[d - half]);
    out[size_t(b) * ldo + d] = from_f<T>(v);
  }
}

template <class T>
__global__ void embedding_fwd_kernel(const float* __restrict__ table,
                                     const int32_t* __restrict__ idx, T* __restrict__ out, int B,
                                     int D, int ldo) {
  const size_t total = size_t(B) * D;
  UVIT_GRID_STRIDE(e, total) {
    const int d = static_cast<int>(e % D), b = static_cast<int>(e / D);
    out[size_t(b) * ldo + d] = from_f<T>(table[size_t(idx[b]) * D + d]);
  }
}

// Repeated indices add into the same row: one thread per column walks the batch in order, no
// atomics, so the sums (duplicate labels included) are the same on every run, which bit-identical
// resume needs.
template <class T>
__global__ void embedding_bwd_kernel(const T* __restrict__ dout, const int32_t* __restrict__ idx,
                                     float* dtable, int B, int D, int ldo) {
  UVIT_GRID_STRIDE(d, size_t(D)) {
    for (int b = 0; b < B; ++b) dtable[size_t(idx[b]) * D + d] += to_f(dout[size_t(b) * ldo + d]);
  }
}

// img[b, c, i*p + u, j*p + v] = tok[b, E + i*g + j, (u*p + v)*C + c]
template <class T>
__global__ void unpatchify_fwd_kernel(const T* __restrict__ tok, float* __restrict__ img, int B,
                                      int E, int C, int S, int p) {
  const int g = S / p, T_ = E + g * g, F = p * p * C;
  const size_t total = size_t(B) * C * S * S;
  UVIT_GRID_STRIDE(e, total) {
    const int xx = static_cast<int>(e % S);
    const int yy = static_cast<int>((e / S) % S);
    const size_t bc = e / (size_t(S) * S);
    const int c = static_cast<int>(bc % C), b = static_cast<int>(bc / C);
    const int i = yy / p, u = yy % p, j = xx / p, v = xx % p;
    img[e] = to_f(tok[(size_t(b) * T_ + E + i * g + j) * F + (u * p + v) * C + c]);
  }
}

template <class T>
__global__ void unpatchify_bwd_kernel(const float* __restrict__ dimg, T* __restrict__ dtok, int B,
                                      int E, int C, int S, int p) {
  const int g = S / p, T_ = E + g * g, F = p * p * C;
  const size_t total = size_t(B) * T_ * F;
  UVIT_GRID_STRIDE(e, total) {
    const int f = static_cast<int>(e % F);
    const size_t bt = e / F;
    const int t = static_cast<int>(bt % T_), b = static_cast<int>(bt / T_);
    float v = 0.f;
    if (t >= E) {
      const int l = t - E, i = l / g, j = l % g;
      const int c = f % C, uv = f / C, u = uv / p, vv = uv % p;
      v = dimg[((size_t(b) * C + c) * S + i * p + u) * S + j * p + vv];
    }
    dtok[e] = from_f<T>(v);
  }
}

template <class T>
void tokens_fwd_t(const T* extras, const T* patches, const float* pos, T* seq, int B, int E, int L,
                  int D) {
  constexpr int V = 16 / sizeof(T);
  const size_t n = size_t(B) * (E + L) * D;
  if (n == 0) return;
  if (D % V == 0 && (E == 0 || pack_ok(extras, V)) && pack_ok(patches, V) && pack_ok(pos, V) &&
      pack_ok(seq, V))
    tokens_fwd_kernel<T, V>
        <<<grid_for(n / V, kThreads), kThreads>>>(extras, patches, pos, seq, B, E, L, D);
  else
    tokens_fwd_kernel<T, 1>
        <<<grid_for(n, kThreads), kThreads>>>(extras, patches, pos, seq, B, E, L, D);
  check_launch("tokens_fwd_kernel");
}

template <class T>
void tokens_bwd_t(const T* dseq, T* dextras, T* dpatches, float* dpos, int B, int E, int L, int D) {
  constexpr int V = 16 / sizeof(T);
  const size_t n = size_t(E + L) * D;
  if (n == 0) return;
  if (D % V == 0 && pack_ok(dseq, V) && (!dextras || pack_ok(dextras, V)) && pack_ok(dpatches, V) &&
      pack_ok(dpos, V))
    tokens_bwd_kernel<T, V>
        <<<grid_for(n / V, kThreads), kThreads>>>(dseq, dextras, dpatches, dpos, B, E, L, D);
  else
    tokens_bwd_kernel<T, 1>
        <<<grid_for(n, kThreads), kThreads>>>(dseq, dextras, dpatches, dpos, B, E, L, D);
  check_launch("tokens_bwd_kernel");
}

}  // namespace

void patch_im2col(bool bf16, const float* x, void* cols, int B, int C, int H, int W, int p) {
  const size_t n = size_t(B) * C * H * W;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(
      bf16, T, im2col_kernel<<<grid_for(n, kThreads), kThreads>>>(x, as<T>(cols), B, C, H, W, p));
  check_launch("im2col_kernel");
}

void patch_col2im(bool bf16, const void* cols, float* x, int B, int C, int H, int W, int p) {
  const size_t n = size_t(B) * C * H * W;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(
      bf16, T, col2im_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(cols), x, B, C, H, W, p));
  check_launch("col2im_kernel");
}

void tokens_fwd(bool bf16, const void* extras, const void* patches, const float* pos, void* seq,
                int B, int E, int L, int D) {
  UVIT_ACT_DISPATCH(bf16, T,
                    tokens_fwd_t(as<T>(extras), as<T>(patches), pos, as<T>(seq), B, E, L, D));
}

void tokens_bwd(bool bf16, const void* dseq, void* dextras, void* dpatches, float* dpos, int B,
                int E, int L, int D) {
  UVIT_ACT_DISPATCH(bf16, T,
                    tokens_bwd_t(as<T>(dseq), as<T>(dextras), as<T>(dpatches), dpos, B, E, L, D));
}

void timestep_embedding(bool bf16, const float* t, const float* freqs, void* out, int B, int D,
                        int ldo) {
  const size_t n = size_t(B) * D;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(
      bf16, T,
      timestep_kernel<<<grid_for(n, kThreads), kThreads>>>(t, freqs, as<T>(out), B, D, ldo));
  check_launch("timestep_kernel");
}

// Grid-stride: grid_for caps the grid at 65536 blocks.
__global__ void fit_time_shift_kernel(const float* t, float* out, int n, float s) {
  UVIT_GRID_STRIDE(i, size_t(n)) {
    const float v = t[i];
    out[i] = fminf(__fdiv_rn(__fmul_rn(s, v), __fadd_rn(1.f, __fmul_rn(s - 1.f, v))), 1.f);
  }
}

void fit_time_shift(const float* t, float* out, int n, float s) {
  if (n <= 0) return;
  fit_time_shift_kernel<<<grid_for(size_t(n), kThreads), kThreads>>>(t, out, n, s);
  check_launch("fit_time_shift_kernel");
}

void embedding_fwd(bool bf16, const float* table, const int32_t* idx, void* out, int B, int D,
                   int ldo) {
  const size_t n = size_t(B) * D;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(
      bf16, T,
      embedding_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(table, idx, as<T>(out), B, D, ldo));
  check_launch("embedding_fwd_kernel");
}

void embedding_bwd(bool bf16, const void* dout, const int32_t* idx, float* dtable, int B, int D,
                   int ldo) {
  const size_t n = size_t(D);
  if (n == 0 || B == 0) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    embedding_bwd_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(dout), idx,
                                                                              dtable, B, D, ldo));
  check_launch("embedding_bwd_kernel");
}

void unpatchify_fwd(bool bf16, const void* tok, float* img, int B, int E, int C, int S, int p) {
  const size_t n = size_t(B) * C * S * S;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(
      bf16, T,
      unpatchify_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(tok), img, B, E, C, S, p));
  check_launch("unpatchify_fwd_kernel");
}

void unpatchify_bwd(bool bf16, const float* dimg, void* dtok, int B, int E, int C, int S, int p) {
  const int g = S / p;
  const size_t n = size_t(B) * (E + g * g) * p * p * C;
  if (n == 0) return;
  UVIT_ACT_DISPATCH(
      bf16, T,
      unpatchify_bwd_kernel<<<grid_for(n, kThreads), kThreads>>>(dimg, as<T>(dtok), B, E, C, S, p));
  check_launch("unpatchify_bwd_kernel");
}

}  // namespace uvit::cuda
