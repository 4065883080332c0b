// Fused attention, one task per (batch, head), queries processed in blocks of kBq against all keys:
// only a [kBq, N] score tile per thread exists, never [B, H, N, N]. The forward saves the
// log-sum-exp per query; the backward (FlashAttention-2 style) recomputes P = exp(S - lse) per
// block, uses D_i = rowsum(dO_i * O_i) and dS = P * (dP - D_i). The small products run as
// single-threaded sgemm calls on strided views of qkv (faster than hand loops at Dh <= 72).
// In the bf16 mode (docs/cpu_bf16.md) the products take bf16 operands (the probabilities and dS
// tiles are rounded to bf16 for them, as on CUDA) and accumulate in fp32: scores, softmax, and
// the dK/dV sums over query blocks stay fp32 until the final store.
// With an additive bias (MDT's relative position bias) each score tile starts as its bias rows and
// the Q K^T product accumulates onto it (GEMM beta 1); over the full grid the bias of each head is
// materialised once per call ([H, N, N], shared by the batch) so a tile's rows are one copy. The
// backward scatters dS over the index into one [R] slice per (batch, head) and adds the slices into
// dtable in batch order, so the table gradient is deterministic.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/vmath.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {

constexpr int kBq = 128;  // query rows per tile: two [128, N<=400] fp32 tiles stay in L2

// Row maximum with 16 independent lanes: GCC does not vectorise a max-reduction under IEEE
// semantics, and this loop was half of the softmax time when scalar. GCC left even the 16-lane
// form scalar (16 vmaxss per step), so with AVX-512 the lanes are one vmaxps register, which
// computes the same select (row > lane ? row : lane, lane where either is NaN) lane for lane.
float row_max(const float* row, int n) {
  constexpr int W = 16;
  float lane[W];
  int j = 0;
#if defined(UVIT_CPU_AVX512)
  __m512 acc = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (; j + W <= n; j += W) acc = _mm512_maskz_max_ps(0xffff, _mm512_loadu_ps(row + j), acc);
  _mm512_storeu_ps(lane, acc);
#else
  for (int l = 0; l < W; ++l) lane[l] = -std::numeric_limits<float>::infinity();
  for (; j + W <= n; j += W)
    for (int l = 0; l < W; ++l) lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
#endif
  float mx = -std::numeric_limits<float>::infinity();
  for (int l = 0; l < W; ++l) mx = lane[l] > mx ? lane[l] : mx;
  for (; j < n; ++j) mx = row[j] > mx ? row[j] : mx;
  return mx;
}

// In place: row r of s (length n, scale already applied by the GEMM) becomes exp(s - max), inv[r]
// its 1/sum (applied to the [rows, Dh] output instead of the [rows, n] tile) and lse[r] the
// log-sum-exp.
void softmax_rows(float* s, int rows, int n, float* inv, float* lse) {
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<size_t>(r) * n;
    const float mx = row_max(row, n);
    // Two passes: the exp in 16 lanes (GCC's tuning for AVX-512 Intel cores picks 8; same bits per
    // element, docs/kernels.md "Vector width"), then the sum in the order the fused loop had.
#pragma omp simd simdlen(16)
    for (int j = 0; j < n; ++j) row[j] = vm::exp(row[j] - mx);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; ++j) sum += row[j];
    inv[r] = 1.f / sum;
    if (lse) lse[r] = mx + std::log(sum);
  }
}

// The bias of every head over the full grid, [H, N, N] (nullptr-sized for gathered tokens,
// whose bias differs per batch element).
std::vector<float> full_bias(const Backend::AttnBias* b, int N, int H) {
  if (!b || b->ids) return {};
  std::vector<float> full(size_t(H) * N * N);
#pragma omp parallel for schedule(static) if (size_t(H) * N * N >= 65536)
  for (int i = 0; i < N; ++i) {
    const int32_t* ir = b->index + size_t(i) * b->Lf;
    for (int h = 0; h < H; ++h) {
      float* row = full.data() + (size_t(h) * N + i) * N;
      for (int j = 0; j < N; ++j) row[j] = b->table[size_t(ir[j]) * H + h];
    }
  }
  return full;
}

