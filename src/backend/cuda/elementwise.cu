// Flat element-wise kernels (fill, axpy, scale, act conversions, GELU/SiLU, bias add) and the fp64
// sum of squares. Memory-bound: each thread moves 16-byte packs when every pointer is aligned for
// them, the last n % V elements going through the scalar tail of the same kernel.
#include <cmath>

#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

// out[i] = f(a[i])
template <int V, class TO, class TA, class F>
__global__ void ew1_kernel(TO* out, const TA* a, size_t n, F f) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t nv = n / V;
  for (size_t i = t0; i < nv; i += stride) {
    float x[V];
    load_pack<V>(a + i * V, x);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = f(x[j]);
    store_pack<V>(out + i * V, x);
  }
  for (size_t i = nv * V + t0; i < n; i += stride) out[i] = from_f<TO>(f(to_f(a[i])));
}

// out[i] = f(a[i], b[i])
template <int V, class TO, class TA, class TB, class F>
__global__ void ew2_kernel(TO* out, const TA* a, const TB* b, size_t n, F f) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t nv = n / V;
  for (size_t i = t0; i < nv; i += stride) {
    float x[V], y[V];
    load_pack<V>(a + i * V, x);
    load_pack<V>(b + i * V, y);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] = f(x[j], y[j]);
    store_pack<V>(out + i * V, x);
  }
  for (size_t i = nv * V + t0; i < n; i += stride) out[i] = from_f<TO>(f(to_f(a[i]), to_f(b[i])));
}

template <class TO, class TA, class F>
void launch_ew1(TO* out, const TA* a, size_t n, F f, const char* name) {
  if (n == 0) return;
  constexpr int V = 16 / (sizeof(TO) > sizeof(TA) ? sizeof(TO) : sizeof(TA));
  if (pack_ok(out, V) && pack_ok(a, V))
    ew1_kernel<V><<<grid_for(n / V + V, kThreads), kThreads>>>(out, a, n, f);
  else
    ew1_kernel<1><<<grid_for(n, kThreads), kThreads>>>(out, a, n, f);
  check_launch(name);
}

template <class TO, class TA, class TB, class F>
void launch_ew2(TO* out, const TA* a, const TB* b, size_t n, F f, const char* name) {
  if (n == 0) return;
  constexpr size_t s1 = sizeof(TO) > sizeof(TA) ? sizeof(TO) : sizeof(TA);
  constexpr int V = 16 / (s1 > sizeof(TB) ? s1 : sizeof(TB));
  if (pack_ok(out, V) && pack_ok(a, V) && pack_ok(b, V))
    ew2_kernel<V><<<grid_for(n / V + V, kThreads), kThreads>>>(out, a, b, n, f);
  else
    ew2_kernel<1><<<grid_for(n, kThreads), kThreads>>>(out, a, b, n, f);
  check_launch(name);
}

struct Identity {
  __device__ float operator()(float x) const { return x; }
};
struct Constant {
  float v;
  __device__ float operator()(float) const { return v; }
};
struct Scale {
  float a;
  __device__ float operator()(float x) const { return x * a; }
};
struct Axpy {  // f(y, x) = y + a x
  float a;
  __device__ float operator()(float y, float x) const { return y + a * x; }
};

constexpr float kRsqrt2 = 0.70710678118654752f;
constexpr float kRsqrt2Pi = 0.39894228040143268f;  // 1/sqrt(2 pi)

struct GeluFwd {
  __device__ float operator()(float v) const { return 0.5f * v * (1.f + erff(v * kRsqrt2)); }
};
struct GeluBwd {  // f(dy, x)
  __device__ float operator()(float dy, float v) const {
    const float cdf = 0.5f * (1.f + erff(v * kRsqrt2));
    const float pdf = kRsqrt2Pi * expf(-0.5f * v * v);
    return dy * (cdf + v * pdf);
  }
};
struct SiluFwd {
  __device__ float operator()(float v) const { return v / (1.f + expf(-v)); }
};
struct SiluBwd {  // f(dy, x)
  __device__ float operator()(float dy, float v) const {
    const float s = 1.f / (1.f + expf(-v));
    return dy * s * (1.f + v * (1.f - s));
  }
};
struct TanhFwd {
  __device__ float operator()(float v) const { return tanhf(v); }
};
struct TanhBwd {  // f(dy, x)
  __device__ float operator()(float dy, float v) const {
    const float t = tanhf(v);
    return dy * (1.f - t * t);
  }
};

// y[m, n] += b[n] over the flat index i; packs never straddle rows because N % V == 0.
template <int V, class T>
__global__ void add_bias_kernel(T* y, const T* b, size_t total, int N) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total / V; i += stride) {
    const int c = static_cast<int>((i * V) % N);
    float x[V], bb[V];
    load_pack<V>(y + i * V, x);
    load_pack<V>(b + c, bb);
#pragma unroll
    for (int j = 0; j < V; ++j) x[j] += bb[j];
    store_pack<V>(y + i * V, x);
  }
}

template <class T>
void add_bias_t(T* y, const T* b, int M, int N) {
  const size_t total = size_t(M) * N;
  if (total == 0) return;
  constexpr int V = 16 / sizeof(T);
  if (N % V == 0 && pack_ok(y, V) && pack_ok(b, V))
    add_bias_kernel<V><<<grid_for(total / V, kThreads), kThreads>>>(y, b, total, N);
  else
    add_bias_kernel<1><<<grid_for(total, kThreads), kThreads>>>(y, b, total, N);
  check_launch("add_bias_kernel");
}

