// Fused bf16 attention forward. A block of 4 warps owns 64 queries of one (batch, head); each warp
// owns 16 query rows. Keys/values stream through shared memory in tiles of 64, zero-padded in the
// head dimension to a multiple of 16 (Dh 72 -> 80) and in the key dimension to the tile.
// Two passes over the keys avoid rescaling accumulators (whose wmma register layout is opaque):
// pass 1 computes each row's max and sum of exp (hence lse), pass 2 forms the normalised
// P = exp(s - lse) in bf16 and accumulates O = P V on tensor cores (bf16 in, fp32 accumulate).
// Recomputing Q K^T costs little next to the model's linear layers at N <= ~300.
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>

#include "backend/cuda/attention_fused.hpp"
#include "uvit/error.hpp"

namespace uvit::cuda {

namespace {

using namespace nvcuda;
using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kRows = 16 * kWarps;  // queries per block
constexpr int kKeys = 64;           // keys per tile
constexpr int kThreads = 32 * kWarps;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int DHP>
struct Smem {
  static constexpr int LDQ = DHP + 8;                   // bf16 row stride (skew vs banks)
  static constexpr int SW = DHP > kKeys ? DHP : kKeys;  // score / output tile width
  static constexpr int LDS = SW + 4;                    // fp32 row stride
  static constexpr int LDP = kKeys + 8;                 // bf16 P row stride
  static constexpr size_t q_off = 0;
  static constexpr size_t k_off = q_off + size_t(kRows) * LDQ * 2;
  static constexpr size_t v_off = k_off + size_t(kKeys) * LDQ * 2;
  static constexpr size_t s_off = v_off + size_t(kKeys) * LDQ * 2;
  static constexpr size_t p_off = s_off + size_t(kWarps) * 16 * LDS * 4;
  static constexpr size_t bytes = p_off + size_t(kWarps) * 16 * LDP * 2;
};

// rows [r0, r0 + nrows) of one part (q/k/v) of one head -> dst [nrows][LDQ], zero outside
// (rows >= N, columns >= Dh). VEC: 16-byte loads (Dh % 8 == 0 and a 16-byte aligned qkv).
template <int DHP, bool VEC>
__device__ void load_tile(bf16* dst, const bf16* src, size_t ld3, int r0, int nrows, int N,
                          int Dh) {
  constexpr int LDQ = Smem<DHP>::LDQ;
  if constexpr (VEC) {
    constexpr int CPR = DHP / 8;  // 16-byte chunks per row
    for (int c = threadIdx.x; c < nrows * CPR; c += kThreads) {
      const int r = c / CPR, d = (c % CPR) * 8;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r0 + r < N && d < Dh) v = *reinterpret_cast<const uint4*>(src + size_t(r0 + r) * ld3 + d);
      *reinterpret_cast<uint4*>(dst + r * LDQ + d) = v;
    }
  } else {
    for (int c = threadIdx.x; c < nrows * DHP; c += kThreads) {
      const int r = c / DHP, d = c % DHP;
      bf16 v = __float2bfloat16(0.f);
      if (r0 + r < N && d < Dh) v = src[size_t(r0 + r) * ld3 + d];
      dst[r * LDQ + d] = v;
    }
  }
}

// This warp's 16x64 raw scores Q_w K_tile^T -> sw [16][LDS] fp32.
template <int DHP>
__device__ void scores(const wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major>* qa,
                       const bf16* ks, float* sw) {
  using S = Smem<DHP>;
#pragma unroll
  for (int n = 0; n < kKeys / 16; ++n) {
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
    wmma::fill_fragment(acc, 0.f);
#pragma unroll
    for (int k = 0; k < DHP / 16; ++k) {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> kb;
      wmma::load_matrix_sync(kb, ks + n * 16 * S::LDQ + k * 16, S::LDQ);
      wmma::mma_sync(acc, qa[k], kb, acc);
    }
    wmma::store_matrix_sync(sw + n * 16, acc, S::LDS, wmma::mem_row_major);
  }
}

template <int DHP, bool VEC>
__global__ void __launch_bounds__(kThreads)
    fused_attn_fwd_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ out,
                          float* __restrict__ lse, int N, int H, int Dh, float scale_log2) {
  using S = Smem<DHP>;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16* qs = reinterpret_cast<bf16*>(smem + S::q_off);
  bf16* ks = reinterpret_cast<bf16*>(smem + S::k_off);
  bf16* vs = reinterpret_cast<bf16*>(smem + S::v_off);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* sw = reinterpret_cast<float*>(smem + S::s_off) + warp * 16 * S::LDS;
  bf16* pw = reinterpret_cast<bf16*>(smem + S::p_off) + warp * 16 * S::LDP;

  const int q0 = blockIdx.x * kRows, h = blockIdx.y, b = blockIdx.z;
  const int D = H * Dh;
  const size_t ld3 = size_t(3) * D;
  const bf16* base = qkv + size_t(b) * N * ld3 + size_t(h) * Dh;

  load_tile<DHP, VEC>(qs, base, ld3, q0, kRows, N, Dh);
  __syncthreads();
  wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> qa[DHP / 16];
#pragma unroll
  for (int k = 0; k < DHP / 16; ++k)
    wmma::load_matrix_sync(qa[k], qs + warp * 16 * S::LDQ + k * 16, S::LDQ);

  // Lane pairs share a row: lane/2 is the row; lane%2 takes the even or odd columns of the tile
  // (interleaved rather than halves: fewer shared-memory bank conflicts).
  const int r = lane / 2, c0 = lane % 2;
  float m = -INFINITY, l = 0.f;  // running max / sum of exp2 over this lane's columns (log2 units)

  // Pass 1: row max and sum.
  for (int kt = 0; kt < N; kt += kKeys) {
    __syncthreads();  // every warp is done with the previous tile
    load_tile<DHP, VEC>(ks, base + D, ld3, kt, kKeys, N, Dh);
    __syncthreads();
    scores<DHP>(qa, ks, sw);
    __syncwarp();
    float tmax = -INFINITY;
    for (int c = 0; c < 32; ++c)
      if (kt + c0 + 2 * c < N) tmax = fmaxf(tmax, sw[r * S::LDS + c0 + 2 * c] * scale_log2);
    if (tmax != -INFINITY) {
      const float mn = fmaxf(m, tmax);
      float sum = 0.f;
      for (int c = 0; c < 32; ++c)
        if (kt + c0 + 2 * c < N) sum += exp2f(sw[r * S::LDS + c0 + 2 * c] * scale_log2 - mn);
      l = l * exp2f(m - mn) + sum;  // exp2f(-inf) = 0 on the first tile
      m = mn;
    }
    __syncwarp();
  }
  {  // merge the two halves of the row
    const float mo = __shfl_xor_sync(0xffffffffu, m, 1), lo = __shfl_xor_sync(0xffffffffu, l, 1);
    const float mm = fmaxf(m, mo);
    l = (m == -INFINITY ? 0.f : l * exp2f(m - mm)) + (mo == -INFINITY ? 0.f : lo * exp2f(mo - mm));
    m = mm;
  }
  const float lse2 = m + log2f(l);  // finite: every row has at least one key

  // Pass 2: O = sum over tiles of exp2(s - lse2) V.
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> o[DHP / 16];
#pragma unroll
  for (int n = 0; n < DHP / 16; ++n) wmma::fill_fragment(o[n], 0.f);
  for (int kt = 0; kt < N; kt += kKeys) {
    __syncthreads();
    load_tile<DHP, VEC>(ks, base + D, ld3, kt, kKeys, N, Dh);
    load_tile<DHP, VEC>(vs, base + 2 * D, ld3, kt, kKeys, N, Dh);
    __syncthreads();
    scores<DHP>(qa, ks, sw);
    __syncwarp();
    for (int c = 0; c < 32; ++c) {
      const float p =
          kt + c0 + 2 * c < N ? exp2f(sw[r * S::LDS + c0 + 2 * c] * scale_log2 - lse2) : 0.f;
      pw[r * S::LDP + c0 + 2 * c] = __float2bfloat16(p);
    }
    __syncwarp();
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> pa;
      wmma::load_matrix_sync(pa, pw + kk * 16, S::LDP);
#pragma unroll
      for (int n = 0; n < DHP / 16; ++n) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> vb;
        wmma::load_matrix_sync(vb, vs + kk * 16 * S::LDQ + n * 16, S::LDQ);
        wmma::mma_sync(o[n], pa, vb, o[n]);
      }
    }
  }

  // O -> this warp's fp32 tile -> bf16 global rows < N, columns < Dh.
  __syncwarp();
