// FlashAttention-2-style bf16 attention forward on mma.sync (sm_80+; no wgmma, so one kernel serves
// A100 and H100/H200).
// A block of 4 warps owns 64 queries of one (batch, head); each warp owns 16 query rows, held in
// registers as mma A fragments for the whole kernel. Keys/values stream through shared memory in
// tiles of 64 (double buffered with cp.async when rows are 16-byte aligned), zero-padded to the
// tile in the key dimension and to a multiple of 16 in the head dimension (Dh 72 -> 80). Per tile:
// S = Q K^T (fp32 accumulators), mask keys >= N, online softmax in registers (log2 units, scale
// folded in), P (bf16, reused in registers as the A operand) times V into fp32 O accumulators that
// are rescaled when the row max grows. Fragment layouts of m16n8k16 (g = lane/4, t = lane%4):
// A a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..); B b0 (k 2t..2t+1, n g),
// b1 (k 2t+8.., n g); C c0,c1 (g, 2t..2t+1), c2,c3 (g+8, 2t..2t+1).
#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

#include "backend/cuda/attention_flash.hpp"
#include "backend/cuda/mma_sm80.cuh"
#include "uvit/error.hpp"

namespace uvit::cuda {

namespace {

using bf16 = __nv_bfloat16;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kRows = 16 * kWarps;  // queries per block
constexpr int kKeys = 64;           // keys per tile
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kRows == kKeys, "Q, K and V tiles share one shape");

// Shared memory: Q tile, then K[2], then V[2], each [64][DHP + 8] bf16. The 8-element skew makes
// the row stride an odd multiple of 16 bytes, so ldmatrix's 8 row reads hit distinct banks.
template <int DHP>
struct Layout {
  static constexpr int LD = DHP + 8;
  static constexpr int TILE = kRows * LD;  // elements
  static constexpr size_t bytes = size_t(5) * TILE * sizeof(bf16);
};

// Rows [r0, r0 + 64) of one part (q, k or v) of one head -> dst [64][LD], zeros for rows >= N and
// columns >= Dh; with V, the same rows of the part D columns further (the v part) -> dst2. src
// points at row 0 of its part (a valid address: N >= 1); rows are ld apart. VEC (Dh % 8 == 0,
// 16-byte aligned qkv): asynchronous 16-byte copies, completed by cp_async_wait_all; otherwise
// synchronous 2-byte loads (odd head dims). Not unrolled: unrolled copies kept dozens of hoisted
// addresses live across the main loop.
template <int DHP, bool VEC, bool V>
__device__ __forceinline__ void load_tile(bf16* dst, bf16* dst2, const bf16* src, size_t ld, int D,
                                          int r0, int N, int Dh) {
  constexpr int LD = Layout<DHP>::LD;
  if constexpr (VEC) {
    constexpr int CPR = DHP / 8;  // 16-byte chunks per row
    const uint32_t s1 = smem_u32(dst), s2 = smem_u32(dst2);
#pragma unroll 1
    for (int c = threadIdx.x; c < kRows * CPR; c += kThreads) {
      const int r = c / CPR, d = (c % CPR) * 8;
      const bool ok = r0 + r < N && d < Dh;  // Dh % 8 == 0: a chunk is all in or all out
      const bf16* p = ok ? src + size_t(r0 + r) * ld + d : src;
      const uint32_t so = uint32_t(r * LD + d) * uint32_t(sizeof(bf16));
      cp_async16(s1 + so, p, ok);
      if constexpr (V) cp_async16(s2 + so, p + D, ok);
    }
  } else {
#pragma unroll 1
    for (int c = threadIdx.x; c < kRows * DHP; c += kThreads) {
      const int r = c / DHP, d = c % DHP;
      bf16 a = __ushort_as_bfloat16(0), v = a;
      if (r0 + r < N && d < Dh) {
        const bf16* p = src + size_t(r0 + r) * ld + d;
        a = p[0];
        if constexpr (V) v = p[D];
      }
      dst[r * LD + d] = a;
      if constexpr (V) dst2[r * LD + d] = v;
    }
  }
}

template <int DHP, bool VEC>
__global__ void __launch_bounds__(kThreads, 2)
    flash_attn_fwd_kernel(const bf16* __restrict__ qkv, bf16* __restrict__ out,
                          float* __restrict__ lse, int N, int H, int Dh, int BH, float scale_log2,
                          bool out_vec) {
  constexpr int LD = Layout<DHP>::LD, TILE = Layout<DHP>::TILE;
  constexpr int KS = DHP / 16;   // k-steps of Q K^T; also pairs of 8-wide O column tiles
  constexpr int NT = DHP / 8;    // 8-wide O column tiles
  constexpr int ST = kKeys / 8;  // 8-wide score column tiles
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);
  bf16* ks = qs + TILE;      // 2 buffers
  bf16* vs = ks + 2 * TILE;  // 2 buffers

