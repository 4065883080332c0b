// GEMM through oneDNN. Measured at the U-ViT shapes (docs/kernels.md) the matmul primitive (brgemm
// kernels) beats both dnnl_sgemm and OpenBLAS, so whole-model GEMMs use cached matmul primitives;
// calls from inside an OpenMP parallel region (attention) use dnnl_sgemm, which is reentrant and
// runs single-threaded there. The bf16 mode (docs/cpu_bf16.md) runs bf16 matmul primitives (fp32
// accumulation; oneDNN picks AMX or AVX512-BF16 kernels); oneDNN 2.x has no reentrant bf16 BLAS
// call, so attention's bf16 products run matmul primitives too, each thread with its own stream
// and scratchpad.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "backend/cpu/act.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "core/mem_limit.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {

using dt = dnnl::memory::data_type;
// trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta, A/B type, C type, threads, bias (a
// [N] vector of the A/B type added before the sum: CpuBackend::linear in bf16)
using Key = std::tuple<bool, bool, int, int, int, int, int, int, float, float, dt, dt, int, bool>;

struct MatmulCache {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  struct Entry {
    dnnl::matmul prim;
    dnnl::reorder to_blocked;    // B into the primitive's blocked layout (empty: B as stored)
    dnnl::memory::desc blocked;  // that layout
  };
  std::map<Key, Entry> prims;
  std::vector<char> blocked;  // B in blocked layout, shared: executions are serialised
  std::mutex mu;  // primitives share oneDNN's global scratchpad: one execution at a time
  // Kept blocked weights (docs/kernels.md, "Kept blocked weights"). `weights`: the act copies of
  // network parameters (start -> bytes; in fp32 the parameters themselves), registered by
  // gemm_weights_written after every write; only a B lying inside one is kept. `kept`: per B
  // address, the last (source, blocked) layout pair it was reordered for; the copy is made on the
  // second use of that pair, so a weight used once between two writes (a training step) is never
  // copied. `kept_bytes`: what the copies hold, at most gemm_kept_budget(). `rows`: the most rows
  // (M) of a product reading the buffer since its last write; past kKeptRows its fp32 copies go.
  struct Weights {
    size_t bytes;
    int rows = 0;
  };
  std::map<const char*, Weights> weights;
  struct Kept {
    dnnl::memory::desc src, layout;
    std::unique_ptr<char[]> mem;  // null until the second use; not zeroed: the reorder fills it
    size_t size = 0;
    void* data() { return mem.get() + (-reinterpret_cast<uintptr_t>(mem.get()) & 63); }
  };
  std::map<const void*, Kept> kept;
  size_t kept_bytes = 0;
  std::atomic<bool> any_weights{false};  // lets free_bytes skip the lock without networks
};

MatmulCache& cache() {
  static MatmulCache c;
  return c;
}

constexpr size_t kMaxCached = 512;  // shapes vary little (batch sizes); bound it anyway

using dims = dnnl::memory::dims;
using md = dnnl::memory::desc;

// Row-major op(A)[M,K]: strides (lda,1), or (1,lda) when A is stored transposed; likewise B.
md a_desc(const Key& k) {
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, tab, tc, nt, bias] = k;
  return md({M, K}, tab, ta ? dims{1, lda} : dims{lda, 1});
}
md b_desc(const Key& k) {
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, tab, tc, nt, bias] = k;
  return md({K, N}, tab, tb ? dims{1, ldb} : dims{ldb, 1});
}
md c_desc(const Key& k) {
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, tab, tc, nt, bias] = k;
  return md({M, N}, tc, dims{ldc, 1});
}

// any_b: B in the layout the primitive chooses (format any), reordered into it by the caller.
dnnl::matmul::primitive_desc make_pd(const dnnl::engine& engine, const Key& k,
                                     bool user_scratchpad = false, bool any_b = false) {
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, tab, tc, nt, bias] = k;
  const md a = a_desc(k), cd = c_desc(k);
  const md b = any_b ? md({K, N}, tab, dnnl::memory::format_tag::any) : b_desc(k);
  dnnl::primitive_attr attr;
  if (user_scratchpad) attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  if (alpha != 1.f) attr.set_output_scales(0, {alpha});
  if (beta != 0.f) {
    dnnl::post_ops po;
    po.append_sum(beta);
    attr.set_post_ops(po);
  }
  if (!bias) return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, cd), attr, engine);
  const md bd({1, N}, tab, dims{N, 1});
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, bd, cd), attr, engine);
}