#pragma unroll
  for (int n = 0; n < DHP / 16; ++n)
    wmma::store_matrix_sync(sw + n * 16, o[n], S::LDS, wmma::mem_row_major);
  __syncwarp();
  const int qw = q0 + warp * 16;
  for (int e = lane; e < 16 * Dh; e += 32) {
    const int rr = e / Dh, d = e % Dh;
    if (qw + rr < N)
      out[(size_t(b) * N + qw + rr) * D + size_t(h) * Dh + d] =
          __float2bfloat16(sw[rr * S::LDS + d]);
  }
  if (lse && lane % 2 == 0 && qw + r < N) lse[(size_t(b) * H + h) * N + qw + r] = lse2 * kLn2;
}

template <int DHP, bool VEC>
void launch(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh, float scale,
            cudaStream_t stream) {
  constexpr size_t bytes = Smem<DHP>::bytes;
  auto* kernel = fused_attn_fwd_kernel<DHP, VEC>;
  static bool configured = false;  // the attribute is per function (and device)
  if (!configured) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
    if (e != cudaSuccess)
      fail("cuda attention: cudaFuncSetAttribute(", bytes,
           " bytes of shared memory) failed: ", cudaGetErrorString(e));
    configured = true;
  }
  const dim3 grid((N + kRows - 1) / kRows, H, B);
  kernel<<<grid, kThreads, bytes, stream>>>(static_cast<const bf16*>(qkv), static_cast<bf16*>(out),
                                            lse, N, H, Dh, scale * kLog2e);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("cuda attention: launch of fused_attn_fwd_kernel (Dh=", Dh,
         ") failed: ", cudaGetErrorString(e));
}

