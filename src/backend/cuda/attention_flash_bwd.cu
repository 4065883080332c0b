// FlashAttention-2-style bf16 attention backward on mma.sync (sm_80+), deterministic (no atomics):
// (1) delta_kernel: Delta_i = sum_d dO_id O_id (fp32, one warp per row) into a [B, H, N] scratch;
// (2) dkdv_kernel: a block of 4 warps owns 64 keys of one (batch, head), each warp 16 keys whose K
//     and V rows it holds as mma A fragments; query tiles of 64 (Q, dO, lse, Delta) stream through
//     shared memory (double buffered). Per 16-query chunk: S^T = K Q^T, P^T = exp(scale S^T - lse),
//     dV += P^T dO, dP^T = V dO^T, dS^T = P^T (dP^T - Delta), dK += dS^T Q (fp32 accumulators);
// (3) dq_kernel: a block owns 64 queries (Q and dO as A fragments), key tiles stream through shared
//     memory as in the forward. Per 16-key chunk: S = Q K^T, P, dP = dO V^T, dS, dQ += dS K.
// Every product uses one of the forward's two shared-memory operand patterns: "k_off" (B[d][n] =
// X[n][d], non-transposed ldmatrix) and "v_off" (B[n][d] = X[n][d], transposed ldmatrix); the C
// fragments of two 8-wide score tiles are reused as the A fragment of the next product (packed to
// bf16). Padding: rows >= N and head columns >= Dh are zero in shared memory; padded query rows
// get lse = +inf (so P = 0) and Delta = 0; keys >= N are masked to P = 0 in the dQ kernel (in the
// dK/dV kernel their rows are simply not written). Fragment layouts of m16n8k16 (g = lane/4,
// t = lane%4): A a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..);
// B b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g); C c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1).
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cuda/attention.hpp"
#include "backend/cuda/attention_flash.hpp"
#include "backend/cuda/mma_sm80.cuh"
#include "uvit/error.hpp"

namespace uvit::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kTile = 16 * kWarps;  // rows (queries or keys) per tile; one block's own rows
constexpr float kLog2e = 1.4426950408889634f;

// Six bf16 tiles of [64][DHP + 8] (the skew spreads ldmatrix rows over banks), then fp32 lse (log2
// units) and Delta for two query tiles (dK/dV kernel only).
template <int DHP>
struct Layout {
  static constexpr int LD = DHP + 8;
  static constexpr int TILE = kTile * LD;  // elements
  static constexpr size_t bytes = size_t(6) * TILE * sizeof(bf16) + 4 * kTile * sizeof(float);
};

// The A fragment (16 rows x 16 k) made of the C fragments of two adjacent 8-wide tiles.
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4],
                                       const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// Rows [r0, r0 + 64) of a [*, ld] bf16 matrix (src points at row 0, column 0 of this head: a valid
// address since N >= 1) -> dst [64][LD], zeros for rows >= N and columns >= Dh. VEC (Dh % 8 == 0,
// 16-byte aligned rows): asynchronous 16-byte copies, completed by cp_async_wait_all; otherwise
// synchronous 2-byte loads.
template <int DHP, bool VEC>
__device__ __forceinline__ void load_tile(bf16* dst, const bf16* src, size_t ld, int r0, int N,
                                          int Dh) {
  constexpr int LD = Layout<DHP>::LD;
  if constexpr (VEC) {
    constexpr int CPR = DHP / 8;  // 16-byte chunks per row
    const uint32_t s = smem_u32(dst);
#pragma unroll 1
    for (int c = threadIdx.x; c < kTile * CPR; c += kThreads) {
      const int r = c / CPR, d = (c % CPR) * 8;
      const bool ok = r0 + r < N && d < Dh;  // Dh % 8 == 0: a chunk is all in or all out
      const bf16* p = ok ? src + size_t(r0 + r) * ld + d : src;
      cp_async16(s + uint32_t(r * LD + d) * uint32_t(sizeof(bf16)), p, ok);
    }
  } else {
#pragma unroll 1
    for (int c = threadIdx.x; c < kTile * DHP; c += kThreads) {
      const int r = c / DHP, d = c % DHP;
      bf16 a = __ushort_as_bfloat16(0);
      if (r0 + r < N && d < Dh) a = src[size_t(r0 + r) * ld + d];
      dst[r * LD + d] = a;
    }
  }
}