dnnl::matmul make_prim(const dnnl::engine& engine, const Key& k, bool user_scratchpad = false) {
  return dnnl::matmul(make_pd(engine, k, user_scratchpad));
}

// On AMX, oneDNN 2.6's brgemm copies a plain B into its blocked layout again for every block of
// rows of A; one reorder per call before the product measured 1.1-1.5x faster at U-ViT's linears
// (forward and input gradients: bf16 C; the weight gradients, fp32 C, measured slower and keep a
// plain B). docs/cpu_bf16.md, "On AMX: dense operands". Its fp32 brgemm does the same (the copies
// were 13 % of the samples of U-ViT-S/2's fp32 training step), so fp32 products without a
// transposed A (forward and input gradients, not the weight gradients) reorder B once too: the same
// kernel on the same blocks, so the same bits (docs/kernels.md, "fp32: B reordered once").
bool reorder_b(const Key& k) {
  if (std::get<10>(k) == dt::f32) return !std::get<0>(k);
  return gemm_blocks_weights() && std::get<10>(k) == dt::bf16 && std::get<11>(k) == dt::bf16;
}

MatmulCache::Entry make_entry(const dnnl::engine& engine, const Key& k) {
  if (!reorder_b(k)) return {make_prim(engine, k), {}, {}};
  const auto pd = make_pd(engine, k, false, true);
  const md blocked = pd.weights_desc();
  if (blocked == b_desc(k)) return {dnnl::matmul(pd), {}, {}};
  if (std::get<10>(k) == dt::f32) {
    // Only where the plain B gets the same kernel (brgemm): a strided B (U-ViT's skip_linear
    // halves) runs gemm:jit, whose sums the blocked B's brgemm would order differently.
    const auto plain = make_pd(engine, k);
    if (std::string(plain.impl_info_str()) != pd.impl_info_str())
      return {dnnl::matmul(plain), {}, {}};
  }
  return {dnnl::matmul(pd),
          dnnl::reorder(dnnl::reorder::primitive_desc(engine, b_desc(k), engine, blocked)),
          blocked};
}

void check_status(dnnl_status_t s, int M, int N, int K) {
  if (s != dnnl_success)
    fail("gemm: oneDNN sgemm failed with status ", static_cast<int>(s), " for M=", M, " N=", N,
         " K=", K);
}

// C = beta * C when there is nothing to multiply (K == 0); oneDNN rejects zero-sized K.
void scale_only(int M, int N, float beta, float* C, int ldc) {
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n)
      C[static_cast<size_t>(m) * ldc + n] =
          beta == 0.f ? 0.f : beta * C[static_cast<size_t>(m) * ldc + n];
}

void gemm_serial_impl(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                      int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc);
  check_status(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                          beta, C, ldc),
               M, N, K);
}

size_t type_size(dt t) { return t == dt::f32 ? 4 : 2; }

// The stored (rows, ld) of each operand: op(A) [M,K] is stored [K,M] when transposed, likewise B.
struct Stored {
  int rows, cols, ld;
  bool dense() const { return ld == cols; }
};
Stored stored_a(const Key& k) {
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, tab, tc, nt, bias] = k;
  return ta ? Stored{K, M, lda} : Stored{M, K, lda};
}
Stored stored_b(const Key& k) {
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, tab, tc, nt, bias] = k;
  return tb ? Stored{N, K, ldb} : Stored{K, N, ldb};
}
Stored stored_c(const Key& k) { return {std::get<2>(k), std::get<3>(k), std::get<7>(k)}; }

bool run_matmul_dense(const Key& key, const void* A, const void* B, void* C,
                      const void* bias = nullptr);