template <int DHP>
void dispatch_vec(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh, float scale,
                  cudaStream_t stream) {
  const bool vec = Dh % 8 == 0 && reinterpret_cast<uintptr_t>(qkv) % 16 == 0;
  if (vec)
    launch<DHP, true>(qkv, out, lse, B, N, H, Dh, scale, stream);
  else
    launch<DHP, false>(qkv, out, lse, B, N, H, Dh, scale, stream);
}

}  // namespace

bool fused_attention_supported(int Dh) { return Dh >= 1 && Dh <= 128; }

void fused_attention_fwd_bf16(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                              float scale, cudaStream_t stream) {
  UVIT_CHECK(fused_attention_supported(Dh),
             "cuda attention: fused kernel does not support Dh=", Dh);
  UVIT_CHECK(H <= 65535 && B <= 65535, "cuda attention: fused kernel grid limit: B=", B, " H=", H);
  if (B == 0 || N == 0 || H == 0) return;
  switch ((Dh + 15) / 16) {
    case 1:
      return dispatch_vec<16>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 2:
      return dispatch_vec<32>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 3:
      return dispatch_vec<48>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 4:
      return dispatch_vec<64>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 5:
      return dispatch_vec<80>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 6:
      return dispatch_vec<96>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 7:
      return dispatch_vec<112>(qkv, out, lse, B, N, H, Dh, scale, stream);
    default:
      return dispatch_vec<128>(qkv, out, lse, B, N, H, Dh, scale, stream);
  }
}

}  // namespace uvit::cuda