// A warp's 16 rows [16][LD] of shared memory (bf16) -> rows r0.. (< N), columns < Dh of dst.
template <int DHP>
__device__ __forceinline__ void store_rows(bf16* dst, size_t ld, const bf16* sw, int r0, int N,
                                           int Dh, bool vec, int lane) {
  constexpr int LD = Layout<DHP>::LD;
  if (vec) {  // Dh % 8 == 0 and dst 16-byte aligned
    const int cpr = Dh / 8;
    for (int c = lane; c < 16 * cpr; c += 32) {
      const int r = c / cpr, d = (c % cpr) * 8;
      if (r0 + r < N)
        *reinterpret_cast<uint4*>(dst + size_t(r0 + r) * ld + d) =
            *reinterpret_cast<const uint4*>(sw + r * LD + d);
    }
  } else {
    for (int c = lane; c < 16 * Dh; c += 32) {
      const int r = c / Dh, d = c % Dh;
      if (r0 + r < N) dst[size_t(r0 + r) * ld + d] = sw[r * LD + d];
    }
  }
}

// fp32 accumulators [NT][4] (C fragments of a 16 x DHP block) times mul -> bf16 rows of sw.
template <int NT, int LD>
__device__ __forceinline__ void stage_rows(bf16* sw, const float (&acc)[NT][4], float mul, int g,
                                           int t) {
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    *reinterpret_cast<__nv_bfloat162*>(sw + g * LD + n * 8 + 2 * t) =
        __floats2bfloat162_rn(acc[n][0] * mul, acc[n][1] * mul);
    *reinterpret_cast<__nv_bfloat162*>(sw + (g + 8) * LD + n * 8 + 2 * t) =
        __floats2bfloat162_rn(acc[n][2] * mul, acc[n][3] * mul);
  }
}

// Lane offsets (elements) of the two B-operand patterns and of the A-operand load, within a tile.
// A (rows 16w.., as in the forward's Q): row L % 16, column (L / 16) * 8.
// k_off, non-transposed: n-row (L & 7) + (L >> 4) * 8, d ((L >> 3) & 1) * 8 -> b0, b1 of n-tile
//   0 and of n-tile 1 (B[d][n] = X[n][d]).
// v_off, transposed: k-row (L & 7) + ((L >> 3) & 1) * 8, d (L >> 4) * 8 -> b0, b1 of d-tile 0
//   and of d-tile 1 (B[k][d] = X[k][d]).
__device__ __forceinline__ int a_off(int lane, int LD) {
  return (lane & 15) * LD + (lane >> 4) * 8;
}
__device__ __forceinline__ int k_off(int lane, int LD) {
  return ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
}
__device__ __forceinline__ int v_off(int lane, int LD) {
  return ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
}

struct Args {
  const bf16* dout;  // [B, N, D]
  const bf16* qkv;   // [B, N, 3D]
  const float* lse;  // [B, H, N]
  const float* delta;
  bf16* dqkv;  // [B, N, 3D]
  int N, H, Dh, BH;
  float scale, scale_log2;
  bool out_vec;
};