// C (fp32 or bf16 per key) = alpha op(A) op(B) + beta C through a cached, threaded primitive.
// Returns false when oneDNN offers no primitive for the layout. bias: with the key's bias flag.
bool run_matmul(const Key& key, const void* A, const void* B, void* C, const void* bias = nullptr) {
  const Stored sa = stored_a(key), sb = stored_b(key), sc = stored_c(key);
  const dt tab = std::get<10>(key), tc = std::get<11>(key);
  if (tab == dt::f32 || (sa.dense() && sb.dense() && sc.dense()))
    return run_matmul_dense(key, A, B, C, bias);
  // bf16 with a strided operand (U-ViT's skip_linear column halves, their weight gradients):
  // oneDNN 2.6 runs its AMX kernels only on dense operands and takes a slower gemm kernel for
  // strided ones, so the strided operands are copied dense first (docs/cpu_bf16.md).
  thread_local std::vector<char> pa, pb, pc;
  const size_t za = type_size(tab), zc = type_size(tc);
  Key dk = key;
  if (!sa.dense()) {
    pa.resize(za * sa.rows * sa.cols);
    cpu::copy_rows(pa.data(), sa.cols, A, sa.ld, sa.rows, sa.cols, za);
    A = pa.data();
    std::get<5>(dk) = sa.cols;
  }
  if (!sb.dense()) {
    pb.resize(za * sb.rows * sb.cols);
    cpu::copy_rows(pb.data(), sb.cols, B, sb.ld, sb.rows, sb.cols, za);
    B = pb.data();
    std::get<6>(dk) = sb.cols;
  }
  void* Cd = C;
  if (!sc.dense()) {
    pc.resize(zc * sc.rows * sc.cols);
    if (std::get<9>(key) != 0.f) cpu::copy_rows(pc.data(), sc.cols, C, sc.ld, sc.rows, sc.cols, zc);
    Cd = pc.data();
    std::get<7>(dk) = sc.cols;
  }
  if (!run_matmul_dense(dk, A, B, Cd, bias)) return false;
  if (Cd != C) cpu::copy_rows(C, sc.ld, Cd, sc.cols, sc.rows, sc.cols, zc);
  return true;
}

// The registered act copy of parameters that [p, p + bytes) lies inside, or end. Caller holds c.mu.
auto in_weights(MatmulCache& c, const void* p, size_t bytes) {
  const char* q = static_cast<const char*>(p);
  auto it = c.weights.upper_bound(q);
  if (it == c.weights.begin()) return c.weights.end();
  --it;
  return q + bytes <= it->first + it->second.bytes ? it : c.weights.end();
}

// Drops the kept entries (copies and noted layouts) of B addresses in [p, p + span).
void drop_kept(MatmulCache& c, const char* p, size_t span) {
  const auto lo = c.kept.lower_bound(p), hi = c.kept.lower_bound(p + span);
  for (auto k = lo; k != hi; ++k) c.kept_bytes -= k->second.size;
  c.kept.erase(lo, hi);
}

// fp32 copies are kept only while a network's products have at most this many rows (batch x
// tokens): the per-call reorder costs the same at any M while the product grows with it, so the
// copies saved 10-25 % of a one-thread fp32 forward at batch 1-2 (256 tokens), a few % at batch 4
// and nothing measurable from batch 8 on, where they still cost a copy of every GEMM weight. bf16
// copies (half the bytes) still measured 1.1-1.2x at U-ViT-S/2's batch 8 and keep no row limit
// (docs/kernels.md, "Kept blocked weights"; docs/benchmarks.md, "AMX Xeon, 2026-12-07: the kept
// weights' default").
constexpr int kKeptRows = 1536;

}  // namespace

size_t gemm_kept_budget() {
  static const size_t budget = [] {
    const char* e = std::getenv("UVIT_KEPT_WEIGHTS_MB");
    if (!e || !*e) return process_mem_limit() / 8;
    char* end = nullptr;
    const unsigned long long mb = std::strtoull(e, &end, 10);
    UVIT_CHECK(*end == 0 && e[0] != '-' && mb < (1ull << 40), "UVIT_KEPT_WEIGHTS_MB=", e,
               ": not a whole number of MiB (0 keeps no blocked weights)");
    return size_t(mb) << 20;
  }();
  return budget;
}

