// cuBLASLt GEMMs. Row-major C[M,N] = op(A) op(B) is the column-major product
// C^T[N,M] = op(B)^T op(A)^T, so cuBLASLt's "A" is our B and its "B" is our A, with the same
// transpose flags. Plans (descriptors + the heuristic's algorithm) are cached per shape and per
// pointer alignment (the heuristic's choice depends on it: bf16 views offset by odd element counts
// are only 2-byte aligned). When cuBLASLt offers no algorithm the call falls back to cublasGemmEx
// (plus a bias kernel), announced once on stderr: never a silent failure. With autotuning on
// (UVIT_CUBLASLT_AUTOTUNE), a plan asks the heuristic for several algorithms and, at its first
// call, times each on the real operands into a scratch output (the real output is untouched) and
// keeps the fastest: the algorithms differ only in tiling and summation order.
#include "backend/cuda/gemm.hpp"

#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "backend/algo_autotune.hpp"
#include "backend/cuda/cuda_common.hpp"
#include "backend/cuda/gemm_kernels.hpp"
#include "uvit/error.hpp"

namespace uvit::cuda {

namespace {

constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kMaxPlans = 1024;  // shapes vary little (batch sizes); bound it anyway

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) fail("cuda gemm: ", what, " failed: ", cudaGetErrorString(e));
}

void check_blas(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("cuda gemm: ", what, " failed: ", cublasGetStatusString(s), " (", int(s), ")");
}

// The largest power of two (<= 256) dividing the address: cuBLASLt's MIN_ALIGNMENT preferences.
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && (a % al) != 0) al /= 2;
  return al;
}

enum class Kind { kGemm, kWgrad };  // kWgrad: A/B act, C/D fp32

// kind, trans_a, trans_b, M, N, K, lda, ldb, ldc, bias epilogue, alignments of A, B, C, D,
// batch count and the strides of A, B, C (batch 1: strides 0)
using Key = std::tuple<int, bool, bool, int, int, int, int, int, int, bool, uint32_t, uint32_t,
                       uint32_t, uint32_t, int, long long, long long, long long>;

// One matrix of a strided batch (no-op for batch 1).
void set_batch(cublasLtMatrixLayout_t l, int batch, long long stride) {
  if (batch <= 1) return;
  check_blas(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                              sizeof(batch)),
             "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
  const int64_t st = stride;
  check_blas(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &st,
                                              sizeof(st)),
             "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
}

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // cuBLASLt's A (= our B), B, C=D
  cublasLtMatmulAlgo_t algo{};
  bool found = false;                            // the heuristic returned an algorithm
  std::vector<cublasLtMatmulAlgo_t> candidates;  // autotuning: the heuristic's list, best first

  void destroy() {
    if (desc) cublasLtMatmulDescDestroy(desc);
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    desc = nullptr;
    a = b = c = nullptr;
  }
};

void warn_fallback_once(const char* what, int M, int N, int K) {
  static bool warned = false;
  if (warned) return;
  warned = true;
  std::fprintf(stderr,
               "uvit cuda gemm: cuBLASLt has no algorithm for %s M=%d N=%d K=%d (alignment or "
               "leading dimensions); using cublasGemmEx (reported once)\n",
               what, M, N, K);
}

class LtGemm final : public GemmContext {
 public:
  LtGemm(cudaStream_t stream, bool bf16, bool tf32, int autotune)
      : stream_(stream),
        act_(bf16 ? CUDA_R_16BF : CUDA_R_32F),
        compute_(!bf16 && tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F),
        esize_(bf16 ? 2 : 4),
        autotune_(autotune) {
    if (autotune_ > 1) tuner_ = std::make_unique<AlgoAutotuner>();
    check_blas(cublasLtCreate(&lt_), "cublasLtCreate");
    const cudaError_t e = cudaMalloc(&workspace_, kWorkspaceBytes);
    if (e != cudaSuccess) {
      cublasLtDestroy(lt_);
      fail("cuda gemm: cudaMalloc of the 32 MiB cuBLASLt workspace failed: ",
           cudaGetErrorString(e));
    }
  }

  size_t workspace_bytes() const override { return kWorkspaceBytes; }
  const AlgoAutotuner* autotuner() const override { return tuner_.get(); }

  ~LtGemm() override {
    if (tuner_ && !tuner_->keys().empty() && std::getenv("UVIT_CUBLASLT_AUTOTUNE"))
      std::fprintf(stderr, "uvit cublaslt autotune (UVIT_CUBLASLT_AUTOTUNE=%d candidates):\n%s",
                   autotune_, tuner_->report().c_str());
    for (auto& kv : plans_) kv.second.destroy();
    if (blas_) cublasDestroy(blas_);
    if (lt_) cublasLtDestroy(lt_);
    if (workspace_) cudaFree(workspace_);
  }