template <int DHP, bool VEC>
__global__ void __launch_bounds__(kThreads, 2) dkdv_kernel(const Args a) {
  constexpr int LD = Layout<DHP>::LD, TILE = Layout<DHP>::TILE;
  constexpr int KS = DHP / 16;  // k-steps over the head dim; pairs of 8-wide d tiles
  constexpr int NT = DHP / 8;   // 8-wide d tiles
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* ks = reinterpret_cast<bf16*>(smem_raw);
  bf16* vs = ks + TILE;
  bf16* qs = vs + TILE;                                     // 2 buffers
  bf16* dos = qs + 2 * TILE;                                // 2 buffers
  float* lse_s = reinterpret_cast<float*>(dos + 2 * TILE);  // [2][64], log2 units
  float* del_s = lse_s + 2 * kTile;                         // [2][64]

  const int bh = blockIdx.z * gridDim.y + blockIdx.y;
  if (bh >= a.BH) return;  // whole block: before any barrier
  const int N = a.N, Dh = a.Dh, b = bh / a.H, h = bh % a.H;
  const int k0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int D = a.H * Dh;
  const size_t ld3 = size_t(3) * D;
  const bf16* qg = a.qkv + size_t(b) * N * ld3 + size_t(h) * Dh;
  const bf16* dog = a.dout + size_t(b) * N * D + size_t(h) * Dh;
  const float* lseg = a.lse + size_t(bh) * N;
  const float* delg = a.delta + size_t(bh) * N;
  const int ntiles = (N + kTile - 1) / kTile;
  const bool active = k0 + warp * 16 < N;

  // lse (log2 units; +inf past N: P = 0) and Delta (0 past N) of query tile q0 -> buffer buf.
  auto load_rowstats = [&](int q0, int buf) {
    const int i = threadIdx.x % kTile, q = q0 + i;
    if (threadIdx.x < kTile)
      lse_s[buf * kTile + i] = q < N ? lseg[q] * kLog2e : INFINITY;
    else
      del_s[buf * kTile + i] = q < N ? delg[q] : 0.f;
  };

  load_tile<DHP, VEC>(ks, qg + D, ld3, k0, N, Dh);
  load_tile<DHP, VEC>(vs, qg + 2 * D, ld3, k0, N, Dh);
  load_tile<DHP, VEC>(qs, qg, ld3, 0, N, Dh);
  load_tile<DHP, VEC>(dos, dog, D, 0, N, Dh);
  load_rowstats(0, 0);
  if constexpr (VEC) {
    cp_async_commit();
    cp_async_wait_all();
  }
  __syncthreads();

  // This warp's 16 keys of K and V as A fragments (k-step kk = head columns 16kk..16kk+15). At
  // DHP 128 the V fragments are re-read from shared memory per use (registers would spill).
  constexpr bool VREG = DHP <= 112;
  uint32_t kf[KS][4], vf[VREG ? KS : 1][4];
  const int a_o = warp * 16 * LD + a_off(lane, LD);
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) {
    ldmatrix_x4(kf[kk], smem_u32(ks + a_o + kk * 16));
    if constexpr (VREG) ldmatrix_x4(vf[kk], smem_u32(vs + a_o + kk * 16));
  }
  const int ko = k_off(lane, LD), vo = v_off(lane, LD);

  float dk[NT][4], dv[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n)
#pragma unroll
    for (int c = 0; c < 4; ++c) dk[n][c] = dv[n][c] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int q0 = it * kTile, buf = it & 1;
    if (it + 1 < ntiles) {  // prefetch the next query tile into the other buffer
      load_tile<DHP, VEC>(qs + (buf ^ 1) * TILE, qg, ld3, q0 + kTile, N, Dh);
      load_tile<DHP, VEC>(dos + (buf ^ 1) * TILE, dog, D, q0 + kTile, N, Dh);
      load_rowstats(q0 + kTile, buf ^ 1);
      if constexpr (VEC) cp_async_commit();
    }
    const bf16* qb = qs + buf * TILE;
    const bf16* db = dos + buf * TILE;
    const float* lb = lse_s + buf * kTile;
    const float* eb = del_s + buf * kTile;

    if (active) {  // warp-uniform: a warp whose keys are all >= N only helps load
#pragma unroll 1
      for (int qc = 0; qc < kTile / 16; ++qc) {  // 16-query chunks
        if (q0 + qc * 16 >= N) break;            // all padded: P = 0
        // S^T (16 keys x 16 queries) = K Q^T; s[j] holds queries qc*16 + 8j ..
        float s[2][4] = {}, dp[2][4] = {};
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
          uint32_t r[4];
          ldmatrix_x4(r, smem_u32(qb + ko + qc * 16 * LD + kk * 16));
          mma_bf16(s[0], kf[kk], r[0], r[1]);
          mma_bf16(s[1], kf[kk], r[2], r[3]);
        }
        // dP^T = V dO^T
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
          uint32_t r[4];
          ldmatrix_x4(r, smem_u32(db + ko + qc * 16 * LD + kk * 16));
          if constexpr (VREG) {
            mma_bf16(dp[0], vf[kk], r[0], r[1]);
            mma_bf16(dp[1], vf[kk], r[2], r[3]);
          } else {
            uint32_t v[4];
            ldmatrix_x4(v, smem_u32(vs + a_o + kk * 16));
            mma_bf16(dp[0], v, r[0], r[1]);
            mma_bf16(dp[1], v, r[2], r[3]);
          }
        }
        // P^T = 2^(scale_log2 S^T - lse2[query]); dS^T = P^T (dP^T - Delta[query]). Column
        // (query) of element c of tile j: qc*16 + 8j + 2t + (c & 1).
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int q = qc * 16 + 8 * j + 2 * t + (c & 1);
            const float p = fast_exp2(fmaf(s[j][c], a.scale_log2, -lb[q]));
            s[j][c] = p;
            dp[j][c] = p * (dp[j][c] - eb[q]);
          }
        uint32_t pa[4], sa[4];
        c_to_a(pa, s[0], s[1]);
        c_to_a(sa, dp[0], dp[1]);
        // dV += P^T dO ; dK += dS^T Q (B[query][d]: transposed loads of this chunk's 16 rows)