namespace {

// Drops kept entry k's copy (its bytes leave the budget's count).
void drop_copy(MatmulCache& c, MatmulCache::Kept& k) {
  c.kept_bytes -= k.size;
  k.mem.reset();
  k.size = 0;
}

// Whether `bytes` more of kept copies fit: the copies within gemm_kept_budget(), and with the
// backends' live buffers (docs/memory.md, "What is counted") under 7/8 of the process's memory,
// so that they only take memory the run's buffers leave free.
bool kept_fits(const MatmulCache& c, size_t bytes) {
  const size_t kept = c.kept_bytes + bytes, limit = process_mem_limit();
  return kept <= gemm_kept_budget() && live_buffer_bytes() + kept <= limit - limit / 8;
}

// B (memory bm at address B) in the primitive's blocked layout: the kept copy when B is a weight
// reordered before for the same layouts since its last write, else reordered now (into a kept
// copy on the second use while the budget allows, otherwise into the shared buffer). The same
// reorder into the same layout either way, so the product's bits do not depend on which. Caller
// holds c.mu.
dnnl::memory blocked_b(MatmulCache& c, const Key& key, const MatmulCache::Entry& e, dnnl::memory bm,
                       const void* B) {
  const Stored sb = stored_b(key);
  const md src = b_desc(key);
  const size_t bytes = e.blocked.get_size();
  const auto w = in_weights(c, B, size_t(sb.rows) * sb.cols * type_size(std::get<10>(key)));
  const int M = std::get<2>(key);
  const int limit = std::get<10>(key) == dt::f32 ? kKeptRows : std::numeric_limits<int>::max();
  if (w != c.weights.end() && w->second.rows <= limit && M > limit)
    drop_kept(c, w->first, w->second.bytes);  // the network outgrew its copies' gain: all go
  if (w != c.weights.end() && (w->second.rows = std::max(w->second.rows, M)) <= limit) {
    MatmulCache::Kept& k = c.kept[B];
    if (k.src == src && k.layout == e.blocked) {
      const bool fresh = !k.mem;
      if (!fresh || kept_fits(c, bytes + 64)) {
        if (fresh) {
          k.mem.reset(new char[bytes + 64]);
          k.size = bytes + 64;
          c.kept_bytes += k.size;
        }
        dnnl::memory wm(e.blocked, c.engine, k.data());
        if (fresh) e.to_blocked.execute(c.stream, bm, wm);
        return wm;
      }
    } else {
      drop_copy(c, k);  // first use of these layouts: noted, not kept yet
      k.src = src;
      k.layout = e.blocked;
    }
  }
  if (c.blocked.size() < bytes + 64) c.blocked.resize(bytes + 64);
  void* p = c.blocked.data() + (-reinterpret_cast<uintptr_t>(c.blocked.data()) & 63);
  dnnl::memory wm(e.blocked, c.engine, p);
  e.to_blocked.execute(c.stream, bm, wm);
  return wm;
}

bool run_matmul_dense(const Key& key_in, const void* A, const void* B, void* C, const void* bias) {
  // oneDNN plans a primitive's split among threads when it is made: one per thread count, so that
  // a process that changes its count (the C API's n_threads per context, the tests) runs each
  // product as planned for the count it runs at.
  Key key = key_in;
  std::get<12>(key) = omp_get_max_threads();
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.prims.find(key);
  if (it == c.prims.end()) {
    if (c.prims.size() >= kMaxCached) c.prims.clear();
    try {
      it = c.prims.emplace(key, make_entry(c.engine, key)).first;
    } catch (const dnnl::error&) {
      return false;
    }
  }
  const MatmulCache::Entry& e = it->second;
  // Memory descriptors only wrap the caller's pointers; the primitive holds the layout.
  dnnl::memory am(a_desc(key), c.engine, const_cast<void*>(A));
  dnnl::memory bm(b_desc(key), c.engine, const_cast<void*>(B));
  dnnl::memory cm(c_desc(key), c.engine, C);
  if (e.to_blocked) bm = blocked_b(c, key, e, bm, B);
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
  if (std::get<13>(key)) {
    const int N = std::get<3>(key);
    args[DNNL_ARG_BIAS] =
        dnnl::memory(md({1, N}, std::get<10>(key), dims{N, 1}), c.engine, const_cast<void*>(bias));
  }
  e.prim.execute(c.stream, args);
  c.stream.wait();
  return true;
}

// bf16 operands widened to fp32 for dnnl_sgemm: the path for layouts no bf16 primitive takes.
void gemm_widened(bool ta, bool tb, int M, int N, int K, float alpha, const cpu::bf16* A, int lda,
                  const cpu::bf16* B, int ldb, float beta, float* C, int ldc) {
  const long na = long(ta ? K : M) * lda, nb = long(tb ? N : K) * ldb;
  std::vector<float> a(static_cast<size_t>(na)), b(static_cast<size_t>(nb));
  cpu::convert(a.data(), A, na);
  cpu::convert(b.data(), B, nb);
  gemm_serial_impl(ta, tb, M, N, K, alpha, a.data(), lda, b.data(), ldb, beta, C, ldc);
}

// One bf16 matmul primitive per shape, executed concurrently by the threads of a parallel region:
// each thread has its own stream and scratchpad (the threaded cache above serialises executions).
struct SerialCache {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  struct Entry {
    dnnl::matmul prim;
    md scratch;
  };
  std::map<Key, Entry> prims;
  std::mutex mu;  // guards the map; primitives execute concurrently
};

SerialCache& serial_cache() {
  static SerialCache c;
  return c;
}

}  // namespace

