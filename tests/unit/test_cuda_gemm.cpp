// The cuBLASLt GEMM context against the CPU backend: all transposes, padded leading dimensions,
// alpha/beta, the fp32-C weight gradient, and linear with every bias/residual combination,
// including misaligned (odd element offset) bf16 operands that force the fallbacks; the same
// again with autotuning (UVIT_CUBLASLT_AUTOTUNE's candidates timed on the real operands).
#ifdef UVIT_HAVE_CUDA
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "backend/algo_autotune.hpp"
#include "backend/cuda/gemm.hpp"
#include "cuda_act.hpp"
#include "gpu_compare.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

// Candidates each context times (0: the heuristic's choice, whatever the environment says).
int tune_k = 0;

using namespace uvit::test;  // Dev, upload/download, randv, round_bf16, expect_close

const char* mode_name(bool bf16) { return bf16 ? "bf16" : "fp32"; }

void check_gemm(bool bf16, bool ta, bool tb, int M, int N, int K, int pad, float alpha,
                float beta) {
  std::mt19937 g(M * 131 + N * 7 + K + ta * 2 + tb);
  const int lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const size_t na = size_t(ta ? K : M) * lda, nb = size_t(tb ? N : K) * ldb, nc = size_t(M) * ldc;
  auto A = randv(na, g), B = randv(nb, g), C = randv(nc, g);
  if (bf16) round_bf16(A), round_bf16(B), round_bf16(C);
  const size_t e = bf16 ? 2 : 4;
  Dev dA(na * e), dB(nb * e), dC(nc * e);
  upload(dA, 0, A, bf16);
  upload(dB, 0, B, bf16);
  upload(dC, 0, C, bf16);
  auto ctx = uvit::cuda::make_gemm_context(0, bf16, false, tune_k);
  ctx->gemm(ta, tb, M, N, K, alpha, dA.p, lda, dB.p, ldb, beta, dC.p, ldc);
  auto got = download(dC, 0, nc, bf16);
  auto cpu = uvit::make_cpu_backend();
  cpu->gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  expect_close(got, C, bf16 ? 1e-2 : 1e-5,
               uvit::cat("gemm ", mode_name(bf16), " ta=", ta, " tb=", tb, " M=", M, " N=", N,
                         " K=", K, " pad=", pad));
}

}  // namespace

TEST(CudaGemm, MatchesCpuAllTransposesAndShapes) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (bool bf16 : {false, true})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        check_gemm(bf16, ta, tb, 37, 53, 29, 3, 0.7f, 0.3f);  // odd sizes, padded ld
        check_gemm(bf16, ta, tb, 128, 96, 64, 0, 1.f, 0.f);
        check_gemm(bf16, ta, tb, 1, 7, 3, 1, 1.f, 1.f);
        check_gemm(bf16, ta, tb, 130, 72, 200, 8, -1.5f, 0.5f);
      }
}

TEST(CudaGemm, ZeroKScalesC) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (bool bf16 : {false, true}) {
    check_gemm(bf16, false, false, 5, 6, 0, 2, 1.f, 0.5f);
    check_gemm(bf16, false, true, 5, 6, 0, 0, 1.f, 0.f);
  }
}

static void check_wgrads() {
  struct Case {
    int M, N, K, pad;
  };
  for (bool bf16 : {false, true})
    for (Case c : {Case{48, 64, 300, 0}, Case{37, 53, 29, 3}, Case{1, 5, 2, 1}}) {
      std::mt19937 g(c.M + c.N + c.K);
      const int lda = c.M + c.pad, ldb = c.N + c.pad, ldc = c.N + c.pad;
      const size_t na = size_t(c.K) * lda, nb = size_t(c.K) * ldb, nc = size_t(c.M) * ldc;
      auto A = randv(na, g), B = randv(nb, g), C = randv(nc, g);
      if (bf16) round_bf16(A), round_bf16(B);
      const size_t e = bf16 ? 2 : 4;
      Dev dA(na * e), dB(nb * e), dC(nc * 4);
      upload(dA, 0, A, bf16);
      upload(dB, 0, B, bf16);
      upload(dC, 0, C, false);
      auto ctx = uvit::cuda::make_gemm_context(0, bf16, false, tune_k);
      ctx->gemm_wgrad(c.M, c.N, c.K, dA.p, lda, dB.p, ldb, static_cast<float*>(dC.p), ldc);
      auto got = download(dC, 0, nc, false);
      auto cpu = uvit::make_cpu_backend();
      cpu->gemm_wgrad(c.M, c.N, c.K, A.data(), lda, B.data(), ldb, C.data(), ldc);
      expect_close(got, C, 1e-5,
                   uvit::cat("gemm_wgrad ", mode_name(bf16), " M=", c.M, " N=", c.N, " K=", c.K,
                             " pad=", c.pad));
    }
}

TEST(CudaGemm, WgradAccumulatesInFp32) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  check_wgrads();
}