// One (batch, head) task's view of the bias: the head's materialised bias (full grid), or its
// table column, the key positions and the index rows the queries read (gathered tokens).
struct BiasRows {
  const Backend::AttnBias* b = nullptr;
  const float* full = nullptr;  // [N, N] of this head
  std::vector<float> col;       // table[:, h]
  std::vector<int32_t> kpos;    // position of key j among the Lf
  const int32_t* ids = nullptr;

  void setup(const Backend::AttnBias* bias, const std::vector<float>& all, int batch, int h, int H,
             int N) {
    b = bias;
    if (!b) return;
    ids = b->ids ? b->ids + size_t(batch) * N : nullptr;
    if (!ids) {
      full = all.data() + size_t(h) * N * N;
    } else {
      col.resize(size_t(b->R));
      for (int r = 0; r < b->R; ++r) col[size_t(r)] = b->table[size_t(r) * H + h];
    }
    kpos.resize(size_t(N));
    for (int j = 0; j < N; ++j) kpos[size_t(j)] = ids ? ids[j] : j;
  }
  const int32_t* index_row(int i) const {
    return b->index + size_t(ids ? ids[i] : i) * size_t(b->Lf);
  }
  // The [rows, N] tile s = the bias of query rows i0 .. i0 + rows.
  void fill(float* s, int i0, int rows, int N) const {
    if (full) {
      std::memcpy(s, full + size_t(i0) * N, sizeof(float) * size_t(rows) * N);
      return;
    }
    for (int r = 0; r < rows; ++r) {
      const int32_t* ir = index_row(i0 + r);
      float* row = s + size_t(r) * N;
      for (int j = 0; j < N; ++j) row[j] = col[size_t(ir[kpos[size_t(j)]])];
    }
  }
  // dcol[index] += dS over the [rows, N] tile ds.
  void scatter(const float* ds, int i0, int rows, int N, float* dcol) const {
    for (int r = 0; r < rows; ++r) {
      const int32_t* ir = index_row(i0 + r);
      const float* row = ds + size_t(r) * N;
      for (int j = 0; j < N; ++j) dcol[ir[kpos[size_t(j)]]] += row[j];
    }
  }
};

using cpu::as;
using cpu::bf16;
using cpu::ld;
using cpu::st;