bool gemm_blocks_weights() {
  static const bool amx = [] {
    const unsigned isa = static_cast<unsigned>(dnnl_get_effective_cpu_isa());
    const unsigned want = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_amx);
    return (isa & want) == want;
  }();
  return amx;
}

void gemm_weights_written(const void* p, size_t bytes) {
  auto& c = cache();
  if (bytes == 0 && !c.any_weights.load()) return;  // a free in fp32 mode
  std::lock_guard<std::mutex> lock(c.mu);
  const char* q = static_cast<const char*>(p);
  auto w = c.weights.find(q);
  const size_t span = std::max(bytes, w == c.weights.end() ? size_t{0} : w->second.bytes);
  drop_kept(c, q, span);
  if (bytes)
    c.weights[q] = {bytes};
  else if (w != c.weights.end())
    c.weights.erase(w);
  c.any_weights = !c.weights.empty();
}

size_t gemm_kept_weight_bytes() {
  auto& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.kept_bytes;
}

void gemm_serial(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  gemm_serial_impl(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

namespace {

// key's product through the serial cache's primitive, run by the calling thread alone (its own
// stream and scratchpad). The primitive is made for key's thread count (std::get<12>); a count of
// 1 makes it with the calling thread's OpenMP count set to 1, so that oneDNN plans no split of
// the sums among threads. False when oneDNN offers no primitive for the layout.
bool run_serial(const Key& key, const void* A, const void* B, float* C) {
  auto& c = serial_cache();
  const SerialCache::Entry* prim = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.prims.find(key);
    if (it == c.prims.end()) {
      const int saved = omp_get_max_threads();
      if (std::get<12>(key) == 1) omp_set_num_threads(1);  // this thread's count alone
      try {
        dnnl::matmul m = make_prim(c.engine, key, true);
        const md spd =
            dnnl::matmul::primitive_desc(const_cast<dnnl_primitive_desc_t>(m.get_primitive_desc()))
                .scratchpad_desc();
        it = c.prims.emplace(key, SerialCache::Entry{m, spd}).first;
      } catch (const dnnl::error&) {
        it = c.prims.end();
      }
      omp_set_num_threads(saved);
    }
    if (it != c.prims.end()) prim = &it->second;  // std::map nodes do not move
  }
  if (!prim) return false;
  thread_local dnnl::stream stream(c.engine);
  thread_local std::vector<char> scratch;
  const md& spd = prim->scratch;
  if (scratch.size() < spd.get_size()) scratch.resize(spd.get_size());
  dnnl::memory am(a_desc(key), c.engine, const_cast<void*>(A));
  dnnl::memory bm(b_desc(key), c.engine, const_cast<void*>(B));
  dnnl::memory cm(c_desc(key), c.engine, C);
  dnnl::memory sm(spd, c.engine, scratch.data());
  prim->prim.execute(
      stream,
      {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}});
  stream.wait();
  return true;
}

// key's product on the calling thread alone: the serial primitive, or where oneDNN offers none
// for the layout, the widened (bf16) or plain (fp32) serial GEMM.
void serial_product(const Key& key, const void* A, const void* B, float* C) {
  if (run_serial(key, A, B, C)) return;
  const auto& [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta, t, tc, threads, flag] = key;
  if (t == dt::bf16)
    gemm_widened(ta, tb, M, N, K, alpha, static_cast<const cpu::bf16*>(A), lda,
                 static_cast<const cpu::bf16*>(B), ldb, beta, C, ldc);
  else
    gemm_serial_impl(ta, tb, M, N, K, alpha, static_cast<const float*>(A), lda,
                     static_cast<const float*>(B), ldb, beta, C, ldc);
}

}  // namespace

void gemm_serial_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void* A,
                      int lda, const void* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc);
  const Key key{trans_a,
                trans_b,
                M,
                N,
                K,
                lda,
                ldb,
                ldc,
                alpha,
                beta,
                dt::bf16,
                dt::f32,
                omp_get_max_threads(),
                false};
  serial_product(key, A, B, C);
}

void CpuBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                      int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (!bf16_) {
    if (K <= 0) return scale_only(M, N, beta, C, ldc);
    const Key key{trans_a, trans_b, M,    N,       K,       lda, ldb,
                  ldc,     alpha,   beta, dt::f32, dt::f32, 0,   false};
    if (omp_in_parallel() || !run_matmul(key, A, B, C))
      gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  // bf16 C: oneDNN computes in fp32 and rounds once on store (its sum post-op reads C).
  const Key key{trans_a, trans_b, M,    N,        K,        lda, ldb,
                ldc,     alpha,   beta, dt::bf16, dt::bf16, 0,   false};
  if (K > 0 && !omp_in_parallel() && run_matmul(key, A, B, C)) return;
  // Other layouts (and K == 0): through an fp32 copy of C.
  std::vector<float> c32(size_t(M) * N);
  auto* C16 = cpu::as<cpu::bf16>(C);
  for (int m = 0; m < M; ++m) cpu::convert(c32.data() + size_t(m) * N, C16 + size_t(m) * ldc, N);
  gemm_serial_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, c32.data(), N);
  for (int m = 0; m < M; ++m) cpu::convert(C16 + size_t(m) * ldc, c32.data() + size_t(m) * N, N);
}

WgradSplit wgrad_split(int M, int N, int K) {
  WgradSplit s;
  s.panels = M > kWgradTile && N > kWgradTile;
  s.tile_m = s.panels ? kWgradPanelM : kWgradTile;
  s.tile_n = kWgradTile;
  s.tiles_m = (M + s.tile_m - 1) / s.tile_m;
  s.tiles_n = (N + s.tile_n - 1) / s.tile_n;
  if (s.panels) {  // at least 5 x 2 tiles: no chunks
    const long fit = kWgradPackBytes / (4l * (long(M) + N)) / 256 * 256;
    s.chunks = 1;
    s.rows = K;
    s.step = int(std::min<long>(K, std::max<long>(kWgradRows, fit)));
    return s;
  }
  const int tiles = s.tiles_m * s.tiles_n;
  const int by_tasks = (kWgradTasks + tiles - 1) / tiles, by_rows = std::max(1, K / kWgradRows);
  s.chunks = std::max(1, std::min(by_tasks, by_rows));
  s.rows = (K + s.chunks - 1) / s.chunks;
  s.chunks = (K + s.rows - 1) / s.rows;  // the last chunk never empty
  s.step = K;
  return s;
}

namespace {

// The panels decomposition of gemm_wgrad (M and N both over one tile, so every panel is read by
// several tiles): per step, A's rows packed once into dense tk x tile_m column panels and B's into
// tk x tile_n ones (panel i at tk * its first column), then one single-threaded GEMM per tile,
// accumulated into C step after step. Packing per tile instead would copy each panel once per
// tile reading it, as 512 x 512 tiles did (DiT-XL/2's MLP: A 3 times, B 9 times).
void wgrad_panels(const WgradSplit& s, int M, int N, int K, const char* a, int lda, const char* b,
                  int ldb, float* C, int ldc, dt t) {
  const size_t z = type_size(t);
  // Kept by the calling thread between calls (a fresh buffer per call costs its page faults);
  // the workers below must use these pointers (a thread_local name is each thread's own).
  thread_local std::vector<char> pa, pb;
  if (pa.size() < size_t(s.step) * M * z) pa.resize(size_t(s.step) * M * z);
  if (pb.size() < size_t(s.step) * N * z) pb.resize(size_t(s.step) * N * z);
  char *const pad = pa.data(), *const pbd = pb.data();
  const int tiles = s.tiles_m * s.tiles_n, packs = s.tiles_m + s.tiles_n;
  for (int k0 = 0; k0 < K; k0 += s.step) {
    const int tk = std::min(s.step, K - k0);
#pragma omp parallel for schedule(dynamic)
    for (int p = 0; p < packs; ++p) {
      const bool is_a = p < s.tiles_m;
      const int c0 = is_a ? p * s.tile_m : (p - s.tiles_m) * s.tile_n;
      const int w = is_a ? std::min(s.tile_m, M - c0) : std::min(s.tile_n, N - c0);
      const int ld = is_a ? lda : ldb;
      cpu::copy_rows((is_a ? pad : pbd) + size_t(tk) * c0 * z, w,
                     (is_a ? a : b) + (size_t(k0) * ld + c0) * z, ld, tk, w, z);
    }
#pragma omp parallel for schedule(dynamic)
    for (int tile = 0; tile < tiles; ++tile) {
      const int m0 = tile / s.tiles_n * s.tile_m, n0 = tile % s.tiles_n * s.tile_n;
      const int tm = std::min(s.tile_m, M - m0), tn = std::min(s.tile_n, N - n0);
      const void* ap = pad + size_t(tk) * m0 * z;
      const void* bp = pbd + size_t(tk) * n0 * z;
      float* cp = C + size_t(m0) * ldc + n0;
      serial_product({true, false, tm, tn, tk, tm, tn, ldc, 1.f, 1.f, t, dt::f32, 1, false}, ap, bp,
                     cp);
    }
  }
}

}  // namespace