#pragma unroll
        for (int dd = 0; dd < KS; ++dd) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, smem_u32(db + vo + qc * 16 * LD + dd * 16));
          mma_bf16(dv[2 * dd], pa, r[0], r[1]);
          mma_bf16(dv[2 * dd + 1], pa, r[2], r[3]);
          ldmatrix_x4_trans(r, smem_u32(qb + vo + qc * 16 * LD + dd * 16));
          mma_bf16(dk[2 * dd], sa, r[0], r[1]);
          mma_bf16(dk[2 * dd + 1], sa, r[2], r[3]);
        }
      }
    }

    // The next tile has landed and is visible to all, and every warp is done with this tile's
    // buffers before the next iteration refills them.
    if constexpr (VEC) cp_async_wait_all();
    __syncthreads();
  }

  // dK (times scale) and dV -> bf16 in this warp's own rows of ks / vs (read only by this warp,
  // before the loop), then to dqkv's k and v parts.
  if (!active) return;
  bf16* kw = ks + warp * 16 * LD;
  bf16* vw = vs + warp * 16 * LD;
  __syncwarp();
  stage_rows<NT, LD>(kw, dk, a.scale, g, t);
  stage_rows<NT, LD>(vw, dv, 1.f, g, t);
  __syncwarp();
  bf16* dkg = a.dqkv + size_t(b) * N * ld3 + D + size_t(h) * Dh;
  store_rows<DHP>(dkg, ld3, kw, k0 + warp * 16, N, Dh, a.out_vec, lane);
  store_rows<DHP>(dkg + D, ld3, vw, k0 + warp * 16, N, Dh, a.out_vec, lane);
}

