// GEMM through oneDNN. Measured at the U-ViT shapes (docs/kernels.md) the matmul primitive (brgemm
// kernels) beats both dnnl_sgemm and OpenBLAS, so whole-model GEMMs use cached matmul primitives;
// calls from inside an OpenMP parallel region (attention) use dnnl_sgemm, which is reentrant and
// runs single-threaded there.
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <tuple>

#include "backend/cpu/cpu_backend.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {

using Key = std::tuple<bool, bool, int, int, int, int, int, int, float, float>;

struct MatmulCache {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<Key, dnnl::matmul> prims;
  std::mutex mu;  // primitives share oneDNN's global scratchpad: one execution at a time
};

MatmulCache& cache() {
  static MatmulCache c;
  return c;
}

constexpr size_t kMaxCached = 512;  // shapes vary little (batch sizes); bound it anyway

dnnl::matmul make_prim(MatmulCache& c, const Key& k) {
  const auto [ta, tb, M, N, K, lda, ldb, ldc, alpha, beta] = k;
  using dims = dnnl::memory::dims;
  using md = dnnl::memory::desc;
  const auto f32 = dnnl::memory::data_type::f32;
  // Row-major op(A)[M,K]: strides (lda,1), or (1,lda) when A is stored transposed; likewise B.
  md a({M, K}, f32, ta ? dims{1, lda} : dims{lda, 1});
  md b({K, N}, f32, tb ? dims{1, ldb} : dims{ldb, 1});
  md cd({M, N}, f32, dims{ldc, 1});
  dnnl::primitive_attr attr;
  if (alpha != 1.f) attr.set_output_scales(0, {alpha});
  if (beta != 0.f) {
    dnnl::post_ops po;
    po.append_sum(beta);
    attr.set_post_ops(po);
  }
  return dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, cd), attr, c.engine));
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

}  // namespace

void gemm_serial(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc);
  check_status(dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                          beta, C, ldc),
               M, N, K);
}

void CpuBackend::gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                      int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) return scale_only(M, N, beta, C, ldc);
  if (omp_in_parallel())
    return gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  auto& c = cache();
  const Key key{trans_a, trans_b, M, N, K, lda, ldb, ldc, alpha, beta};
  std::lock_guard<std::mutex> lock(c.mu);
  auto it = c.prims.find(key);
  if (it == c.prims.end()) {
    if (c.prims.size() >= kMaxCached) c.prims.clear();
    try {
      it = c.prims.emplace(key, make_prim(c, key)).first;
    } catch (const dnnl::error&) {
      // Layouts the primitive does not support fall back to the (slower) BLAS-style entry point.
      return gemm_serial(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
  }
  using dims = dnnl::memory::dims;
  const auto f32 = dnnl::memory::data_type::f32;
  // Memory descriptors only wrap the caller's pointers; the primitive holds the layout.
  dnnl::memory am({{M, K}, f32, trans_a ? dims{1, lda} : dims{lda, 1}}, c.engine,
                  const_cast<float*>(A));
  dnnl::memory bm({{K, N}, f32, trans_b ? dims{1, ldb} : dims{ldb, 1}}, c.engine,
                  const_cast<float*>(B));
  dnnl::memory cm({{M, N}, f32, dims{ldc, 1}}, c.engine, C);
  it->second.execute(c.stream, {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}});
  c.stream.wait();
}

void CpuBackend::add_bias(float* y, const float* b, int M, int N) {
#pragma omp parallel for schedule(static) if (static_cast <long>(M) * N >= 32768)
  for (int m = 0; m < M; ++m) {
    float* row = y + static_cast<size_t>(m) * N;
#pragma omp simd
    for (int n = 0; n < N; ++n) row[n] += b[n];
  }
}

void CpuBackend::bias_grad(const float* dy, float* db, int M, int N) {
  // Columns are split between threads so each db[n] has one writer; rows are summed in order.
  const int chunk = 64;
  const int nchunks = (N + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (static_cast <long>(M) * N >= 32768)
  for (int c = 0; c < nchunks; ++c) {
    const int n0 = c * chunk, n1 = std::min(N, n0 + chunk);
    double acc[chunk] = {};  // double: M is thousands of rows
    for (int m = 0; m < M; ++m) {
      const float* row = dy + static_cast<size_t>(m) * N;
#pragma omp simd
      for (int n = n0; n < n1; ++n) acc[n - n0] += row[n];
    }
    for (int n = n0; n < n1; ++n) db[n] += acc[n - n0];
  }
}

}  // namespace uvit