// residual: 0 none, 1 separate buffer, 2 residual == y. off: element offset of x, bias and the
// output views (1 makes bf16 pointers 2-byte aligned: the heuristic/fallback paths).
static void check_linear(bool bf16, int M, int N, int K, int pad, bool bias, int residual,
                         int off) {
  std::mt19937 g(M * 3 + N * 5 + K * 7 + residual * 11 + bias + off * 13);
  const int ldx = K + pad, ldw = K, ldy = N + pad;
  const size_t nx = size_t(M) * ldx, nw = size_t(N) * ldw, ny = size_t(M) * ldy;
  auto X = randv(nx, g), W = randv(nw, g), Bv = randv(N, g), Y = randv(ny, g), R = randv(ny, g);
  if (bf16) round_bf16(X), round_bf16(W), round_bf16(Bv), round_bf16(Y), round_bf16(R);
  const size_t e = bf16 ? 2 : 4;
  Dev dX((nx + off) * e), dW(nw * e), dB((N + off) * e), dY((ny + off) * e), dR((ny + off) * e);
  upload(dX, off, X, bf16);
  upload(dW, 0, W, bf16);
  upload(dB, off, Bv, bf16);
  upload(dY, off, residual == 2 ? R : Y, bf16);
  upload(dR, off, R, bf16);
  auto ctx = uvit::cuda::make_gemm_context(0, bf16, false, tune_k);
  const void* res = residual == 0 ? nullptr : residual == 1 ? at(dR, off, bf16) : at(dY, off, bf16);
  ctx->linear(at(dX, off, bf16), ldx, dW.p, ldw, bias ? at(dB, off, bf16) : nullptr, res,
              at(dY, off, bf16), ldy, M, N, K);
  auto got = download(dY, off, ny, bf16);
  auto cpu = uvit::make_cpu_backend();
  std::vector<float> ref = residual == 2 ? R : Y;
  const float* cres = residual == 0 ? nullptr : residual == 1 ? R.data() : ref.data();
  cpu->linear(X.data(), ldx, W.data(), ldw, bias ? Bv.data() : nullptr, cres, ref.data(), ldy, M, N,
              K);
  // Padding columns of y are not part of the result; the CPU leaves them, so must the GPU.
  expect_close(got, ref, bf16 ? 1e-2 : 1e-5,
               uvit::cat("linear ", mode_name(bf16), " M=", M, " N=", N, " K=", K, " pad=", pad,
                         " bias=", bias, " residual=", residual, " off=", off));
}

TEST(CudaGemm, LinearBiasResidualCombinations) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  for (bool bf16 : {false, true})
    for (bool bias : {false, true})
      for (int residual : {0, 1, 2}) {
        check_linear(bf16, 77, 96, 64, 0, bias, residual, 0);
        check_linear(bf16, 33, 45, 19, 5, bias, residual, 0);
        check_linear(bf16, 33, 40, 24, 8, bias, residual, 1);  // misaligned views
      }
  check_linear(true, 16, 8, 0, 0, true, 1, 0);  // K == 0: y = bias + residual
  check_linear(false, 16, 8, 0, 0, true, 0, 0);
}

// UVIT_CUBLASLT_AUTOTUNE: whichever algorithm wins, the results stay within the same bounds, and
// the timing runs (into a scratch output) leave accumulating outputs (beta = 1, residual == y,
// the fp32 weight gradient) as one call leaves them.
TEST(CudaGemm, AutotunedMatchesCpu) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  tune_k = 16;
  for (bool bf16 : {false, true}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        check_gemm(bf16, ta, tb, 130, 72, 200, 8, -1.5f, 0.5f);
        check_gemm(bf16, ta, tb, 256, 384, 128, 0, 1.f, 1.f);
      }
    for (bool bias : {false, true})
      for (int residual : {0, 1, 2}) {
        check_linear(bf16, 258, 384, 128, 0, bias, residual, 0);
        check_linear(bf16, 33, 40, 24, 8, bias, residual, 1);
      }
  }
  check_wgrads();
  tune_k = 0;
}

TEST(CudaGemm, AutotuneRecordsOneChoicePerShape) {
  if (!uvit::cuda_available()) GTEST_SKIP() << "no CUDA GPU";
  const int M = 256, N = 192, K = 64;
  Dev x(size_t(M) * K * 2), w(size_t(N) * K * 2), y(size_t(M) * N * 2);
  ASSERT_EQ(cudaMemset(x.p, 0, x.bytes), cudaSuccess);
  ASSERT_EQ(cudaMemset(w.p, 0, w.bytes), cudaSuccess);
  auto ctx = uvit::cuda::make_gemm_context(0, true, false, 16);
  ASSERT_NE(ctx->autotuner(), nullptr);
  for (int r = 0; r < 3; ++r) ctx->linear(x.p, K, w.p, K, nullptr, nullptr, y.p, N, M, N, K);
  ctx->linear(x.p, K, w.p, K, nullptr, nullptr, y.p, N, M / 2, N, K);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto& keys = ctx->autotuner()->keys();
  ASSERT_EQ(keys.size(), 2u) << ctx->autotuner()->report();
  for (const auto& k : keys) {
    const auto& c = ctx->autotuner()->at(k);
    EXPECT_GE(c.best_ms(), 0.0) << k;
    EXPECT_LT(size_t(c.winner), c.ms.size()) << k;
  }
  std::printf("%s", ctx->autotuner()->report().c_str());
  EXPECT_EQ(uvit::cuda::make_gemm_context(0, true, false, 0)->autotuner(), nullptr);
}

#endif  // UVIT_HAVE_CUDA