// Per-block fp64 partial sums of x^2, then one block adds the partials in a fixed order.
constexpr unsigned kSumBlocks = 1024;

template <int V>
__global__ void sumsq_partial_kernel(const float* x, size_t n, double* part) {
  __shared__ double sh[kThreads];
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  double s = 0;
  const size_t nv = n / V;
  for (size_t i = t0; i < nv; i += stride) {
    float r[V];
    load_pack<V>(x + i * V, r);
#pragma unroll
    for (int j = 0; j < V; ++j) s += double(r[j]) * r[j];
  }
  for (size_t i = nv * V + t0; i < n; i += stride) s += double(x[i]) * x[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (unsigned o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

__global__ void sumsq_final_kernel(double* part, unsigned nb) {
  __shared__ double sh[kThreads];
  double s = 0;
  for (unsigned i = threadIdx.x; i < nb; i += kThreads) s += part[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (unsigned o = kThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[nb] = sh[0];
}

}  // namespace

void fill_f32(float* dst, float v, size_t n) {
  if (n == 0) return;
  if (v == 0.f && !std::signbit(v)) {
    UVIT_CUDA_CHECK(cudaMemsetAsync(dst, 0, n * sizeof(float), 0));
    return;
  }
  launch_ew1(dst, dst, n, Constant{v}, "fill_kernel");
}

void axpy_f32(float* y, const float* x, float a, size_t n) {
  launch_ew2(y, static_cast<const float*>(y), x, n, Axpy{a}, "axpy_kernel");
}

void scale_f32(float* x, float a, size_t n) {
  launch_ew1(x, static_cast<const float*>(x), n, Scale{a}, "scale_kernel");
}

double sum_squares_f32(const float* x, size_t n, Scratch& scratch) {
  if (n == 0) return 0.0;
  constexpr int V = 4;
  const bool vec = aligned16(x);
  const unsigned nb = grid_for(vec ? n / V + 1 : n, kThreads, kSumBlocks);
  double* part = reinterpret_cast<double*>(scratch.get(2 * (size_t(nb) + 1)));
  if (vec)
    sumsq_partial_kernel<V><<<nb, kThreads>>>(x, n, part);
  else
    sumsq_partial_kernel<1><<<nb, kThreads>>>(x, n, part);
  check_launch("sumsq_partial_kernel");
  sumsq_final_kernel<<<1, kThreads>>>(part, nb);
  check_launch("sumsq_final_kernel");
  double s = 0;
  UVIT_CUDA_CHECK(cudaMemcpy(&s, part + nb, sizeof(double), cudaMemcpyDeviceToHost));
  return s;
}

void to_act(bool bf16, const float* src, void* dst, size_t n) {
  if (!bf16) {
    if (n && dst != src)
      UVIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, 0));
    return;
  }
  launch_ew1(as<cuda::bf16>(dst), src, n, Identity{}, "to_act_kernel");
}

void from_act(bool bf16, const void* src, float* dst, size_t n) {
  if (!bf16) {
    if (n && dst != src)
      UVIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, 0));
    return;
  }
  launch_ew1(dst, as<cuda::bf16>(src), n, Identity{}, "from_act_kernel");
}

void axpy_act(bool bf16, void* y, const void* x, float a, size_t n) {
  if (bf16) {
    auto* yy = as<cuda::bf16>(y);
    launch_ew2(yy, static_cast<const cuda::bf16*>(yy), as<cuda::bf16>(x), n, Axpy{a},
               "axpy_act_kernel");
  } else {
    axpy_f32(as<float>(y), as<float>(x), a, n);
  }
}

void gelu_fwd(bool bf16, const void* x, void* y, size_t n) {
  UVIT_ACT_DISPATCH(bf16, T, launch_ew1(as<T>(y), as<T>(x), n, GeluFwd{}, "gelu_fwd_kernel"));
}
void gelu_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n) {
  UVIT_ACT_DISPATCH(bf16, T,
                    launch_ew2(as<T>(dx), as<T>(dy), as<T>(x), n, GeluBwd{}, "gelu_bwd_kernel"));
}
void silu_fwd(bool bf16, const void* x, void* y, size_t n) {
  UVIT_ACT_DISPATCH(bf16, T, launch_ew1(as<T>(y), as<T>(x), n, SiluFwd{}, "silu_fwd_kernel"));
}
void silu_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n) {
  UVIT_ACT_DISPATCH(bf16, T,
                    launch_ew2(as<T>(dx), as<T>(dy), as<T>(x), n, SiluBwd{}, "silu_bwd_kernel"));
}
void tanh_fwd(bool bf16, const void* x, void* y, size_t n) {
  UVIT_ACT_DISPATCH(bf16, T, launch_ew1(as<T>(y), as<T>(x), n, TanhFwd{}, "tanh_fwd_kernel"));
}
void tanh_bwd(bool bf16, const void* dy, const void* x, void* dx, size_t n) {
  UVIT_ACT_DISPATCH(bf16, T,
                    launch_ew2(as<T>(dx), as<T>(dy), as<T>(x), n, TanhBwd{}, "tanh_bwd_kernel"));
}
void add_bias(bool bf16, void* y, const void* b, int M, int N) {
  UVIT_ACT_DISPATCH(bf16, T, add_bias_t(as<T>(y), as<T>(b), M, N));
}

}  // namespace uvit::cuda