  const int bh = blockIdx.z * gridDim.y + blockIdx.y;  // (batch, head) = b * H + h
  if (bh >= BH) return;                                // whole block: before any barrier
  const int b = bh / H, h = bh % H;
  const int q0 = blockIdx.x * kRows;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane / 4, t = lane % 4;
  const int D = H * Dh;
  const size_t ld = size_t(3) * D;
  const bf16* qg = qkv + size_t(b) * N * ld + size_t(h) * Dh;
  const bf16* kg = qg + D;
  const int ntiles = (N + kKeys - 1) / kKeys;
  const bool active = q0 + warp * 16 < N;

  load_tile<DHP, VEC, false>(qs, qs, qg, ld, D, q0, N, Dh);
  load_tile<DHP, VEC, true>(ks, vs, kg, ld, D, 0, N, Dh);
  if constexpr (VEC) {
    cp_async_commit();
    cp_async_wait_all();
  }
  __syncthreads();

  // This warp's 16 query rows as A fragments: ldmatrix sub-matrices 0..3 = (rows 0-7, cols 0-7),
  // (rows 8-15, cols 0-7), (rows 0-7, cols 8-15), (rows 8-15, cols 8-15) = a0..a3; lane L gives
  // the address of row L % 16, column (L / 16) * 8.
  uint32_t qf[KS][4];
  {
    const bf16* qw = qs + (warp * 16 + (lane & 15)) * LD + (lane >> 4) * 8;
#pragma unroll
    for (int kk = 0; kk < KS; ++kk) ldmatrix_x4(qf[kk], smem_u32(qw + kk * 16));
  }

  // K as the col-major B operand (B[d][key] = K[key][d]): non-transposed ldmatrix of 16 keys x 16
  // dims, sub-matrices (keys 0-7, d 0-7) = b0 and (keys 0-7, d 8-15) = b1 of key tile n, then the
  // same for keys 8-15 (tile n + 1). Lane L: key (L & 7) + (L >> 4) * 8, d ((L >> 3) & 1) * 8.
  const int k_off = ((lane & 7) + (lane >> 4) * 8) * LD + ((lane >> 3) & 1) * 8;
  // V as the row-major B operand (B[key][d] = V[key][d]): transposed ldmatrix of 16 keys x 16
  // dims, sub-matrices (keys 0-7, d 0-7) = b0 and (keys 8-15, d 0-7) = b1 of column tile n, then
  // the same for d 8-15 (tile n + 1). Lane L: key (L & 7) + ((L >> 3) & 1) * 8, d (L >> 4) * 8.
  const int v_off = ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;

