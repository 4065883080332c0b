// AdamW, Adan and EMA: one fused pass each over the fp32 state, float4 accesses when aligned. The
// per-element operations follow the CPU backend (torch.optim.AdamW's single-tensor order); the
// step scalars are prepared on the host by the caller exactly as the CPU backend prepares them.
#include "backend/adan_update.hpp"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/kernels.hpp"

namespace uvit::cuda {

namespace {

constexpr unsigned kThreads = 256;

__device__ __forceinline__ void adamw_one(float& p, float g, float& m, float& v,
                                          const AdamScalars& s) {
  const float pi = p * s.decay;
  const float mi = m * s.beta1 + g * s.one_m_b1;
  const float vi = v * s.beta2 + s.one_m_b2 * g * g;
  m = mi;
  v = vi;
  const float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
  p = pi + s.neg_step * mi / denom;
}

template <int V>
__global__ void adamw_kernel(float* __restrict__ p, const float* __restrict__ g,
                             float* __restrict__ m, float* __restrict__ v, size_t n,
                             AdamScalars s) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t nv = n / V;
  for (size_t i = t0; i < nv; i += stride) {
    float pp[V], gg[V], mm[V], vv[V];
    load_pack<V>(p + i * V, pp);
    load_pack<V>(g + i * V, gg);
    load_pack<V>(m + i * V, mm);
    load_pack<V>(v + i * V, vv);
#pragma unroll
    for (int j = 0; j < V; ++j) adamw_one(pp[j], gg[j], mm[j], vv[j], s);
    store_pack<V>(p + i * V, pp);
    store_pack<V>(m + i * V, mm);
    store_pack<V>(v + i * V, vv);
  }
  for (size_t i = nv * V + t0; i < n; i += stride) {
    float pp = p[i], mm = m[i], vv = v[i];
    adamw_one(pp, g[i], mm, vv, s);
    p[i] = pp;
    m[i] = mm;
    v[i] = vv;
  }
}

template <int V>
__global__ void adan_kernel(float* __restrict__ p, const float* __restrict__ g,
                            float* __restrict__ m, float* __restrict__ d, float* __restrict__ n,
                            float* __restrict__ gp, size_t count, AdanScalars s) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t nv = count / V;
  for (size_t i = t0; i < nv; i += stride) {
    float pp[V], gg[V], mm[V], dd[V], nn[V], pg[V];
    load_pack<V>(p + i * V, pp);
    load_pack<V>(g + i * V, gg);
    load_pack<V>(m + i * V, mm);
    load_pack<V>(d + i * V, dd);
    load_pack<V>(n + i * V, nn);
    load_pack<V>(gp + i * V, pg);
#pragma unroll
    for (int j = 0; j < V; ++j) adan_one(pp[j], gg[j], mm[j], dd[j], nn[j], pg[j], s);
    store_pack<V>(p + i * V, pp);
    store_pack<V>(m + i * V, mm);
    store_pack<V>(d + i * V, dd);
    store_pack<V>(n + i * V, nn);
    store_pack<V>(gp + i * V, pg);
  }
  for (size_t i = nv * V + t0; i < count; i += stride) {
    float pp = p[i], mm = m[i], dd = d[i], nn = n[i], pg = gp[i];
    adan_one(pp, g[i], mm, dd, nn, pg, s);
    p[i] = pp;
    m[i] = mm;
    d[i] = dd;
    n[i] = nn;
    gp[i] = pg;
  }
}

// e = e * decay + keep * p
template <int V>
__global__ void ema_kernel(float* __restrict__ e, const float* __restrict__ p, size_t n,
                           float decay, float keep) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t t0 = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t nv = n / V;
  for (size_t i = t0; i < nv; i += stride) {
    float ee[V], pp[V];
    load_pack<V>(e + i * V, ee);
    load_pack<V>(p + i * V, pp);
#pragma unroll
    for (int j = 0; j < V; ++j) ee[j] = ee[j] * decay + keep * pp[j];
    store_pack<V>(e + i * V, ee);
  }
  for (size_t i = nv * V + t0; i < n; i += stride) e[i] = e[i] * decay + keep * p[i];
}

}  // namespace

void adamw(float* p, const float* g, float* m, float* v, size_t n, const AdamScalars& s) {
  if (n == 0) return;
  if (aligned16(p) && aligned16(g) && aligned16(m) && aligned16(v))
    adamw_kernel<4><<<grid_for(n / 4 + 4, kThreads), kThreads>>>(p, g, m, v, n, s);
  else
    adamw_kernel<1><<<grid_for(n, kThreads), kThreads>>>(p, g, m, v, n, s);
  check_launch("adamw_kernel");
}

void adan(float* p, const float* g, float* m, float* d, float* n, float* gp, size_t count,
          const AdanScalars& s) {
  if (count == 0) return;
  if (aligned16(p) && aligned16(g) && aligned16(m) && aligned16(d) && aligned16(n) && aligned16(gp))
    adan_kernel<4><<<grid_for(count / 4 + 4, kThreads), kThreads>>>(p, g, m, d, n, gp, count, s);
  else
    adan_kernel<1><<<grid_for(count, kThreads), kThreads>>>(p, g, m, d, n, gp, count, s);
  check_launch("adan_kernel");
}

void ema(float* e, const float* p, size_t n, float decay, float keep) {
  if (n == 0) return;
  if (aligned16(e) && aligned16(p))
    ema_kernel<4><<<grid_for(n / 4 + 4, kThreads), kThreads>>>(e, p, n, decay, keep);
  else
    ema_kernel<1><<<grid_for(n, kThreads), kThreads>>>(e, p, n, decay, keep);
  check_launch("ema_kernel");
}

}  // namespace uvit::cuda