  void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void* A, int lda,
            const void* B, int ldb, float beta, void* C, int ldc) override {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) return gemm_scale_rows(C, beta, M, N, ldc, bf16(), stream_);
    if (lt_matmul(Kind::kGemm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, C, ldc,
                  nullptr))
      return;
    warn_fallback_once("gemm", M, N, K);
    gemm_ex(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, act_);
  }

  void gemm_batched(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void* A,
                    int lda, long long stride_a, const void* B, int ldb, long long stride_b,
                    float beta, void* C, int ldc, long long stride_c, int batch) override {
    if (batch <= 1)
      return batch == 1 ? gemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
                        : void();
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // C_i = beta C_i, one matrix at a time
      for (int i = 0; i < batch; ++i)
        gemm_scale_rows(static_cast<char*>(C) + i * stride_c * esize_, beta, M, N, ldc, bf16(),
                        stream_);
      return;
    }
    if (lt_matmul(Kind::kGemm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, C, ldc,
                  nullptr, batch, stride_a, stride_b, stride_c))
      return;
    warn_fallback_once("gemm_batched", M, N, K);
    ensure_blas();
    check_blas(cublasGemmStridedBatchedEx(
                   blas_, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                   N, M, K, &alpha, B, act_, ldb, stride_b, A, act_, lda, stride_a, &beta, C, act_,
                   ldc, stride_c, batch, compute_, CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx");
  }

  void gemm_wgrad(int M, int N, int K, const void* A, int lda, const void* B, int ldb, float* C,
                  int ldc) override {
    if (M <= 0 || N <= 0 || K <= 0) return;  // C += nothing
    if (lt_matmul(Kind::kWgrad, true, false, M, N, K, 1.f, A, lda, B, ldb, 1.f, C, C, ldc, nullptr))
      return;
    warn_fallback_once("gemm_wgrad", M, N, K);
    gemm_ex(true, false, M, N, K, 1.f, A, lda, B, ldb, 1.f, C, ldc, CUDA_R_32F);
  }

  void linear(const void* x, int ldx, const void* w, int ldw, const void* bias,
              const void* residual, void* y, int ldy, int M, int N, int K) override {
    if (M <= 0 || N <= 0) return;
    const float beta = residual ? 1.f : 0.f;
    const void* c = residual ? residual : y;
    if (K > 0) {
      // The bias epilogue wants a 16-byte aligned bias vector (its type is D's, the act type).
      if (bias && alignment_of(bias) >= 16 &&
          lt_matmul(Kind::kGemm, false, true, M, N, K, 1.f, x, ldx, w, ldw, beta, c, y, ldy, bias))
        return;
      if (lt_matmul(Kind::kGemm, false, true, M, N, K, 1.f, x, ldx, w, ldw, beta, c, y, ldy,
                    nullptr)) {
        if (bias) gemm_add_bias_rows(y, bias, M, N, ldy, bf16(), stream_);
        return;
      }
      warn_fallback_once("linear", M, N, K);
    }
    // cublasGemmEx (or K == 0): C must be D, so bring the residual into y first.
    if (residual && residual != y)
      check_cuda(
          cudaMemcpy2DAsync(y, size_t(ldy) * esize_, residual, size_t(ldy) * esize_,
                            size_t(N) * esize_, size_t(M), cudaMemcpyDeviceToDevice, stream_),
          "cudaMemcpy2DAsync (linear residual)");
    if (K > 0)
      gemm_ex(false, true, M, N, K, 1.f, x, ldx, w, ldw, beta, y, ldy, act_);
    else
      gemm_scale_rows(y, beta, M, N, ldy, bf16(), stream_);
    if (bias) gemm_add_bias_rows(y, bias, M, N, ldy, bf16(), stream_);
  }

 private:
  bool bf16() const { return act_ == CUDA_R_16BF; }

  // D = alpha op(A) op(B) + beta C (+ bias) through cuBLASLt; false when no algorithm exists.
  bool lt_matmul(Kind kind, bool ta, bool tb, int M, int N, int K, float alpha, const void* A,
                 int lda, const void* B, int ldb, float beta, const void* C, void* D, int ldc,
                 const void* bias, int batch = 1, long long sa = 0, long long sb = 0,
                 long long sc = 0) {
    const Key key{int(kind),
                  ta,
                  tb,
                  M,
                  N,
                  K,
                  lda,
                  ldb,
                  ldc,
                  bias != nullptr,
                  alignment_of(A),
                  alignment_of(B),
                  alignment_of(C),
                  alignment_of(D),
                  batch,
                  sa,
                  sb,
                  sc};
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      if (plans_.size() >= kMaxPlans) {
        for (auto& kv : plans_) kv.second.destroy();
        plans_.clear();
      }
      it = plans_.emplace(key, make_plan(key)).first;
    }
    Plan& p = it->second;
    if (!p.found) return false;
    if (bias)
      check_blas(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                                sizeof(bias)),
                 "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    if (p.candidates.size() > 1) tune(key, p, alpha, A, B, beta, C);
    check_blas(cublasLtMatmul(lt_, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, D, p.c, &p.algo,
                              workspace_, kWorkspaceBytes, stream_),
               "cublasLtMatmul");
    return true;
  }

  Plan make_plan(const Key& key) {
    const auto [kind, ta, tb, M, N, K, lda, ldb, ldc, has_bias, alA, alB, alC, alD, batch, sa, sb,
                sc] = key;
    const cudaDataType ab = act_;
    const cudaDataType cd = kind == int(Kind::kWgrad) ? CUDA_R_32F : act_;
    Plan p;
    try {
      check_blas(cublasLtMatmulDescCreate(&p.desc, compute_, CUDA_R_32F),
                 "cublasLtMatmulDescCreate");
      const cublasOperation_t op_a = tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // cuBLASLt's A is our B
      const cublasOperation_t op_b = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
      check_blas(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_a, sizeof(op_a)),
          "cublasLtMatmulDescSetAttribute(TRANSA)");
      check_blas(
          cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_b, sizeof(op_b)),
          "cublasLtMatmulDescSetAttribute(TRANSB)");
      if (has_bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        check_blas(cublasLtMatmulDescSetAttribute(p.desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi,
                                                  sizeof(epi)),
                   "cublasLtMatmulDescSetAttribute(EPILOGUE)");
      }
      // Stored (pre-op) column-major shapes: row-major [r, c] with ld is column-major [c, r].
      check_blas(cublasLtMatrixLayoutCreate(&p.a, ab, tb ? K : N, tb ? N : K, ldb),
                 "cublasLtMatrixLayoutCreate(A)");
      check_blas(cublasLtMatrixLayoutCreate(&p.b, ab, ta ? M : K, ta ? K : M, lda),
                 "cublasLtMatrixLayoutCreate(B)");
      check_blas(cublasLtMatrixLayoutCreate(&p.c, cd, N, M, ldc), "cublasLtMatrixLayoutCreate(C)");
      set_batch(p.a, batch, sb);
      set_batch(p.b, batch, sa);
      set_batch(p.c, batch, sc);

      cublasLtMatmulPreference_t pref = nullptr;
      check_blas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
      const uint64_t ws = kWorkspaceBytes;
      const uint32_t al[4] = {alB, alA, alC, alD};  // cuBLASLt's A, B, C, D
      cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(
          pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
      const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
          CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
      for (int i = 0; i < 4 && s == CUBLAS_STATUS_SUCCESS; ++i)
        s = cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &al[i], sizeof(al[i]));
      cublasLtMatmulHeuristicResult_t res{};
      int count = 0;
      if (s == CUBLAS_STATUS_SUCCESS)
        s = cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, 1, &res, &count);
      // Autotuning: the heuristic's list (its first entry is the one asked for above).
      std::vector<cublasLtMatmulHeuristicResult_t> all(autotune_ > 1 ? size_t(autotune_) : 0);
      int n_all = 0;
      if (s == CUBLAS_STATUS_SUCCESS && !all.empty() &&
          cublasLtMatmulAlgoGetHeuristic(lt_, p.desc, p.a, p.b, p.c, p.c, pref, autotune_,
                                         all.data(), &n_all) != CUBLAS_STATUS_SUCCESS)
        n_all = 0;
      cublasLtMatmulPreferenceDestroy(pref);
      // NOT_SUPPORTED (or zero results) means "no algorithm": the caller falls back.
      if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED)
        check_blas(s, "cublasLtMatmulAlgoGetHeuristic");
      if (s == CUBLAS_STATUS_SUCCESS && count > 0 && res.state == CUBLAS_STATUS_SUCCESS) {
        p.algo = res.algo;
        p.found = true;
        p.candidates.push_back(res.algo);
        for (int i = 0; i < n_all; ++i)  // the rest of the list, without the first choice again
          if (all[size_t(i)].state == CUBLAS_STATUS_SUCCESS &&
              std::memcmp(&all[size_t(i)].algo, &res.algo, sizeof(res.algo)) != 0)
            p.candidates.push_back(all[size_t(i)].algo);
      }
    } catch (...) {
      p.destroy();
      throw;
    }
    return p;
  }

  // Times the plan's candidates on these operands (into a scratch D) once per process and shape
  // and makes the fastest the plan's algorithm (AlgoAutotuner: median of 3 runs, >1% to win).
  void tune(const Key& key, Plan& p, float alpha, const void* A, const void* B, float beta,
            const void* C) {
    const auto [kind, ta, tb, M, N, K, lda, ldb, ldc, has_bias, alA, alB, alC, alD, batch, sa, sb,
                sc] = key;
    const std::string name =
        cat(kind == int(Kind::kWgrad) ? "wgrad"
            : has_bias                ? "gemm+bias"
                                      : "gemm",
            " ", ta ? "T" : "N", tb ? "T" : "N", " M=", M, " N=", N, " K=", K, " ld=", lda, ",",
            ldb, ",", ldc, batch > 1 ? cat(" batch=", batch) : std::string(),
            act_ == CUDA_R_16BF ? " bf16" : " fp32", " align=", alA, ",", alB, ",", alC, ",", alD);
    if (tuner_->has(name)) {  // a plan evicted from plans_ and made again: no new timing
      p.algo = p.candidates[size_t(tuner_->at(name).winner)];
      p.candidates.clear();
      return;
    }
    const size_t out_esize = kind == int(Kind::kWgrad) ? 4 : esize_;
    const size_t out_elems =
        size_t(batch > 1 ? batch - 1 : 0) * size_t(sc) + size_t(M - 1) * size_t(ldc) + size_t(N);
    GrowBuffer scratch_buf("autotune scratch");  // freed however this returns
    void* scratch = scratch_buf.reserve(out_elems * out_esize);
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    check_cuda(cudaEventCreate(&e0), "cudaEventCreate");
    check_cuda(cudaEventCreate(&e1), "cudaEventCreate");
    const AutotuneChoice& c = tuner_->choose(name, int(p.candidates.size()), [&](int i) {
      cudaEventRecord(e0, stream_);
      const cublasStatus_t st =
          cublasLtMatmul(lt_, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, scratch, p.c,
                         &p.candidates[size_t(i)], workspace_, kWorkspaceBytes, stream_);
      cudaEventRecord(e1, stream_);
      float ms = -1.f;
      if (st != CUBLAS_STATUS_SUCCESS || cudaEventSynchronize(e1) != cudaSuccess ||
          cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess) {
        (void)cudaGetLastError();
        return -1.0;
      }
      return double(ms);
    });
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    p.algo = p.candidates[size_t(c.winner)];
    p.candidates.clear();  // tuned: this plan never times again
  }

  // The fallback's handle: legacy cuBLAS (any alignment, any leading dimension), created on first
  // use.
  void ensure_blas() {
    if (blas_) return;
    check_blas(cublasCreate(&blas_), "cublasCreate");
    check_blas(cublasSetStream(blas_, stream_), "cublasSetStream");
    check_blas(cublasSetWorkspace(blas_, workspace_, kWorkspaceBytes), "cublasSetWorkspace");
    // Pedantic: no silent TF32 in fp32 mode; TF32 mode asks for it through compute_.
    if (compute_ == CUBLAS_COMPUTE_32F)
      check_blas(cublasSetMathMode(blas_, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
  }

  // The fallback GEMM. C is also the output.
  void gemm_ex(bool ta, bool tb, int M, int N, int K, float alpha, const void* A, int lda,
               const void* B, int ldb, float beta, void* C, int ldc, cudaDataType ctype) {
    ensure_blas();
    check_blas(cublasGemmEx(blas_, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
                            N, M, K, &alpha, B, act_, ldb, A, act_, lda, &beta, C, ctype, ldc,
                            compute_, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
  }

  cudaStream_t stream_;
  cudaDataType act_;
  cublasComputeType_t compute_;
  size_t esize_;
  cublasLtHandle_t lt_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  void* workspace_ = nullptr;
  std::map<Key, Plan> plans_;
  int autotune_;                          // candidates to time per plan (<= 1: off)
  std::unique_ptr<AlgoAutotuner> tuner_;  // its choices, cached by GEMM description
};

}  // namespace

std::unique_ptr<GemmContext> make_gemm_context(cudaStream_t stream, bool bf16, bool tf32,
                                               int autotune) {
  if (autotune < 0) autotune = autotune_candidates(std::getenv("UVIT_CUBLASLT_AUTOTUNE"));
  return std::make_unique<LtGemm>(stream, bf16, tf32, autotune);
}

}  // namespace uvit::cuda