  float o[NT][4];
#pragma unroll
  for (int n = 0; n < NT; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  // Rows g and g + 8 of the warp: running max (log2 units of the scaled scores) and this lane's
  // partial sum of exp2 (its 2 columns of each 8-wide tile; reduced over the quad at the end).
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;

  for (int it = 0; it < ntiles; ++it) {
    const int kt = it * kKeys, buf = it & 1;
    if (it + 1 < ntiles) {  // prefetch the next tile into the other buffer (free since the barrier)
      load_tile<DHP, VEC, true>(ks + (buf ^ 1) * TILE, vs + (buf ^ 1) * TILE, kg, ld, D, kt + kKeys,
                                N, Dh);
      if constexpr (VEC) cp_async_commit();
    }
    const bf16* kb = ks + buf * TILE;
    const bf16* vb = vs + buf * TILE;

    if (active) {  // warp-uniform: a warp whose rows are all >= N only helps load
      // S = Q K^T: s[j] is the 16x8 block of keys kt + 8j .. kt + 8j + 7.
      float s[ST][4];
#pragma unroll
      for (int j = 0; j < ST; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
      for (int np = 0; np < ST / 2; ++np) {
        if (kt + np * 16 >= N) break;  // keys all >= N (ragged last tile): left 0, masked below
#pragma unroll
        for (int kk = 0; kk < KS; ++kk) {
          uint32_t r[4];
          ldmatrix_x4(r, smem_u32(kb + k_off + np * 16 * LD + kk * 16));
          mma_bf16(s[2 * np], qf[kk], r[0], r[1]);
          mma_bf16(s[2 * np + 1], qf[kk], r[2], r[3]);
        }
      }

      // Scale into log2 units (any sign of scale), then mask keys >= N.
#pragma unroll
      for (int j = 0; j < ST; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c) s[j][c] *= scale_log2;
      if (kt + kKeys > N) {
#pragma unroll
        for (int j = 0; j < ST; ++j)
#pragma unroll
          for (int c = 0; c < 4; ++c)
            if (kt + j * 8 + 2 * t + (c & 1) >= N) s[j][c] = -INFINITY;
      }

      // Online softmax. Every tile holds key kt < N, so the new max is finite.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < ST; ++j) {
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
      }
      const float mn0 = fmaxf(m0, quad_max(mx0)), mn1 = fmaxf(m1, quad_max(mx1));
      const float a0 = fast_exp2(m0 - mn0), a1 = fast_exp2(m1 - mn1);  // 0 on the first tile
      m0 = mn0;
      m1 = mn1;
      float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
      for (int j = 0; j < ST; ++j) {
        s[j][0] = fast_exp2(s[j][0] - mn0);
        s[j][1] = fast_exp2(s[j][1] - mn0);
        s[j][2] = fast_exp2(s[j][2] - mn1);
        s[j][3] = fast_exp2(s[j][3] - mn1);
        rs0 += s[j][0] + s[j][1];
        rs1 += s[j][2] + s[j][3];
      }
      l0 = l0 * a0 + rs0;
      l1 = l1 * a1 + rs1;
#pragma unroll
      for (int n = 0; n < NT; ++n) {
        o[n][0] *= a0;
        o[n][1] *= a0;
        o[n][2] *= a1;
        o[n][3] *= a1;
      }

      // O += P V. P's A fragment for keys 16kk..16kk+15 is the C fragments of score tiles 2kk
      // (a0 row g, a1 row g + 8) and 2kk + 1 (a2, a3), packed to bf16.
#pragma unroll
      for (int kk = 0; kk < ST / 2; ++kk) {
        if (kt + kk * 16 >= N) break;  // P is exactly 0 there
        const uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]),
                                pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
        for (int dp = 0; dp < KS; ++dp) {
          uint32_t r[4];
          ldmatrix_x4_trans(r, smem_u32(vb + v_off + kk * 16 * LD + dp * 16));
          mma_bf16(o[2 * dp], pa, r[0], r[1]);
          mma_bf16(o[2 * dp + 1], pa, r[2], r[3]);
        }
      }
    }

    // The next tile has landed (this thread's copies) and is visible to all (the barrier), and
    // every warp is done with this tile's buffers before the next iteration refills them.
    if constexpr (VEC) cp_async_wait_all();
    __syncthreads();
  }

  l0 = quad_sum(l0);
  l1 = quad_sum(l1);
  // l >= 1 (the max term contributes 2^0); an inactive warp has l = 0 but writes nothing.
  const float inv0 = 1.f / l0, inv1 = 1.f / l1;

  // O / l -> bf16 into this warp's own 16 Q rows of shared memory (no other warp reads them after
  // the first barrier), then coalesced copies of rows < N, columns < Dh to global memory.
  bf16* ow = qs + warp * 16 * LD;
  __syncwarp();