// C[M,N] (fp32) = alpha op(A) op(B) + beta C, single-threaded, A and B of the act type.
template <class T>
void gemm_t(bool ta, bool tb, int M, int N, int K, float alpha, const T* A, int lda, const T* B,
            int ldb, float beta, float* C, int ldc) {
  if constexpr (std::is_same_v<T, float>)
    gemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  else
    gemm_serial_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// A head's n rows (Dh wide, ld apart in qkv or out) as a GEMM operand. In the bf16 mode they are
// copied into a dense [n, Dh] buffer once per task: oneDNN 2.6 runs its AMX kernels only on dense
// operands, and on strided ones falls back to a kernel that is 2-17x slower at these shapes
// (docs/cpu_bf16.md, "On AMX: dense operands"). fp32 mode (sgemm takes strides) uses the view
// itself.
template <class T>
struct HeadRows {
  std::vector<T> buf;
  const T* p = nullptr;
  int ld = 0;
  void set(const T* src, int ld_src, int n, int Dh) {
    if constexpr (std::is_same_v<T, float>) {
      p = src;
      ld = ld_src;
    } else {
      buf.resize(size_t(n) * Dh);
      cpu::copy_rows(buf.data(), Dh, src, ld_src, n, Dh, sizeof(T));
      p = buf.data();
      ld = Dh;
    }
  }
  const T* row(int i) const { return p + size_t(i) * ld; }
};

// Per-thread fp32 accumulators for act outputs: with fp32 acts the products write the output
// directly; with bf16 acts they write here and store() rounds once.
template <class T>
struct Acc {
  std::vector<float> buf;
  explicit Acc(size_t n) : buf(std::is_same_v<T, float> ? 0 : n) {}
  // Where a product for `out` (rows ld_out apart, Dh wide) accumulates, and its row stride.
  float* at(T* out) {
    if constexpr (std::is_same_v<T, float>)
      return out;
    else
      return buf.data();
  }
  int ld(int ld_out, int Dh) const { return std::is_same_v<T, float> ? ld_out : Dh; }
  // out = acc * mul[r] (mul == nullptr: 1) for rows x Dh.
  void store(T* out, int ld_out, int rows, int Dh, const float* mul = nullptr) {
    const float* a = at(out);
    const int la = ld(ld_out, Dh);
    for (int r = 0; r < rows; ++r) {
      const float m = mul ? mul[r] : 1.f;
      if (!mul && std::is_same_v<T, float>) continue;  // already in place
      T* o = out + static_cast<size_t>(r) * ld_out;
      const float* ar = a + static_cast<size_t>(r) * la;
#pragma omp simd
      for (int d = 0; d < Dh; ++d) o[d] = st<T>(ar[d] * m);
    }
  }
};

// The [rows, n] fp32 tile as an operand of the act type (rounded to bf16 in the bf16 mode).
template <class T>
const T* operand(const std::vector<float>& tile, std::vector<T>& conv, size_t n) {
  if constexpr (std::is_same_v<T, float>) {
    return tile.data();
  } else {
    cpu::convert(conv.data(), tile.data(), long(n));
    return conv.data();
  }
}

// Sample b's valid tokens (the first lens[b]; all N without lens).
int valid_len(const int32_t* lens, int b, int N) { return lens ? lens[b] : N; }

void check_lens(const int32_t* lens, int B, int N, const char* op) {
  for (int b = 0; b < B; ++b)
    UVIT_CHECK(lens[b] >= 1 && lens[b] <= N, op, ": sample ", b, " has ", lens[b],
               " valid tokens, outside [1, ", N, "]");
}

// With lens (varlen), each (batch, head) task runs over its first n = lens[b] queries and keys,
// exactly as a sequence of n tokens (rows keep their strides), and zeroes its padded rows.
template <class T>
void attention_fwd_t(const T* qkv, T* out, float* lse, int B, int N, int H, int Dh, float scale,
                     const Backend::AttnBias* bias = nullptr, const int32_t* lens = nullptr) {
  const int D = H * Dh, ld3 = 3 * D;
  const int tasks = B * H;
  const std::vector<float> full = full_bias(bias, N, H);
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> s(static_cast<size_t>(kBq) * N), inv(kBq);
    std::vector<T> p(std::is_same_v<T, float> ? 0 : s.size());
    Acc<T> acc(static_cast<size_t>(kBq) * Dh);
    HeadRows<T> q, k, v;
    BiasRows br;
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / H, h = task % H;
      br.setup(bias, full, b, h, H, N);
      const int n = valid_len(lens, b, N);
      const T* q0 = qkv + static_cast<size_t>(b) * N * ld3 + h * Dh;
      q.set(q0, ld3, n, Dh);
      k.set(q0 + D, ld3, n, Dh);
      v.set(q0 + 2 * D, ld3, n, Dh);
      T* o = out + static_cast<size_t>(b) * N * D + h * Dh;
      float* l = lse ? lse + static_cast<size_t>(task) * N : nullptr;
      for (int i0 = 0; i0 < n; i0 += kBq) {
        const int bq = std::min(kBq, n - i0);
        // S = scale * Q_blk K^T (+ bias), then exp in place, then O_blk = (E V) / rowsum(E).
        if (bias) br.fill(s.data(), i0, bq, N);
        gemm_t<T>(false, true, bq, n, Dh, scale, q.row(i0), q.ld, k.p, k.ld, bias ? 1.f : 0.f,
                  s.data(), n);
        softmax_rows(s.data(), bq, n, inv.data(), l ? l + i0 : nullptr);
        T* ob = o + static_cast<size_t>(i0) * D;
        gemm_t<T>(false, false, bq, Dh, n, 1.f, operand<T>(s, p, size_t(bq) * n), n, v.p, v.ld, 0.f,
                  acc.at(ob), acc.ld(D, Dh));
        acc.store(ob, D, bq, Dh, inv.data());
      }
      for (int i = n; i < N; ++i) {  // padding: zero output, lse 0
        std::fill_n(o + static_cast<size_t>(i) * D, Dh, st<T>(0.f));
        if (l) l[i] = 0.f;
      }
    }
  }
}

