// DiT's adaLN kernels (modulate, gate) and the tanh-approximate GELU on the GPU: the same
// semantics as the CPU backend (src/backend/cpu/adaln.cpp). The backward reductions over tokens
// give each thread one (sample, feature) pair and walk the tokens in order, so the sums are
// deterministic; reads along features are coalesced.
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {
constexpr unsigned kThreads = 256;
constexpr float kSqrt2OverPi = 0.79788456080286536f;
constexpr float kCoef = 0.044715f;

template <class T>
__global__ void gelu_tanh_fwd_kernel(const T* x, T* y, size_t n) {
  UVIT_GRID_STRIDE(i, n) {
    const float v = to_f(x[i]);
    y[i] = from_f<T>(0.5f * v * (1.f + tanhf(kSqrt2OverPi * (v + kCoef * v * v * v))));
  }
}

template <class T>
__global__ void gelu_tanh_bwd_kernel(const T* dy, const T* x, T* dx, size_t n) {
  UVIT_GRID_STRIDE(i, n) {
    const float v = to_f(x[i]);
    const float th = tanhf(kSqrt2OverPi * (v + kCoef * v * v * v));
    const float du = kSqrt2OverPi * (1.f + 3.f * kCoef * v * v);
    dx[i] = from_f<T>(to_f(dy[i]) * (0.5f * (1.f + th) + 0.5f * v * (1.f - th * th) * du));
  }
}

template <class T>
__global__ void modulate_fwd_kernel(const T* x, const T* shift, const T* scale, int ldm, T* y,
                                    int N, int D, size_t n) {
  UVIT_GRID_STRIDE(i, n) {
    const size_t b = i / (size_t(N) * D);
    const int d = int(i % D);
    const float sc = to_f(scale[b * ldm + d]), sh = shift ? to_f(shift[b * ldm + d]) : 0.f;
    y[i] = from_f<T>(to_f(x[i]) * (1.f + sc) + sh);
  }
}

template <class T>
__global__ void modulate_bwd_kernel(const T* dy, const T* x, const T* scale, int ldm, T* dx,
                                    T* dshift, T* dscale, int B, int N, int D) {
  UVIT_GRID_STRIDE(k, size_t(B) * D) {
    const size_t b = k / D;
    const int d = int(k % D);
    const float s1 = 1.f + to_f(scale[b * ldm + d]);
    float a = 0.f, c = 0.f;
    for (int n = 0; n < N; ++n) {
      const size_t i = (b * N + n) * D + d;
      const float g = to_f(dy[i]);
      a += g;
      c += g * to_f(x[i]);
      dx[i] = from_f<T>(g * s1);
    }
    if (dshift) dshift[b * ldm + d] = from_f<T>(a);
    dscale[b * ldm + d] = from_f<T>(c);
  }
}

template <class T>
__global__ void gate_fwd_kernel(const T* x, const T* y, const T* gate, int ldm, T* out, int N,
                                int D, size_t n) {
  UVIT_GRID_STRIDE(i, n) {
    const size_t b = i / (size_t(N) * D);
    const int d = int(i % D);
    out[i] = from_f<T>(to_f(x[i]) + to_f(gate[b * ldm + d]) * to_f(y[i]));
  }
}

template <class T>
__global__ void gate_bwd_kernel(const T* dout, const T* y, const T* gate, int ldm, T* dy, T* dgate,
                                int B, int N, int D) {
  UVIT_GRID_STRIDE(k, size_t(B) * D) {
    const size_t b = k / D;
    const int d = int(k % D);
    const float g = to_f(gate[b * ldm + d]);
    float s = 0.f;
    for (int n = 0; n < N; ++n) {
      const size_t i = (b * N + n) * D + d;
      const float go = to_f(dout[i]);
      s += go * to_f(y[i]);
      dy[i] = from_f<T>(go * g);
    }
    dgate[b * ldm + d] = from_f<T>(s);
  }
}
}  // namespace

void gelu_tanh_fwd(bool bf16, const void* x, void* y, size_t n) {
  if (!n) return;
  UVIT_ACT_DISPATCH(
      bf16, T, gelu_tanh_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(x), as<T>(y), n));
  check_launch("gelu_tanh_fwd_kernel");
}

void gelu_tanh_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n) {
  if (!n) return;
  UVIT_ACT_DISPATCH(
      bf16, T,
      gelu_tanh_bwd_kernel<<<grid_for(n, kThreads), kThreads>>>(as<T>(dy), as<T>(x), as<T>(dx), n));
  check_launch("gelu_tanh_bwd_kernel");
}

void modulate_fwd(bool bf16, const void* x, const void* shift, const void* scale, int ldm, void* y,
                  int B, int N, int D) {
  const size_t n = size_t(B) * N * D;
  if (!n) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    modulate_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(
                        as<T>(x), as<T>(shift), as<T>(scale), ldm, as<T>(y), N, D, n));
  check_launch("modulate_fwd_kernel");
}

void modulate_bwd(bool bf16, const void* dy, const void* x, const void* scale, int ldm, void* dx,
                  void* dshift, void* dscale, int B, int N, int D) {
  const size_t n = size_t(B) * D;
  if (!n) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    modulate_bwd_kernel<<<grid_for(n, kThreads), kThreads>>>(
                        as<T>(dy), as<T>(x), as<T>(scale), ldm, as<T>(dx), as<T>(dshift),
                        as<T>(dscale), B, N, D));
  check_launch("modulate_bwd_kernel");
}

void gate_fwd(bool bf16, const void* x, const void* y, const void* gate, int ldm, void* out, int B,
              int N, int D) {
  const size_t n = size_t(B) * N * D;
  if (!n) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    gate_fwd_kernel<<<grid_for(n, kThreads), kThreads>>>(
                        as<T>(x), as<T>(y), as<T>(gate), ldm, as<T>(out), N, D, n));
  check_launch("gate_fwd_kernel");
}

void gate_bwd(bool bf16, const void* dout, const void* y, const void* gate, int ldm, void* dy,
              void* dgate, int B, int N, int D) {
  const size_t n = size_t(B) * D;
  if (!n) return;
  UVIT_ACT_DISPATCH(bf16, T,
                    gate_bwd_kernel<<<grid_for(n, kThreads), kThreads>>>(
                        as<T>(dout), as<T>(y), as<T>(gate), ldm, as<T>(dy), as<T>(dgate), B, N, D));
  check_launch("gate_bwd_kernel");
}

}  // namespace uvit::cuda