#pragma unroll
  for (int n = 0; n < NT; ++n) {
    *reinterpret_cast<__nv_bfloat162*>(ow + g * LD + n * 8 + 2 * t) =
        __floats2bfloat162_rn(o[n][0] * inv0, o[n][1] * inv0);
    *reinterpret_cast<__nv_bfloat162*>(ow + (g + 8) * LD + n * 8 + 2 * t) =
        __floats2bfloat162_rn(o[n][2] * inv1, o[n][3] * inv1);
  }
  __syncwarp();
  const int qw = q0 + warp * 16;
  bf16* og = out + size_t(b) * N * D + size_t(h) * Dh;
  if (out_vec) {  // Dh % 8 == 0 and out 16-byte aligned
    const int cpr = Dh / 8;
    for (int c = lane; c < 16 * cpr; c += 32) {
      const int r = c / cpr, d = (c % cpr) * 8;
      if (qw + r < N)
        *reinterpret_cast<uint4*>(og + size_t(qw + r) * D + d) =
            *reinterpret_cast<const uint4*>(ow + r * LD + d);
    }
  } else {
    for (int c = lane; c < 16 * Dh; c += 32) {
      const int r = c / Dh, d = c % Dh;
      if (qw + r < N) og[size_t(qw + r) * D + d] = ow[r * LD + d];
    }
  }
  if (lse && t == 0) {  // lse [B, H, N] in natural-log units of the scaled scores
    float* lr = lse + size_t(bh) * N;
    if (qw + g < N) lr[qw + g] = (m0 + log2f(l0)) * kLn2;
    if (qw + g + 8 < N) lr[qw + g + 8] = (m1 + log2f(l1)) * kLn2;
  }
}

template <int DHP, bool VEC>
void launch(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh, float scale,
            bool out_vec, cudaStream_t stream) {
  constexpr size_t bytes = Layout<DHP>::bytes;
  auto* kernel = flash_attn_fwd_kernel<DHP, VEC>;
  // The opt-in above 48 KiB is per kernel; set once per instantiation (thread-safe static init).
  static const cudaError_t attr =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (attr != cudaSuccess)
    fail("cuda flash attention: cudaFuncSetAttribute(", bytes,
         " bytes of shared memory) failed: ", cudaGetErrorString(attr));
  const long long BH = (long long)B * H;
  const unsigned gy = unsigned(BH < 65535 ? BH : 65535);
  const unsigned gz = unsigned((BH + gy - 1) / gy);
  UVIT_CHECK(gz <= 65535, "cuda flash attention: B*H=", BH, " exceeds the grid");
  const dim3 grid(unsigned((N + kRows - 1) / kRows), gy, gz);
  kernel<<<grid, kThreads, bytes, stream>>>(static_cast<const bf16*>(qkv), static_cast<bf16*>(out),
                                            lse, N, H, Dh, int(BH), scale * kLog2e, out_vec);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail("cuda flash attention: launch of flash_attn_fwd_kernel (Dh=", Dh,
         ") failed: ", cudaGetErrorString(e));
}

template <int DHP>
void dispatch(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh, float scale,
              cudaStream_t stream) {
  const bool vec_in = Dh % 8 == 0 && reinterpret_cast<uintptr_t>(qkv) % 16 == 0;
  const bool vec_out = Dh % 8 == 0 && reinterpret_cast<uintptr_t>(out) % 16 == 0;
  if (vec_in)
    launch<DHP, true>(qkv, out, lse, B, N, H, Dh, scale, vec_out, stream);
  else
    launch<DHP, false>(qkv, out, lse, B, N, H, Dh, scale, vec_out, stream);
}

}  // namespace

bool flash_attention_supported(int Dh) { return Dh >= 1 && Dh <= 128; }

void flash_attention_fwd_bf16(const void* qkv, void* out, float* lse, int B, int N, int H, int Dh,
                              float scale, cudaStream_t stream) {
  UVIT_CHECK(flash_attention_supported(Dh), "cuda flash attention: unsupported head dim Dh=", Dh,
             " (1..128)");
  UVIT_CHECK(B >= 0 && N >= 0 && H >= 0, "cuda flash attention: negative shape B=", B, " N=", N,
             " H=", H);
  if (B == 0 || N == 0 || H == 0) return;
  switch ((Dh + 15) / 16) {
    case 1:
      return dispatch<16>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 2:
      return dispatch<32>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 3:
      return dispatch<48>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 4:
      return dispatch<64>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 5:
      return dispatch<80>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 6:
      return dispatch<96>(qkv, out, lse, B, N, H, Dh, scale, stream);
    case 7:
      return dispatch<112>(qkv, out, lse, B, N, H, Dh, scale, stream);
    default:
      return dispatch<128>(qkv, out, lse, B, N, H, Dh, scale, stream);
  }
}

}  // namespace uvit::cuda