template <int DHP, bool VEC>
__global__ void __launch_bounds__(kThreads, 2) dq_kernel(const Args a) {
  constexpr int LD = Layout<DHP>::LD, TILE = Layout<DHP>::TILE;
  constexpr int KS = DHP / 16;
  constexpr int NT = DHP / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* dos = qs + TILE;
  bf16* ks = dos + TILE;     // 2 buffers
  bf16* vs = ks + 2 * TILE;  // 2 buffers

  const int bh = blockIdx.z * gridDim.y + blockIdx.y;
  if (bh >= a.BH) return;
  const int N = a.N, Dh = a.Dh, b = bh / a.H, h = bh % a.H;
  const int q0 = blockIdx.x * kTile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int D = a.H * Dh;
  const size_t ld3 = size_t(3) * D;
  const bf16* qg = a.qkv + size_t(b) * N * ld3 + size_t(h) * Dh;
  const bf16* kg = qg + D;
  const bf16* vg = qg + 2 * D;
  const bf16* dog = a.dout + size_t(b) * N * D + size_t(h) * Dh;
  const int ntiles = (N + kTile - 1) / kTile;
  const int qw = q0 + warp * 16;
  const bool active = qw < N;

  load_tile<DHP, VEC>(qs, qg, ld3, q0, N, Dh);
  load_tile<DHP, VEC>(dos, dog, D, q0, N, Dh);
  load_tile<DHP, VEC>(ks, kg, ld3, 0, N, Dh);
  load_tile<DHP, VEC>(vs, vg, ld3, 0, N, Dh);
  if constexpr (VEC) {
    cp_async_commit();
    cp_async_wait_all();
  }
  __syncthreads();

  uint32_t qf[KS][4], df[KS][4];
  {
    const int o = warp * 16 * LD + a_off(lane, LD);
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) {
      ldmatrix_x4(qf[kk], smem_u32(qs + o + kk * 16));
      ldmatrix_x4(df[kk], smem_u32(dos + o + kk * 16));
    }
  }
  const int ko = k_off(lane, LD), vo = v_off(lane, LD);
  // Rows g and g + 8 of the warp: lse (log2 units) and Delta; padded rows give P = 0.
  const float* lseg = a.lse + size_t(bh) * N;
  const float* delg = a.delta + size_t(bh) * N;
  const float l0 = qw + g < N ? lseg[qw + g] * kLog2e : INFINITY;
  const float l1 = qw + g + 8 < N ? lseg[qw + g + 8] * kLog2e : INFINITY;
  const float e0 = qw + g < N ? delg[qw + g] : 0.f;
  const float e1 = qw + g + 8 < N ? delg[qw + g + 8] : 0.f;

  float dq[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int kt = it * kTile, buf = it & 1;
    if (it + 1 < ntiles) {
      load_tile<DHP, VEC>(ks + (buf ^ 1) * TILE, kg, ld3, kt + kTile, N, Dh);
      load_tile<DHP, VEC>(vs + (buf ^ 1) * TILE, vg, ld3, kt + kTile, N, Dh);
      if constexpr (VEC) cp_async_commit();
    }
    const bf16* kb = ks + buf * TILE;
    const bf16* vb = vs + buf * TILE;

    if (active) {
#pragma unroll 1
      for (int kc = 0; kc < kTile / 16; ++kc) {  // 16-key chunks
        if (kt + kc * 16 >= N) break;            // all keys >= N: P = 0
        float s[2][4] = {}, dp[2][4] = {};
        // S = Q K^T ; dP = dO V^T (B[d][key] = X[key][d])
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
          uint32_t r[4];
          ldmatrix_x4(r, smem_u32(kb + ko + kc * 16 * LD + kk * 16));
          mma_bf16(s[0], qf[kk], r[0], r[1]);
          mma_bf16(s[1], qf[kk], r[2], r[3]);
          ldmatrix_x4(r, smem_u32(vb + ko + kc * 16 * LD + kk * 16));
          mma_bf16(dp[0], df[kk], r[0], r[1]);
          mma_bf16(dp[1], df[kk], r[2], r[3]);
        }
        // P = 2^(scale_log2 S - lse2[row]) (0 for keys >= N); dS = P (dP - Delta[row]).
        const bool ragged = kt + kc * 16 + 16 > N;
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const float p0 = fast_exp2(fmaf(s[j][c], a.scale_log2, c < 2 ? -l0 : -l1));
            const bool masked = ragged && kt + kc * 16 + 8 * j + 2 * t + (c & 1) >= N;
            const float p = masked ? 0.f : p0;
            dp[j][c] = p * (dp[j][c] - (c < 2 ? e0 : e1));
          }
        uint32_t sa[4];
        c_to_a(sa, dp[0], dp[1]);
        // dQ += dS K (B[key][d] = K[key][d]: transposed loads)
#pragma unroll
        for (int dd = 0; dd < KS; ++dd) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, smem_u32(kb + vo + kc * 16 * LD + dd * 16));
          mma_bf16(dq[2 * dd], sa, r[0], r[1]);
          mma_bf16(dq[2 * dd + 1], sa, r[2], r[3]);
        }
      }
    }

    if constexpr (VEC) cp_async_wait_all();
    __syncthreads();
  }

  if (!active) return;
  bf16* qw_s = qs + warp * 16 * LD;  // this warp's own Q rows (read only by it, before the loop)
  __syncwarp();
  stage_rows<NT, LD>(qw_s, dq, a.scale, g, t);
  __syncwarp();
  bf16* dqg = a.dqkv + size_t(b) * N * ld3 + size_t(h) * Dh;
  store_rows<DHP>(dqg, ld3, qw_s, qw, N, Dh, a.out_vec, lane);
}