// A fixed decomposition whatever the thread count (docs/kernels.md, "Weight gradients in fixed
// tasks"): oneDNN's threaded matmul splits the sum over K among the threads for some shapes and
// counts (thin products, and wide ones with many rows at 8 and 16 threads), so its last bits
// followed the thread count. Here C is cut into fixed tiles and K into fixed chunks; each (tile,
// chunk) is one single-threaded GEMM, the first chunk accumulated into C, the others into their
// own partials, which are then added to C in chunk order.
void CpuBackend::gemm_wgrad(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                            float* C, int ldc) {
  if (M <= 0 || N <= 0 || K <= 0) return;
  const WgradSplit s = wgrad_split(M, N, K);
  const int T = kWgradTile;
  const dt t = bf16_ ? dt::bf16 : dt::f32;
  const size_t z = type_size(t);  // bytes per A, B element (the act type)
  const auto* a = reinterpret_cast<const char*>(A);
  const auto* b = reinterpret_cast<const char*>(B);
  if (s.panels) return wgrad_panels(s, M, N, K, a, lda, b, ldb, C, ldc, t);
  // Chunk c > 0 of tile (i, j) into its own dense tm x tn block; blocks of one tile are contiguous.
  const size_t tile_floats = size_t(std::min(T, M)) * std::min(T, N);
  const int tiles = s.tiles_m * s.tiles_n;
  std::vector<float> part(size_t(s.chunks - 1) * tiles * tile_floats);
  auto part_at = [&](int tile, int c) {
    return part.data() + (size_t(tile) * (s.chunks - 1) + (c - 1)) * tile_floats;
  };
#pragma omp parallel for schedule(dynamic) if (tiles * s.chunks > 1)
  for (int task = 0; task < tiles * s.chunks; ++task) {
    const int c = task % s.chunks, tile = task / s.chunks;
    const int m0 = tile / s.tiles_n * T, n0 = tile % s.tiles_n * T;
    const int tm = std::min(T, M - m0), tn = std::min(T, N - n0);
    const int k0 = c * s.rows, k1 = std::min(K, k0 + s.rows);
    float* cp = c == 0 ? C + size_t(m0) * ldc + n0 : part_at(tile, c);
    const int ldp = c == 0 ? ldc : tn;
    // oneDNN's brgemm kernels take dense operands only (a strided one runs gemm:jit, measured 1.3x
    // slower here): a tile narrower than A or B has its rows copied dense first, kWgradCopyRows at
    // a time (the copies stay small; each step accumulates into the tile, in row order).
    const bool copy_a = lda != tm, copy_b = ldb != tn;
    const int step = copy_a || copy_b ? kWgradCopyRows : k1 - k0;
    thread_local std::vector<char> pa, pb;
    for (int k = k0; k < k1; k += step) {
      const int tk = std::min(step, k1 - k);
      const void* ap = a + (size_t(k) * lda + m0) * z;
      const void* bp = b + (size_t(k) * ldb + n0) * z;
      int la = lda, lb = ldb;
      if (copy_a) {
        pa.resize(size_t(tk) * tm * z);
        cpu::copy_rows(pa.data(), tm, ap, lda, tk, tm, z);
        ap = pa.data();
        la = tm;
      }
      if (copy_b) {
        pb.resize(size_t(tk) * tn * z);
        cpu::copy_rows(pb.data(), tn, bp, ldb, tk, tn, z);
        bp = pb.data();
        lb = tn;
      }
      const float beta = c == 0 || k > k0 ? 1.f : 0.f;
      serial_product({true, false, tm, tn, tk, la, lb, ldp, 1.f, beta, t, dt::f32, 1, false}, ap,
                     bp, cp);
    }
  }
  if (s.chunks == 1) return;
    // The partials added in chunk order, each output by one thread.
#pragma omp parallel for schedule(static) if (part.size() >= 32768)
  for (int m = 0; m < M; ++m) {
    float* row = C + size_t(m) * ldc;
    const int i = m / T, r = m % T;
    for (int j = 0; j < s.tiles_n; ++j) {
      const int n0 = j * T, tn = std::min(T, N - n0);
      for (int c = 1; c < s.chunks; ++c) {
        const float* p = part_at(i * s.tiles_n + j, c) + size_t(r) * tn;
#pragma omp simd
        for (int n = 0; n < tn; ++n) row[n0 + n] += p[n];
      }
    }
  }
}