template <class T>
void attention_bwd_t(const T* dout, const T* qkv, const T* out, const float* lse, T* dqkv, int B,
                     int N, int H, int Dh, float scale, const Backend::AttnBias* bias = nullptr,
                     float* dtable = nullptr, const int32_t* lens = nullptr) {
  const int D = H * Dh, ld3 = 3 * D;
  const int tasks = B * H;
  // The bias gradient of task (b, h) over the R table rows, added into dtable after the tasks.
  std::vector<float> dslices(bias && dtable ? size_t(tasks) * bias->R : 0, 0.f);
  const std::vector<float> full = full_bias(bias, N, H);
#pragma omp parallel if (tasks > 1)
  {
    std::vector<float> p(static_cast<size_t>(kBq) * N), dp(static_cast<size_t>(kBq) * N);
    std::vector<T> p16(std::is_same_v<T, float> ? 0 : p.size()), ds16(p16.size());
    std::vector<float> di(N);
    Acc<T> dq_acc(static_cast<size_t>(kBq) * Dh), dk_acc(static_cast<size_t>(N) * Dh),
        dv_acc(static_cast<size_t>(N) * Dh);
    HeadRows<T> q, k, v, dO;
    BiasRows br;
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < tasks; ++task) {
      const int b = task / H, h = task % H;
      br.setup(bias, full, b, h, H, N);
      float* dcol = dslices.empty() ? nullptr : dslices.data() + size_t(task) * bias->R;
      const int n = valid_len(lens, b, N);
      const size_t base3 = static_cast<size_t>(b) * N * ld3 + h * Dh;
      q.set(qkv + base3, ld3, n, Dh);
      k.set(qkv + base3 + D, ld3, n, Dh);
      v.set(qkv + base3 + 2 * D, ld3, n, Dh);
      T* dq = dqkv + base3;
      T* dk = dq + D;
      T* dv = dq + 2 * D;
      const size_t base = static_cast<size_t>(b) * N * D + h * Dh;
      const T* o = out + base;
      dO.set(dout + base, D, n, Dh);
      const float* l = lse + static_cast<size_t>(task) * N;
      for (int i = 0; i < n; ++i) {
        const T* a = dO.row(i);
        const T* c = o + static_cast<size_t>(i) * D;
        float acc = 0.f;
#pragma omp simd reduction(+ : acc)
        for (int d = 0; d < Dh; ++d) acc += ld(a[d]) * ld(c[d]);
        di[i] = acc;
      }
      for (int i0 = 0; i0 < n; i0 += kBq) {
        const int bq = std::min(kBq, n - i0);
        const T* qb = q.row(i0);
        const T* dob = dO.row(i0);
        const float first = i0 == 0 ? 0.f : 1.f;  // dk, dv are overwritten by the first block
        // P = exp(scale * Q K^T - lse); this loop and dS's in 16 lanes, as softmax_rows'.
        if (bias) br.fill(p.data(), i0, bq, N);
        gemm_t<T>(false, true, bq, n, Dh, scale, qb, q.ld, k.p, k.ld, bias ? 1.f : 0.f, p.data(),
                  n);
        for (int r = 0; r < bq; ++r) {
          float* row = p.data() + static_cast<size_t>(r) * n;
          const float li = l[i0 + r];
#pragma omp simd simdlen(16)
          for (int j = 0; j < n; ++j) row[j] = vm::exp(row[j] - li);
        }
        // dV (+)= P^T dO_blk ; dP = dO_blk V^T
        gemm_t<T>(true, false, n, Dh, bq, 1.f, operand<T>(p, p16, size_t(bq) * n), n, dob, dO.ld,
                  first, dv_acc.at(dv), dv_acc.ld(ld3, Dh));
        gemm_t<T>(false, true, bq, n, Dh, 1.f, dob, dO.ld, v.p, v.ld, 0.f, dp.data(), n);
        // dS = P * (dP - D_i); the score scale is folded into the dQ / dK products.
        for (int r = 0; r < bq; ++r) {
          const float* pr = p.data() + static_cast<size_t>(r) * n;
          float* dr = dp.data() + static_cast<size_t>(r) * n;
          const float dii = di[i0 + r];
#pragma omp simd simdlen(16)
          for (int j = 0; j < n; ++j) dr[j] = pr[j] * (dr[j] - dii);
        }
        if (dcol) br.scatter(dp.data(), i0, bq, N, dcol);  // d(bias) = dS
        const T* ds = operand<T>(dp, ds16, size_t(bq) * n);
        T* dqb = dq + static_cast<size_t>(i0) * ld3;
        gemm_t<T>(false, false, bq, Dh, n, scale, ds, n, k.p, k.ld, 0.f, dq_acc.at(dqb),
                  dq_acc.ld(ld3, Dh));
        dq_acc.store(dqb, ld3, bq, Dh);
        gemm_t<T>(true, false, n, Dh, bq, scale, ds, n, qb, q.ld, first, dk_acc.at(dk),
                  dk_acc.ld(ld3, Dh));
      }
      dk_acc.store(dk, ld3, n, Dh);
      dv_acc.store(dv, ld3, n, Dh);
      for (int i = n; i < N; ++i)  // padding: no gradient
        for (T* g : {dq, dk, dv}) std::fill_n(g + static_cast<size_t>(i) * ld3, Dh, st<T>(0.f));
    }
  }
  if (dslices.empty()) return;
  const int R = bias->R;
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const float* sl = dslices.data() + (size_t(b) * H + h) * R;
      for (int r = 0; r < R; ++r) dtable[size_t(r) * H + h] += sl[r];
    }
}

}  // namespace