void check_launch(const char* what, int Dh) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("cuda flash attention backward: launch of ", what, " (Dh=", Dh,
         ") failed: ", cudaGetErrorString(e));
}

template <class K>
void set_smem(K* kernel, size_t bytes, const char* what) {
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess)
    fail("cuda flash attention backward: cudaFuncSetAttribute(", what, ", ", bytes,
         " bytes of shared memory) failed: ", cudaGetErrorString(e));
}

template <int DHP, bool VEC>
void launch(const Args& a, int B, cudaStream_t stream) {
  constexpr size_t bytes = Layout<DHP>::bytes;
  auto* kv = dkdv_kernel<DHP, VEC>;
  auto* kq = dq_kernel<DHP, VEC>;
  // The opt-in above 48 KiB is per kernel; set once per instantiation (thread-safe static init).
  static const bool attr =
      (set_smem(kv, bytes, "dkdv_kernel"), set_smem(kq, bytes, "dq_kernel"), true);
  (void)attr;
  const long long BH = a.BH;
  const unsigned gy = unsigned(BH < 65535 ? BH : 65535);
  const unsigned gz = unsigned((BH + gy - 1) / gy);
  UVIT_CHECK(gz <= 65535, "cuda flash attention backward: B*H=", BH, " exceeds the grid");
  (void)B;
  const dim3 grid(unsigned((a.N + kTile - 1) / kTile), gy, gz);
  kv<<<grid, kThreads, bytes, stream>>>(a);
  check_launch("dkdv_kernel", a.Dh);
  kq<<<grid, kThreads, bytes, stream>>>(a);
  check_launch("dq_kernel", a.Dh);
}

template <int DHP>
void dispatch(const Args& a, int B, bool vec_in, cudaStream_t stream) {
  if (vec_in)
    launch<DHP, true>(a, B, stream);
  else
    launch<DHP, false>(a, B, stream);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

size_t flash_attention_bwd_scratch_bytes(int B, int N, int H) {
  return size_t(B) * size_t(H) * size_t(N) * sizeof(float);
}

void flash_attention_bwd_bf16(const void* dout, const void* qkv, const void* out, const float* lse,
                              void* dqkv, float* delta, int B, int N, int H, int Dh, float scale,
                              cudaStream_t stream) {
  UVIT_CHECK(flash_attention_supported(Dh),
             "cuda flash attention backward: unsupported head dim Dh=", Dh, " (1..128)");
  UVIT_CHECK(B >= 0 && N >= 0 && H >= 0, "cuda flash attention backward: negative shape B=", B,
             " N=", N, " H=", H);
  if (B == 0 || N == 0 || H == 0) return;
  const size_t rows = size_t(B) * H * N;
  attention_delta(true, dout, out, delta, rows, N, H, Dh, stream);

  Args a{};
  a.dout = static_cast<const bf16*>(dout);
  a.qkv = static_cast<const bf16*>(qkv);
  a.lse = lse;
  a.delta = delta;
  a.dqkv = static_cast<bf16*>(dqkv);
  a.N = N;
  a.H = H;
  a.Dh = Dh;
  a.BH = B * H;
  a.scale = scale;
  a.scale_log2 = scale * kLog2e;
  a.out_vec = Dh % 8 == 0 && aligned16(dqkv);
  const bool vec_in = Dh % 8 == 0 && aligned16(qkv) && aligned16(dout);
  switch ((Dh + 15) / 16) {
    case 1:
      return dispatch<16>(a, B, vec_in, stream);
    case 2:
      return dispatch<32>(a, B, vec_in, stream);
    case 3:
      return dispatch<48>(a, B, vec_in, stream);
    case 4:
      return dispatch<64>(a, B, vec_in, stream);
    case 5:
      return dispatch<80>(a, B, vec_in, stream);
    case 6:
      return dispatch<96>(a, B, vec_in, stream);
    case 7:
      return dispatch<112>(a, B, vec_in, stream);
    default:
      return dispatch<128>(a, B, vec_in, stream);
  }
}

}  // namespace uvit::cuda