namespace {

template <class T>
void add_bias_t(T* y, const T* b, int M, int N) {
  // 16 lanes at a time, converted in registers (act.hpp); the bias widened once per thread.
#pragma omp parallel if (static_cast <long>(M) * N >= 32768)
  {
    std::vector<float> bb = cpu::f32_scratch<T>(size_t(N));
    const float* bf = cpu::load_f32(b, N, bb.data());
#pragma omp for schedule(static)
    for (int m = 0; m < M; ++m) {
      T* row = y + static_cast<size_t>(m) * N;
      cpu::for_each16(N, [=](long i, long k) {
        cpu::store16(row + i, cpu::load16(row + i, k) + cpu::load16(bf + i, k), k);
      });
    }
  }
}

template <class T>
void bias_grad_t(const T* dy, long ld, float* db, int M, int N) {
  // Columns are split between threads so each db[n] has one writer; rows are summed in order. One
  // span of columns per thread, walked row by row: the rows are read contiguously (64-column
  // chunks walked down all M rows read 128-256 bytes of each row per pass).
  const int threads = static_cast<long>(M) * N >= 32768 ? omp_get_max_threads() : 1;
  const int span = ((N + threads - 1) / threads + 15) & ~15;  // whole 16-lane vectors per thread
  const int nspans = (N + span - 1) / span;
#pragma omp parallel for schedule(static) num_threads(nspans) if (nspans > 1)
  for (int c = 0; c < nspans; ++c) {
    const int n0 = c * span, w = std::min(N, n0 + span) - n0;
    std::vector<double> acc(static_cast<size_t>(w), 0.0);  // double: M is thousands of rows
    double* a = acc.data();
    for (int m = 0; m < M; ++m) {
      const T* row = dy + static_cast<size_t>(m) * ld + n0;
#pragma omp simd
      for (int n = 0; n < w; ++n) a[n] += cpu::ld(row[n]);
    }
    for (int n = 0; n < w; ++n) db[n0 + n] += a[n];  // in double, then rounded, as before
  }
}

}  // namespace

// The linear bias is read from the act copy of the parameters (backend.hpp).
void CpuBackend::add_bias(float* y, const float* b, int M, int N) {
  UVIT_CPU_ACT(add_bias_t(cpu::as<T>(y), cpu::as<T>(b), M, N));
}

// The bias added in the matmul's fp32 output (DNNL_ARG_BIAS) instead of a separate add_bias pass.
// bf16, also with an accumulated residual (y == residual): one rounding to bf16 instead of two
// (docs/cpu_bf16.md, "Bias in the matmul"). fp32 without a residual: the same one fp32 sum
// (product + b) as the separate pass, so the same bits, less a pass over y (docs/kernels.md, "Bias
// in the fp32 matmul"); with a residual fusing would reorder two fp32 roundings, so it and a
// separate residual take the generic path.
void CpuBackend::linear(const float* x, int ldx, const float* w, int ldw, const float* bias,
                        const float* residual, float* y, int ldy, int M, int N, int K) {
  const bool fuse = bf16_ ? !residual || residual == y : !residual;
  if (fuse && bias && M > 0 && N > 0 && K > 0 && !omp_in_parallel()) {
    const dt t = bf16_ ? dt::bf16 : dt::f32;
    const Key key{false, true, M, N, K, ldx, ldw, ldy, 1.f, residual ? 1.f : 0.f, t, t, 0, true};
    if (run_matmul(key, x, w, y, bias)) return;
  }
  Backend::linear(x, ldx, w, ldw, bias, residual, y, ldy, M, N, K);
}

void CpuBackend::bias_grad_strided(const float* dy, long ld_dy, float* db, int M, int N) {
  UVIT_CHECK(ld_dy >= N, "bias_grad_strided: row stride ", ld_dy, " < ", N, " features");
  UVIT_CPU_ACT(bias_grad_t(cpu::as<T>(dy), ld_dy, db, M, N));
}

}  // namespace uvit