void CpuBackend::attention_bias_fwd(const float* qkv, const AttnBias& bias, float* out, float* lse,
                                    int B, int N, int H, int Dh, float scale) {
  UVIT_CPU_ACT(attention_fwd_t(as<T>(qkv), as<T>(out), lse, B, N, H, Dh, scale, &bias));
}

void CpuBackend::attention_bias_bwd(const float* dout, const float* qkv, const float* out,
                                    const float* lse, const AttnBias& bias, float* dqkv,
                                    float* dtable, int B, int N, int H, int Dh, float scale) {
  UVIT_CPU_ACT(attention_bwd_t(as<T>(dout), as<T>(qkv), as<T>(out), lse, as<T>(dqkv), B, N, H, Dh,
                               scale, &bias, dtable));
}

void CpuBackend::attention_varlen_fwd(const float* qkv, const int32_t* lens, float* out, float* lse,
                                      int B, int N, int H, int Dh, float scale) {
  check_lens(lens, B, N, "attention_varlen_fwd");
  UVIT_CPU_ACT(attention_fwd_t(as<T>(qkv), as<T>(out), lse, B, N, H, Dh, scale, nullptr, lens));
}

void CpuBackend::attention_varlen_bwd(const float* dout, const float* qkv, const float* out,
                                      const float* lse, const int32_t* lens, float* dqkv, int B,
                                      int N, int H, int Dh, float scale) {
  check_lens(lens, B, N, "attention_varlen_bwd");
  UVIT_CPU_ACT(attention_bwd_t(as<T>(dout), as<T>(qkv), as<T>(out), lse, as<T>(dqkv), B, N, H, Dh,
                               scale, nullptr, nullptr, lens));
}

void CpuBackend::attention_fwd(const float* qkv, float* out, float* lse, int B, int N, int H,
                               int Dh, float scale) {
  UVIT_CPU_ACT(attention_fwd_t(as<T>(qkv), as<T>(out), lse, B, N, H, Dh, scale));
}

void CpuBackend::attention_bwd(const float* dout, const float* qkv, const float* out,
                               const float* lse, float* dqkv, int B, int N, int H, int Dh,
                               float scale) {
  UVIT_CPU_ACT(
      attention_bwd_t(as<T>(dout), as<T>(qkv), as<T>(out), lse, as<T>(dqkv), B, N, H, Dh, scale));
}

}  // namespace uvit
