// CPU backend kernels against straightforward float64 references written here. Backward kernels
// are checked against analytic double-precision gradients, and those analytic gradients are in
// turn checked by central finite differences of the double reference forward.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "attention_ref.hpp"
#include "backend/optim_scalars.hpp"
#include "models/layers.hpp"
#include "thread_counts.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using uvit::Backend;
using uvit::layers::relative_index;
using uvit_test::at_thread_counts;
using uvit_test::attn_ref;
using uvit_test::AttnRef;
using uvit_test::BiasRef;
using uvit_test::expect_same_bits;
using VecF = std::vector<float>;
using VecD = std::vector<double>;

Backend& be() {
  static auto b = uvit::make_cpu_backend();
  return *b;
}

VecF randv(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  VecF v(n);
  for (auto& x : v) x = u(g);
  return v;
}

VecD to_d(const VecF& v) { return VecD(v.begin(), v.end()); }

// |a - b| <= atol + rtol * |b| elementwise, reporting the first failure.
template <class A, class B>
void expect_close(const A& a, const B& b, double atol, double rtol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    const double x = a[i], y = b[i];
    if (!(std::fabs(x - y) <= atol + rtol * std::fabs(y))) {
      ADD_FAILURE() << what << "[" << i << "]: got " << x << ", expected " << y;
      return;
    }
  }
}

double dot(const VecD& a, const VecD& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central differences of f at a few random coordinates of x compared with grad.
void fd_check(const std::function<double(const VecD&)>& f, VecD x, const VecD& grad, int probes,
              unsigned seed, double h = 1e-6, double tol = 1e-6) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<size_t> pick(0, x.size() - 1);
  for (int k = 0; k < probes; ++k) {
    const size_t i = pick(g);
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    const double num = (fp - fm) / (2 * h);
    EXPECT_NEAR(grad[i], num, tol * (1 + std::fabs(num))) << "coordinate " << i;
  }
}

// ---------------------------------------------------------------- memory, elementwise, selection

TEST(KernelMemory, AlignedAllocAndOutOfMemory) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{100}, size_t{4096}}) {
    void* p = be().alloc_bytes(n);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    be().free_bytes(p);
  }
  try {
    be().alloc_bytes(size_t{1} << 62);
    FAIL() << "expected an out-of-memory error";
  } catch (const uvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("out of memory: could not allocate"), std::string::npos);
  }
  EXPECT_THROW(be().alloc_bytes(std::numeric_limits<size_t>::max()), uvit::Error);
}

TEST(KernelMemory, ElementwiseHelpers) {
  const size_t n = 100003;  // odd and above the parallel threshold
  VecF x = randv(n, 1), y = randv(n, 2), z(n);
  be().upload(z.data(), x.data(), n * sizeof(float));
  EXPECT_EQ(z, x);
  VecF w(n);
  be().download(w.data(), z.data(), n * sizeof(float));
  EXPECT_EQ(w, x);
  VecF y0 = y;
  be().axpy(y.data(), x.data(), 0.5f, n);
  for (size_t i = 0; i < n; i += 997) EXPECT_FLOAT_EQ(y[i], y0[i] + 0.5f * x[i]);
  be().scale(y.data(), -2.f, n);
  for (size_t i = 0; i < n; i += 997) EXPECT_FLOAT_EQ(y[i], -2.f * (y0[i] + 0.5f * x[i]));
  be().fill(z.data(), 3.25f, n);
  for (float v : z) ASSERT_EQ(v, 3.25f);
  be().copy(z.data(), x.data(), n);
  EXPECT_EQ(z, x);
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  EXPECT_NEAR(be().sum_squares(x.data(), n), ss, 1e-9 * ss);
  EXPECT_EQ(be().sum_squares(x.data(), 0), 0.0);
}

TEST(KernelBackend, MakeBackendByName) {
  EXPECT_EQ(uvit::make_backend("cpu")->name(), "cpu");
  if (!uvit::cuda_available()) {
    // Either not compiled in, or compiled but no GPU/driver: a one-line error naming CUDA.
    try {
      uvit::make_backend("cuda");
      FAIL() << "cuda should not be available";
    } catch (const uvit::Error& e) {
      EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
    }
  }
  // bf16 where the CPU has bf16 units, else (with a note on stderr) fp32; test_cpu_bf16.cpp.
  const auto bf = uvit::make_backend("cpu", "bf16");
  EXPECT_EQ(bf->act_bytes(), bf->precision() == "bf16" ? 2u : 4u);
  EXPECT_THROW(uvit::make_backend("cpu", "tf32"), uvit::Error);  // a CUDA precision
  EXPECT_THROW(uvit::make_backend("cpu", "fp16"), uvit::Error);
  // The encoders' precision: tf32 by default on CUDA, fp32 on the CPU, never bf16.
  EXPECT_EQ(uvit::encoder_precision("cuda"), "tf32");
  EXPECT_EQ(uvit::encoder_precision("cpu"), "fp32");
  EXPECT_EQ(uvit::encoder_precision("cuda", "fp32"), "fp32");
  EXPECT_THROW(uvit::encoder_precision("cuda", "bf16"), uvit::Error);
  try {
    uvit::make_backend("tpu");
    FAIL() << "tpu is not a backend";
  } catch (const uvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("'tpu'"), std::string::npos);
  }
}

// ---------------------------------------------------------------- dense

TEST(KernelGemm, AllTransposeCombosWithLeadingDimsAndBeta) {
  const int M = 37, N = 29, K = 45;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb)
      for (float beta : {0.f, 1.f, 0.5f}) {
        // stored shapes: A [M,K] or [K,M]; B [K,N] or [N,K], each with padded rows
        const int ar = ta ? K : M, ac = ta ? M : K, lda = ac + 3;
        const int br = tb ? N : K, bc = tb ? K : N, ldb = bc + 5;
        const int ldc = N + 7;
        VecF A = randv(static_cast<size_t>(ar) * lda, 10 + ta);
        VecF B = randv(static_cast<size_t>(br) * ldb, 20 + tb);
        VecF C = randv(static_cast<size_t>(M) * ldc, 30);
        if (beta == 0.f)  // beta == 0 must ignore C entirely, NaN included
          for (int m = 0; m < M; ++m)
            for (int n = 0; n < N; ++n) C[m * ldc + n] = std::numeric_limits<float>::quiet_NaN();
        VecD ref(C.begin(), C.end());
        const float alpha = 1.3f;
        for (int m = 0; m < M; ++m)
          for (int n = 0; n < N; ++n) {
            double s = 0;
            for (int k = 0; k < K; ++k) {
              const double a = ta ? A[k * lda + m] : A[m * lda + k];
              const double b = tb ? B[n * ldb + k] : B[k * ldb + n];
              s += a * b;
            }
            ref[m * ldc + n] = alpha * s + (beta == 0.f ? 0.0 : beta * ref[m * ldc + n]);
          }
        be().gemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        for (int m = 0; m < M; ++m)  // padding columns untouched
          for (int n = N; n < ldc; ++n)
            ASSERT_EQ(C[m * ldc + n], static_cast<float>(ref[m * ldc + n]));
        expect_close(C, ref, 1e-5, 1e-5, ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"));
      }
}

TEST(KernelGemm, RepeatedShapesAndZeroK) {
  // The primitive cache must not confuse calls that differ only in alpha/beta.
  const int M = 64, N = 48, K = 32;
  VecF A = randv(M * K, 1), B = randv(K * N, 2);
  for (float alpha : {1.f, 2.f}) {
    VecF C(M * N, 1.f);
    be().gemm(false, false, M, N, K, alpha, A.data(), K, B.data(), N, 1.f, C.data(), N);
    double s = 0;
    for (int k = 0; k < K; ++k) s += static_cast<double>(A[5 * K + k]) * B[k * N + 7];
    EXPECT_NEAR(C[5 * N + 7], 1.0 + alpha * s, 1e-5);
  }
  VecF C(6, 2.f);
  be().gemm(false, false, 2, 3, 0, 1.f, A.data(), 1, B.data(), 3, 0.5f, C.data(), 3);
  for (float v : C) EXPECT_EQ(v, 1.f);
}

TEST(KernelGemm, BiasAddAndGrad) {
  const int M = 300, N = 130;
  VecF y = randv(M * N, 1), b = randv(N, 2), y0 = y;
  be().add_bias(y.data(), b.data(), M, N);
  for (int m = 0; m < M; m += 17)
    for (int n = 0; n < N; ++n) ASSERT_EQ(y[m * N + n], y0[m * N + n] + b[n]);
  VecF db = randv(N, 3), db0 = db;
  be().bias_grad(y0.data(), db.data(), M, N);
  VecD ref(N);
  for (int n = 0; n < N; ++n) {
    ref[n] = db0[n];
    for (int m = 0; m < M; ++m) ref[n] += y0[m * N + n];
  }
  expect_close(db, ref, 1e-5, 1e-6, "db");
}

// The fp32 linear adds its bias inside the matmul when there is no residual (docs/kernels.md, "Bias
// in the fp32 matmul"): the same one fp32 sum as the product then add_bias, to the bit; with a
// residual accumulated in place, the product + residual first, then the bias.
TEST(KernelGemm, Fp32LinearBiasIsTheProductThenTheBiasToTheBit) {
  for (const auto& [M, N, K] : {std::array<int, 3>{300, 130, 70}, {2064, 512, 256}}) {
    const VecF x = randv(size_t(M) * K, 4), w = randv(size_t(N) * K, 5), b = randv(N, 6);
    const VecF r = randv(size_t(M) * N, 7);
    for (const bool residual : {false, true}) {
      VecF y = residual ? r : VecF(size_t(M) * N), want = y;
      be().linear(x.data(), K, w.data(), K, b.data(), residual ? y.data() : nullptr, y.data(), N, M,
                  N, K);
      be().gemm(false, true, M, N, K, 1.f, x.data(), K, w.data(), K, residual ? 1.f : 0.f,
                want.data(), N);
      be().add_bias(want.data(), b.data(), M, N);
      ASSERT_EQ(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)), 0)
          << M << " x " << N << " x " << K << (residual ? " with a residual" : "");
    }
  }
}

// ---------------------------------------------------------------- layernorm

struct LnRef {
  VecD y, dx, dw, db;
};

LnRef ln_ref(const VecD& x, const VecD& w, const VecD& b, const VecD& g, int M, int D, double eps) {
  LnRef r{VecD(M * D), VecD(M * D), VecD(D), VecD(D)};
  for (int m = 0; m < M; ++m) {
    const double* xr = &x[m * D];
    double mu = 0, var = 0;
    for (int d = 0; d < D; ++d) mu += xr[d];
    mu /= D;
    for (int d = 0; d < D; ++d) var += (xr[d] - mu) * (xr[d] - mu);
    var /= D;
    const double rs = 1 / std::sqrt(var + eps);
    double sg = 0, sgx = 0;
    for (int d = 0; d < D; ++d) {
      const double xh = (xr[d] - mu) * rs;
      r.y[m * D + d] = xh * w[d] + b[d];
      r.dw[d] += g[m * D + d] * xh;
      r.db[d] += g[m * D + d];
      sg += g[m * D + d] * w[d];
      sgx += g[m * D + d] * w[d] * xh;
    }
    for (int d = 0; d < D; ++d) {
      const double xh = (xr[d] - mu) * rs;
      r.dx[m * D + d] = rs * (g[m * D + d] * w[d] - sg / D - xh * sgx / D);
    }
  }
  return r;
}

TEST(KernelLayerNorm, ForwardBackwardAgainstFloat64) {
  for (int D : {7, 64, 512}) {
    const int M = D == 512 ? 80 : 13;
    VecF x = randv(M * D, 1, -2.f, 3.f), w = randv(D, 2, 0.5f, 1.5f), b = randv(D, 3);
    for (int m = 0; m < M; ++m)  // a large common offset tests the two-pass variance
      for (int d = 0; d < D; ++d) x[m * D + d] += 40.f;
    VecF g = randv(M * D, 4);
    const LnRef ref = ln_ref(to_d(x), to_d(w), to_d(b), to_d(g), M, D, 1e-5);
    VecF y(M * D), mean(M), rstd(M);
    be().layernorm_fwd(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), M, D,
                       1e-5f);
    expect_close(y, ref.y, 2e-5, 1e-5, "ln y");
    VecF y2(M * D);  // inference form without saved statistics
    be().layernorm_fwd(x.data(), w.data(), b.data(), y2.data(), nullptr, nullptr, M, D, 1e-5f);
    EXPECT_EQ(y2, y);

    VecF dx = randv(M * D, 5), dw = randv(D, 6), db = randv(D, 7);
    VecD edx(dx.begin(), dx.end()), edw(dw.begin(), dw.end()), edb(db.begin(), db.end());
    for (int i = 0; i < M * D; ++i) edx[i] += ref.dx[i];
    for (int d = 0; d < D; ++d) edw[d] += ref.dw[d], edb[d] += ref.db[d];
    be().layernorm_bwd(g.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(), dw.data(),
                       db.data(), M, D);
    expect_close(dx, edx, 5e-5, 1e-4, "ln dx");
    expect_close(dw, edw, 5e-5, 1e-5, "ln dw");
    expect_close(db, edb, 5e-5, 1e-5, "ln db");

    // the analytic reference itself, by finite differences of sum(y * g)
    const VecD xd = to_d(x), wd = to_d(w), bd = to_d(b), gd = to_d(g);
    fd_check([&](const VecD& xx) { return dot(ln_ref(xx, wd, bd, gd, M, D, 1e-5).y, gd); }, xd,
             ref.dx, 4, 8);
    fd_check([&](const VecD& ww) { return dot(ln_ref(xd, ww, bd, gd, M, D, 1e-5).y, gd); }, wd,
             ref.dw, 4, 9);
  }
}

// dw, db (and dx) do not depend on the thread count: fixed row blocks, not one partial per thread
// (docs/cli.md, "Reproducibility"; with per-thread partials 1 and 3 threads differed in the last
// bits). 700 rows of 64: parallel (M * D >= 16384) and three blocks of rows.
TEST(KernelLayerNorm, BackwardSameBitsAtAnyThreadCount) {
  const int M = 700, D = 64;
  const VecF x = randv(M * D, 21, -2.f, 3.f), w = randv(D, 22, 0.5f, 1.5f), b = randv(D, 23);
  const VecF g = randv(M * D, 24);
  VecF y(M * D), mean(M), rstd(M);
  be().layernorm_fwd(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), M, D, 1e-5f);
  expect_same_bits(at_thread_counts({1, 2, 3, 7}, [&] {
    VecF dx(M * D, 0.f), dw(D, 0.25f), db(D, -0.5f);
    be().layernorm_bwd(g.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(), dw.data(),
                       db.data(), M, D);
    dx.insert(dx.end(), dw.begin(), dw.end());
    dx.insert(dx.end(), db.begin(), db.end());
    return dx;
  }));
}

// GELU and the other elementwise maps give the same bits at any thread count: with one span of
// elements per thread, an element at a span's end ran the vector loop's remainder, whose rounding
// differs, so 5 and 7 threads differed from 1 (docs/cli.md, "Reproducibility"). 408 x 512
// elements: fmnist_uvit_tiny's MLP at batch 8, which split at no multiple of 16 at 5 threads.
TEST(KernelActivations, SameBitsAtAnyThreadCount) {
  const size_t n = 408 * 512;
  const VecF x = randv(n, 41, -4.f, 4.f), g = randv(n, 42);
  expect_same_bits(at_thread_counts({1, 2, 3, 5, 7}, [&] {
    VecF y(n), dx(n), s(n), ds(n);
    be().gelu_fwd(x.data(), y.data(), n);
    be().gelu_bwd(g.data(), x.data(), dx.data(), n);
    be().silu_fwd(x.data(), s.data(), n);
    be().silu_bwd(g.data(), x.data(), ds.data(), n);
    for (const VecF* v : {&dx, &s, &ds}) y.insert(y.end(), v->begin(), v->end());
    return y;
  }));
}

// The gradient's sum of squares (the logged grad_norm, and the clip factor of the presets that
// clip) gives the same bits at any thread count: one partial per thread changed its last bits from
// 2 threads on. Sizes below and above one block, and one not a multiple of 16.
TEST(KernelSumSquares, SameBitsAtAnyThreadCount) {
  for (const size_t n : {size_t(1000), size_t(1) << 15, size_t(1234567)}) {
    const VecF x = randv(n, 43);
    const std::vector<double> out =
        at_thread_counts({1, 2, 3, 5, 7}, [&] { return be().sum_squares(x.data(), n); });
    expect_same_bits(out, "n " + std::to_string(n) + ", ");
    long double exact = 0;  // and it is the sum: to 1e-12 of a sum in long double
    for (const float v : x) exact += static_cast<long double>(v) * v;
    const double ref = static_cast<double>(exact);
    for (const double s : out) EXPECT_NEAR(s, ref, 1e-12 * ref) << "n " << n;
  }
}

// RMSNorm's weight gradient over fixed blocks of rows, as LayerNorm's: one partial per thread made
// 7 threads differ from 1 (fmnist_lightningdit_tiny's training).
TEST(KernelRmsNorm, BackwardSameBitsAtAnyThreadCount) {
  const int M = 700, G = 2, D = 32, ld = G * D;
  const VecF x = randv(size_t(M) * ld, 43, -2.f, 3.f), w = randv(D, 44, 0.5f, 1.5f);
  const VecF g = randv(size_t(M) * ld, 45);
  VecF y(x.size()), rstd(size_t(M) * G);
  be().rmsnorm_fwd(x.data(), w.data(), y.data(), rstd.data(), M, G, D, ld, 1e-6f);
  expect_same_bits(at_thread_counts({1, 2, 3, 7}, [&] {
    VecF dx(x.size(), 0.f), dw(D, 0.25f);
    be().rmsnorm_bwd(g.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), M, G, D, ld,
                     false);
    dx.insert(dx.end(), dw.begin(), dw.end());
    return dx;
  }));
}

// ---------------------------------------------------------------- activations

double gelu_d(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double dgelu_d(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-x * x / 2) / std::sqrt(2 * M_PI);
}
double silu_d(double x) { return x / (1 + std::exp(-x)); }
double dsilu_d(double x) {
  const double s = 1 / (1 + std::exp(-x));
  return s * (1 + x * (1 - s));
}

VecF activation_inputs() {
  VecF x;
  for (int i = -10000; i <= 10000; ++i) x.push_back(i * 8e-4f);  // dense grid over [-8, 8]
  for (float v : randv(50000, 11, -6.f, 6.f)) x.push_back(v);
  for (float v : {0.f, -0.f, 1.f, -1.f, 3.93f, -3.93f, 20.f, -20.f, 100.f, -100.f}) x.push_back(v);
  return x;
}

void check_activation(void (Backend::*fwd)(const float*, float*, size_t),
                      void (Backend::*bwd)(const float*, const float*, float*, size_t),
                      double (*f)(double), double (*df)(double), const char* name) {
  const VecF x = activation_inputs();
  const size_t n = x.size();
  VecF y(n), g = randv(n, 12), dx(n);
  (be().*fwd)(x.data(), y.data(), n);
  VecD ey(n), edx(n);
  for (size_t i = 0; i < n; ++i) ey[i] = f(x[i]), edx[i] = g[i] * df(x[i]);
  // fp32 with an erf/exp approximation: a few ulp of 1 times |x|, plus relative error
  for (size_t i = 0; i < n; ++i) {
    const double a = std::fabs(x[i]);
    if (!(std::fabs(y[i] - ey[i]) <= 4e-7 * std::max(1.0, a) + 2e-6 * std::fabs(ey[i]))) {
      ADD_FAILURE() << name << " fwd at x=" << x[i] << ": " << y[i] << " vs " << ey[i];
      break;
    }
  }
  (be().*bwd)(g.data(), x.data(), dx.data(), n);
  for (size_t i = 0; i < n; ++i)
    if (!(std::fabs(dx[i] - edx[i]) <=
          1e-6 * std::max(1.0, std::fabs(static_cast<double>(x[i]))) + 2e-6 * std::fabs(edx[i]))) {
      ADD_FAILURE() << name << " bwd at x=" << x[i] << ": " << dx[i] << " vs " << edx[i];
      break;
    }
  VecF alias = g;  // dx may alias dy
  (be().*bwd)(alias.data(), x.data(), alias.data(), n);
  EXPECT_EQ(alias, dx) << name;
  // the double derivative formula against finite differences
  for (double v : {-3.1, -0.7, 0.0, 0.4, 2.2, 5.0})
    EXPECT_NEAR(df(v), (f(v + 1e-6) - f(v - 1e-6)) / 2e-6, 1e-8) << name << " at " << v;
}

TEST(KernelActivation, GeluExactErf) {
  check_activation(&Backend::gelu_fwd, &Backend::gelu_bwd, gelu_d, dgelu_d, "gelu");
  // hand values: GELU(1) = 0.5 (1 + erf(1/sqrt 2)) = 0.8413447...
  VecF x{1.f, -1.f, 0.f}, y(3);
  be().gelu_fwd(x.data(), y.data(), 3);
  EXPECT_NEAR(y[0], 0.841344746, 2e-7);
  EXPECT_NEAR(y[1], -0.158655254, 2e-7);
  EXPECT_EQ(y[2], 0.f);
}

TEST(KernelActivation, Silu) {
  check_activation(&Backend::silu_fwd, &Backend::silu_bwd, silu_d, dsilu_d, "silu");
}

double tanh_d(double v) { return std::tanh(v); }
double dtanh_d(double v) { return 1.0 - std::tanh(v) * std::tanh(v); }
TEST(KernelActivation, Tanh) {
  check_activation(&Backend::tanh_fwd, &Backend::tanh_bwd, tanh_d, dtanh_d, "tanh");
}

// ---------------------------------------------------------------- attention

struct AttnCase {
  int B, N, H, Dh;
};

TEST(KernelAttention, ForwardBackwardAgainstFloat64) {
  const AttnCase cases[] = {{2, 1, 1, 16},   {2, 5, 2, 16},   {2, 64, 1, 32}, {2, 65, 3, 32},
                            {2, 130, 4, 64}, {2, 257, 2, 64}, {2, 97, 2, 72}, {1, 200, 1, 72}};
  for (const auto& c : cases) {
    const int D = c.H * c.Dh;
    const double scale = 1 / std::sqrt(static_cast<double>(c.Dh));
    // scores of a few units so the softmax is far from uniform
    VecF qkv = randv(static_cast<size_t>(c.B) * c.N * 3 * D, 100 + c.N, -1.5f, 1.5f);
    VecF dout = randv(static_cast<size_t>(c.B) * c.N * D, 200 + c.N);
    const AttnRef ref = attn_ref(to_d(qkv), to_d(dout), c.B, c.N, c.H, c.Dh, scale);
    VecF out(dout.size(), NAN), lse(static_cast<size_t>(c.B) * c.H * c.N, NAN);
    be().attention_fwd(qkv.data(), out.data(), lse.data(), c.B, c.N, c.H, c.Dh,
                       static_cast<float>(scale));
    SCOPED_TRACE(testing::Message()
                 << "B=" << c.B << " N=" << c.N << " H=" << c.H << " Dh=" << c.Dh);
    expect_close(out, ref.out, 2e-6, 2e-5, "attn out");
    expect_close(lse, ref.lse, 2e-6, 2e-6, "attn lse");
    VecF out2(dout.size());
    be().attention_fwd(qkv.data(), out2.data(), nullptr, c.B, c.N, c.H, c.Dh,
                       static_cast<float>(scale));
    EXPECT_EQ(out2, out);
    VecF dqkv(qkv.size(), NAN);  // overwritten, never read
    be().attention_bwd(dout.data(), qkv.data(), out.data(), lse.data(), dqkv.data(), c.B, c.N, c.H,
                       c.Dh, static_cast<float>(scale));
    expect_close(dqkv, ref.dqkv, 2e-5, 1e-4, "attn dqkv");
  }
  // the analytic double backward against finite differences of sum(out * g)
  const int B = 2, N = 6, H = 2, Dh = 4;
  const VecD qkv = to_d(randv(B * N * 3 * H * Dh, 7, -1.5f, 1.5f)),
             g = to_d(randv(B * N * H * Dh, 8));
  const AttnRef ref = attn_ref(qkv, g, B, N, H, Dh, 0.5);
  fd_check([&](const VecD& x) { return dot(attn_ref(x, {}, B, N, H, Dh, 0.5).out, g); }, qkv,
           ref.dqkv, 24, 9);
}

// One key scores 100 above every other: the softmax subtracts the row maximum before exp, so the
// output must be that key's value row and lse its score. A maximum that missed the key (a wrong
// lane, the loop's tail) would overflow exp into inf and NaN. Positions in the first 16-lane step,
// a later one and the scalar tail (N = 37 = 2 x 16 + 5), in fp32 and bf16 acts.
TEST(KernelAttention, RowMaximumFindsTheKeyAnywhere) {
  const int N = 37, Dh = 4, D = Dh;
  std::vector<std::string> precs = {"fp32"};
  if (uvit::cpu_has_bf16()) precs.push_back("bf16");
  for (const std::string& prec : precs) {
    auto b = uvit::make_backend("cpu", prec);
    for (int spike : {3, 21, 35}) {
      SCOPED_TRACE(prec + " key " + std::to_string(spike));
      VecF qkv(size_t(N) * 3 * D, 0.f);
      for (int i = 0; i < N; ++i) {
        qkv[size_t(i) * 3 * D] = 1.f;                                      // q = (1, 0, 0, 0)
        qkv[size_t(i) * 3 * D + D] = i == spike ? 120.f : 0.5f * (i % 5);  // k . q
        for (int d = 0; d < Dh; ++d) qkv[size_t(i) * 3 * D + 2 * D + d] = float(i + d);  // v
      }
      const size_t n = qkv.size(), no = size_t(N) * D;
      uvit::DeviceBuffer x(*b, n * 4), o(*b, no * 4), l(*b, size_t(N) * 4);
      b->to_act(qkv.data(), x.f32(), n);
      b->attention_fwd(x.f32(), o.f32(), l.f32(), 1, N, 1, Dh, 1.f);
      VecF out(no), lse(static_cast<size_t>(N));
      b->from_act(o.f32(), out.data(), no);
      b->download(lse.data(), l.f32(), lse.size() * 4);
      for (int i = 0; i < N; ++i) {
        ASSERT_FLOAT_EQ(lse[size_t(i)], 120.f) << i;
        for (int d = 0; d < Dh; ++d) ASSERT_EQ(out[size_t(i) * D + d], float(spike + d)) << i;
      }
    }
  }
}

// ---------------------------------------------------------------- attention with a bias

// MDT's relative position bias (Backend::attention_bias_fwd/bwd) against attn_ref with BiasRef:
// the full grid (the eval pass) and gathered token subsets (a masked pass's kept tokens).

struct BiasCase {
  int B, H, Dh, g, keep;  // keep 0: the full grid, else `keep` shuffled positions per sample
  int N() const { return keep ? keep : g * g; }
  int R() const { return (2 * g - 1) * (2 * g - 1) + 3; }
  BiasRef bias(unsigned seed) const {
    BiasRef r;
    r.table = to_d(randv(size_t(R()) * H, seed, -2.f, 2.f));
    r.index = relative_index(g);
    r.Lf = g * g;
    std::mt19937 rng(seed);
    for (int b = 0; keep && b < B; ++b) {
      std::vector<int32_t> perm(size_t(r.Lf));
      for (int i = 0; i < r.Lf; ++i) perm[size_t(i)] = i;
      std::shuffle(perm.begin(), perm.end(), rng);
      r.ids.insert(r.ids.end(), perm.begin(), perm.begin() + keep);
    }
    return r;
  }
};

TEST(KernelAttentionBias, IndexFormulaCorners) {
  // The models' BEiT index (models/layers.hpp), the one the kernels read. 2 x 2 grid: tokens (0,0)
  // (0,1) (1,0) (1,1); 3 x 3 offsets, row offset major.
  EXPECT_EQ(relative_index(2),
            (std::vector<int32_t>{4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4}));
}

TEST(KernelAttentionBias, ForwardBackwardAgainstFloat64) {
  // N below and above the kernel's 128-query tile.
  const BiasCase cases[] = {{2, 2, 8, 3, 0}, {2, 3, 16, 4, 0},    {1, 2, 32, 12, 0},
                            {2, 2, 8, 4, 9}, {3, 2, 16, 12, 100}, {2, 1, 8, 3, 1}};
  for (const BiasCase& c : cases) {
    const int N = c.N(), D = c.H * c.Dh;
    SCOPED_TRACE(testing::Message() << "B=" << c.B << " N=" << N << " H=" << c.H << " Dh=" << c.Dh
                                    << " g=" << c.g << " keep=" << c.keep);
    const double scale = 1 / std::sqrt(double(c.Dh));
    const BiasRef br = c.bias(20 + N);
    const VecF qkv = randv(size_t(c.B) * N * 3 * D, 10 + N, -1.5f, 1.5f);
    const VecF dout = randv(size_t(c.B) * N * D, 30 + N);
    const AttnRef ref = attn_ref(to_d(qkv), to_d(dout), c.B, N, c.H, c.Dh, scale, &br);
    const VecF table(br.table.begin(), br.table.end());
    Backend::AttnBias bias;
    bias.table = table.data();
    bias.index = br.index.data();
    bias.ids = br.ids.empty() ? nullptr : br.ids.data();
    bias.R = c.R();
    bias.Lf = br.Lf;
    VecF out(dout.size(), NAN), lse(size_t(c.B) * c.H * N, NAN);
    be().attention_bias_fwd(qkv.data(), bias, out.data(), lse.data(), c.B, N, c.H, c.Dh,
                            float(scale));
    expect_close(out, ref.out, 2e-6, 2e-5, "out");
    expect_close(lse, ref.lse, 2e-6, 2e-6, "lse");
    VecF dqkv(qkv.size(), NAN), dtable(table.size(), 0.5f);  // dtable is accumulated into
    be().attention_bias_bwd(dout.data(), qkv.data(), out.data(), lse.data(), bias, dqkv.data(),
                            dtable.data(), c.B, N, c.H, c.Dh, float(scale));
    expect_close(dqkv, ref.dqkv, 2e-5, 1e-4, "dqkv");
    VecD want = ref.dtable;
    for (auto& w : want) w += 0.5;
    expect_close(dtable, want, 2e-5, 1e-4, "dtable");
  }
}

TEST(KernelAttentionBias, ZeroTableIsPlainAttention) {
  const int B = 2, H = 2, Dh = 16, g = 5, N = g * g, R = (2 * g - 1) * (2 * g - 1) + 3;
  const VecF qkv = randv(size_t(B) * N * 3 * H * Dh, 41, -1.5f, 1.5f), table(size_t(R) * H, 0.f);
  const std::vector<int32_t> index = relative_index(g);
  Backend::AttnBias bias;
  bias.table = table.data();
  bias.index = index.data();
  bias.R = R;
  bias.Lf = N;
  VecF a(size_t(B) * N * H * Dh), b(a.size()), la(size_t(B) * H * N), lb(la.size());
  be().attention_fwd(qkv.data(), a.data(), la.data(), B, N, H, Dh, 0.25f);
  be().attention_bias_fwd(qkv.data(), bias, b.data(), lb.data(), B, N, H, Dh, 0.25f);
  EXPECT_EQ(a, b);
  EXPECT_EQ(la, lb);
}

TEST(KernelAttentionBias, ReferenceGradientsMatchFiniteDifferences) {
  // The analytic double backward (dqkv, and the table gradient as a scatter of dS) against
  // central differences of sum(out * g); the 3 unused table rows get exactly 0.
  for (int keep : {0, 5}) {
    const BiasCase c{2, 2, 3, 3, keep};
    const int N = c.N(), D = c.H * c.Dh;
    const BiasRef br = c.bias(51 + keep);
    const VecD qkv = to_d(randv(size_t(c.B) * N * 3 * D, 50, -1.5f, 1.5f));
    const VecD g = to_d(randv(size_t(c.B) * N * D, 52));
    const AttnRef ref = attn_ref(qkv, g, c.B, N, c.H, c.Dh, 0.5, &br);
    fd_check(
        [&](const VecD& x) { return dot(attn_ref(x, {}, c.B, N, c.H, c.Dh, 0.5, &br).out, g); },
        qkv, ref.dqkv, 24, 53);
    fd_check(
        [&](const VecD& t) {
          BiasRef b2 = br;
          b2.table = t;
          return dot(attn_ref(qkv, {}, c.B, N, c.H, c.Dh, 0.5, &b2).out, g);
        },
        br.table, ref.dtable, 24, 54);
    for (size_t i = size_t(c.R() - 3) * c.H; i < br.table.size(); ++i)
      EXPECT_EQ(ref.dtable[i], 0.0);
  }
}

// ---------------------------------------------------------------- tokens

// Square (U-ViT, DiT) and non-square (FiTv2's grids: H 4, W 8 -> 2 x 4 patches, row-major) images.
TEST(KernelTokens, Im2colMappingAndAdjoint) {
  for (const int W : {8, 16}) {
    const int B = 2, C = 3, H = 8, p = 2, gw = W / p, L = (H / p) * gw, P = C * p * p;
    SCOPED_TRACE(W);
    VecF x = randv(B * C * H * W, 1), cols(B * L * P);
    be().patch_im2col(x.data(), cols.data(), B, C, H, p, W == H ? 0 : W);
    // hand-checked entry: b=1, patch (i=2, j=3), c=2, u=1, v=0 -> pixel [1, 2, 5, 6]
    EXPECT_EQ(cols[(1 * L + 2 * gw + 3) * P + (2 * p + 1) * p + 0],
              x[((1 * C + 2) * H + 5) * W + 6]);
    for (int b = 0; b < B; ++b)
      for (int c = 0; c < C; ++c)
        for (int yy = 0; yy < H; ++yy)
          for (int xx = 0; xx < W; ++xx)
            ASSERT_EQ(cols[(b * L + (yy / p) * gw + xx / p) * P + (c * p + yy % p) * p + xx % p],
                      x[((b * C + c) * H + yy) * W + xx]);
    VecF cc = randv(cols.size(), 2), back(x.size(), NAN);
    be().patch_col2im(cc.data(), back.data(), B, C, H, p, W);
    EXPECT_NEAR(dot(to_d(cols), to_d(cc)), dot(to_d(x), to_d(back)), 1e-9);
    VecF round(x.size());
    be().patch_col2im(cols.data(), round.data(), B, C, H, p, W);
    EXPECT_EQ(round, x);
  }
}

// The strided 3x3 im2col (patch_embed conv_stack) against a direct convolution written from the
// definition, and col2im as its exact adjoint; odd sizes exercise the padding at both edges.
TEST(KernelTokens, Conv3x3Im2colStrideAndAdjoint) {
  for (int stride : {1, 2}) {
    const int B = 2, C = 3, H = 7, W = 6, Co = 4, Ho = (H - 1) / stride + 1,
              Wo = (W - 1) / stride + 1, K = 9 * C;
    const VecF x = randv(B * H * W * C, 31), w = randv(Co * K, 32);  // x [B, H, W, C]
    VecF cols(size_t(B) * Ho * Wo * K, NAN);
    be().conv3x3_im2col(x.data(), cols.data(), B, C, H, W, stride);
    for (int b = 0; b < B; ++b)
      for (int i = 0; i < Ho; ++i)
        for (int j = 0; j < Wo; ++j)
          for (int o = 0; o < Co; ++o) {
            double direct = 0, gemm = 0;
            for (int c = 0; c < C; ++c)
              for (int ky = 0; ky < 3; ++ky)
                for (int kx = 0; kx < 3; ++kx) {
                  const int r = i * stride + ky - 1, q = j * stride + kx - 1;
                  const float wv = w[o * K + c * 9 + ky * 3 + kx];
                  if (r >= 0 && r < H && q >= 0 && q < W)
                    direct += double(wv) * x[((b * H + r) * W + q) * C + c];
                  gemm += double(wv) * cols[((b * Ho + i) * Wo + j) * K + c * 9 + ky * 3 + kx];
                }
            ASSERT_NEAR(gemm, direct, 1e-9) << "stride " << stride;
          }
    const VecF dc = randv(cols.size(), 33);
    VecF dx(x.size(), NAN);
    be().conv3x3_col2im(dc.data(), dx.data(), B, C, H, W, stride);
    // <im2col(x), c> = <x, col2im(c)>, up to dx's fp32 sums of up to 9 terms.
    EXPECT_NEAR(dot(to_d(cols), to_d(dc)), dot(to_d(x), to_d(dx)), 1e-5) << "stride " << stride;
  }
}

TEST(KernelTokens, SequenceForwardBackward) {
  const int B = 3, E = 2, L = 5, D = 7, T = E + L;
  VecF ex = randv(B * E * D, 1), pa = randv(B * L * D, 2), pos = randv(T * D, 3), seq(B * T * D);
  be().tokens_fwd(ex.data(), pa.data(), pos.data(), seq.data(), B, E, L, D);
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < T; ++t)
      for (int d = 0; d < D; ++d) {
        const float src = t < E ? ex[(b * E + t) * D + d] : pa[(b * L + t - E) * D + d];
        ASSERT_EQ(seq[(b * T + t) * D + d], src + pos[t * D + d]);
      }
  VecF ds = randv(seq.size(), 4), dex(ex.size(), NAN), dpa(pa.size(), NAN), dpos = randv(T * D, 5);
  const VecF dpos0 = dpos;
  be().tokens_bwd(ds.data(), dex.data(), dpa.data(), dpos.data(), B, E, L, D);
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) {
      double s = dpos0[t * D + d];
      for (int b = 0; b < B; ++b) {
        const float v = ds[(b * T + t) * D + d];
        s += v;
        ASSERT_EQ(t < E ? dex[(b * E + t) * D + d] : dpa[(b * L + t - E) * D + d], v);
      }
      EXPECT_NEAR(dpos[t * D + d], s, 1e-6);
    }
  VecF dpa2(pa.size()), dpos2(T * D, 0.f);  // extras gradient not wanted
  be().tokens_bwd(ds.data(), nullptr, dpa2.data(), dpos2.data(), B, E, L, D);
  EXPECT_EQ(dpa2, dpa);
}

TEST(KernelTokens, TimestepEmbeddingHandValues) {
  VecF t{0.f, 1.f}, out(2 * 6, -7.f);
  be().timestep_embedding(t.data(), out.data(), 2, 4, 6);  // ldo 6: columns 4, 5 untouched
  const float e0[] = {1.f, 1.f, 0.f, 0.f, -7.f, -7.f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[i], e0[i]) << i;
  // D = 4: half = 2, freqs = [1, exp(-ln(1e4)/2) = 1e-2]
  const double e1[] = {std::cos(1.0), std::cos(1e-2), std::sin(1.0), std::sin(1e-2)};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[6 + i], e1[i], 2e-7) << i;
  EXPECT_EQ(out[10], -7.f);

  // general case against double, with a fractional t and an odd D (zero last column)
  const int D = 129, half = 64;
  VecF tt{999.f * 0.37f, 12.5f}, o(2 * D, NAN);
  be().timestep_embedding(tt.data(), o.data(), 2, D, D);
  for (int b = 0; b < 2; ++b) {
    for (int i = 0; i < half; ++i) {
      const double a = static_cast<double>(tt[b]) * std::exp(-std::log(10000.0) * i / half);
      // fp32 args at t ~ 370 carry ~2e-5 absolute rounding, as in PyTorch
      EXPECT_NEAR(o[b * D + i], std::cos(a), 1e-4) << i;
      EXPECT_NEAR(o[b * D + half + i], std::sin(a), 1e-4) << i;
    }
    EXPECT_EQ(o[b * D + D - 1], 0.f);
  }
}

TEST(KernelTokens, EmbeddingRepeatedIndices) {
  const int rows = 5, D = 6, B = 4, ldo = 8;
  VecF table = randv(rows * D, 1), out(B * ldo, -1.f);
  std::vector<int32_t> idx{3, 0, 3, 4};
  be().embedding_fwd(table.data(), idx.data(), out.data(), B, D, ldo);
  for (int b = 0; b < B; ++b) {
    for (int d = 0; d < D; ++d) ASSERT_EQ(out[b * ldo + d], table[idx[b] * D + d]);
    EXPECT_EQ(out[b * ldo + D], -1.f);
  }
  VecF dout = randv(B * ldo, 2), dt(rows * D, 0.5f);
  be().embedding_bwd(dout.data(), idx.data(), dt.data(), B, D, ldo);
  for (int d = 0; d < D; ++d) {
    EXPECT_FLOAT_EQ(dt[3 * D + d], 0.5f + dout[0 * ldo + d] + dout[2 * ldo + d]);
    EXPECT_FLOAT_EQ(dt[0 * D + d], 0.5f + dout[1 * ldo + d]);
    EXPECT_FLOAT_EQ(dt[4 * D + d], 0.5f + dout[3 * ldo + d]);
    EXPECT_EQ(dt[1 * D + d], 0.5f);
    EXPECT_EQ(dt[2 * D + d], 0.5f);
  }
}

TEST(KernelTokens, UnpatchifyMappingAndAdjoint) {
  const int B = 2, E = 2, C = 3, S = 6, p = 2, g = S / p, T = E + g * g, F = p * p * C;
  VecF tok = randv(B * T * F, 1), img(B * C * S * S, NAN);
  be().unpatchify_fwd(tok.data(), img.data(), B, E, C, S, p);
  // hand-checked: b=1, token (i=1, j=2), u=1, v=0, c=2 -> feature (1*2+0)*3+2 = 8, pixel [2, 3, 4]
  EXPECT_EQ(img[((1 * C + 2) * S + 3) * S + 4], tok[(1 * T + E + 1 * g + 2) * F + 8]);
  // and the first pixel of channel 1 of b=0 comes from token E, feature c=1
  EXPECT_EQ(img[(0 * C + 1) * S * S], tok[E * F + 1]);
  VecF dimg = randv(img.size(), 2), dtok(tok.size(), NAN);
  be().unpatchify_bwd(dimg.data(), dtok.data(), B, E, C, S, p);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < E * F; ++i) ASSERT_EQ(dtok[b * T * F + i], 0.f);
  EXPECT_NEAR(dot(to_d(img), to_d(dimg)), dot(to_d(tok), to_d(dtok)), 1e-9);
}

// ---------------------------------------------------------------- conv3x3

struct ConvRef {
  VecD y, dx, dw, db;
};

ConvRef conv_ref(const VecD& x, const VecD& w, const VecD& b, const VecD& g, int B, int Ci, int Co,
                 int H, int W) {
  ConvRef r{VecD(B * Co * H * W), VecD(x.size()), VecD(w.size()), VecD(Co)};
  for (int n = 0; n < B; ++n)
    for (int o = 0; o < Co; ++o)
      for (int yy = 0; yy < H; ++yy)
        for (int xx = 0; xx < W; ++xx) {
          const size_t yi = ((n * Co + o) * H + yy) * W + xx;
          double s = b[o];
          for (int i = 0; i < Ci; ++i)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 3; ++kx) {
                const int sy = yy + ky - 1, sx = xx + kx - 1;
                if (sy < 0 || sy >= H || sx < 0 || sx >= W) continue;
                const size_t xi = ((n * Ci + i) * H + sy) * W + sx,
                             wi = ((o * Ci + i) * 3 + ky) * 3 + kx;
                s += w[wi] * x[xi];
                if (!g.empty()) {
                  r.dx[xi] += w[wi] * g[yi];
                  r.dw[wi] += x[xi] * g[yi];
                }
              }
          r.y[yi] = s;
          if (!g.empty()) r.db[o] += g[yi];
        }
  return r;
}

TEST(KernelConv, Conv3x3ForwardBackward) {
  for (auto [B, Ci, Co, H, W] :
       {std::array{2, 3, 3, 8, 8}, std::array{1, 4, 2, 5, 7}, std::array{2, 1, 1, 1, 3}}) {
    VecF x = randv(B * Ci * H * W, 1), w = randv(Co * Ci * 9, 2), b = randv(Co, 3);
    VecF g = randv(B * Co * H * W, 4), y(g.size(), NAN);
    const ConvRef ref = conv_ref(to_d(x), to_d(w), to_d(b), to_d(g), B, Ci, Co, H, W);
    be().conv3x3_fwd(x.data(), w.data(), b.data(), y.data(), B, Ci, Co, H, W);
    expect_close(y, ref.y, 1e-5, 1e-5, "conv y");
    VecF dx(x.size(), NAN), dw = randv(w.size(), 5), db = randv(Co, 6);
    VecD edw(dw.begin(), dw.end()), edb(db.begin(), db.end());
    for (size_t i = 0; i < edw.size(); ++i) edw[i] += ref.dw[i];
    for (int o = 0; o < Co; ++o) edb[o] += ref.db[o];
    be().conv3x3_bwd(g.data(), x.data(), w.data(), dx.data(), dw.data(), db.data(), B, Ci, Co, H,
                     W);
    expect_close(dx, ref.dx, 1e-5, 1e-5, "conv dx");
    expect_close(dw, edw, 1e-5, 1e-5, "conv dw");
    expect_close(db, edb, 1e-5, 1e-5, "conv db");
    VecF dw2(w.size(), 0.f), db2(Co, 0.f);
    be().conv3x3_bwd(g.data(), x.data(), w.data(), nullptr, dw2.data(), db2.data(), B, Ci, Co, H,
                     W);
    expect_close(dw2, ref.dw, 1e-5, 1e-5, "conv dw (no dx)");
    // the scattered reference gradients against finite differences of sum(y * g)
    const VecD xd = to_d(x), wd = to_d(w), bd = to_d(b), gd = to_d(g);
    // (explicit copies: clang 14, the sanitizer build's compiler, cannot capture structured
    // bindings)
    const auto conv_y = [&, B = B, Ci = Ci, Co = Co, H = H, W = W](const VecD& x_, const VecD& w_) {
      return conv_ref(x_, w_, bd, {}, B, Ci, Co, H, W).y;
    };
    fd_check([&](const VecD& v) { return dot(conv_y(v, wd), gd); }, xd, ref.dx, 5, 7);
    fd_check([&](const VecD& v) { return dot(conv_y(xd, v), gd); }, wd, ref.dw, 5, 8);
  }
}

// ---------------------------------------------------------------- optimisation

TEST(KernelOptim, AdamWTwoStepTrajectory) {
  // Values from torch.optim.AdamW(lr=0.1, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01) (fp32).
  // Step 1 by hand for p=1, g=0.5: p = 0.999; m = 0.05, v = 2.5e-4; bc1 = 0.1, bc2 = 1e-3;
  // p -= (0.1 / 0.1) * 0.05 / (sqrt(2.5e-4) / sqrt(1e-3) + 1e-8) = 0.1 -> 0.899.
  VecF p{1.f, -2.f, 0.5f}, m(3, 0.f), v(3, 0.f);
  const VecF g1{0.5f, -1.f, 0.f}, g2{-0.25f, 2.f, 1e-3f};
  be().adamw(p.data(), g1.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
  const double p1[] = {0.899000049, -1.898, 0.499500006}, m1[] = {0.05, -0.1, 0},
               v1[] = {2.5e-4, 1e-3, 0};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(p[i], p1[i], 1e-6) << i;
    EXPECT_NEAR(m[i], m1[i], 1e-8) << i;
    EXPECT_NEAR(v[i], v1[i], 1e-9) << i;
  }
  be().adamw(p.data(), g2.data(), m.data(), v.data(), 3, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 2);
  const double p2[] = {0.871467352, -1.93271244, 0.424587905};
  const double m2[] = {0.0199999977, 0.110000007, 0.000100000005};
  const double v2[] = {0.00031225002, 0.00499900011, 1.00000019e-09};
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(p[i], p2[i], 1e-6) << i;
    EXPECT_NEAR(m[i], m2[i], 1e-8) << i;
    EXPECT_NEAR(v[i], v2[i], 1e-7 * v2[i] + 1e-15) << i;
  }
}

TEST(KernelOptim, AdamWLargeMatchesScalarFormula) {
  const size_t n = 70001;  // above the parallel threshold
  VecF p = randv(n, 1), g = randv(n, 2), m = randv(n, 3, -0.1f, 0.1f), v = randv(n, 4, 0.f, 0.01f);
  const VecF p0 = p, m0 = m, v0 = v;
  be().adamw(p.data(), g.data(), m.data(), v.data(), n, 2e-4f, 0.9f, 0.99f, 1e-8f, 0.03f, 7);
  const double bc1 = 1 - std::pow(0.9, 7), bc2 = 1 - std::pow(0.99, 7);
  for (size_t i = 0; i < n; i += 101) {
    const double mi = 0.9 * m0[i] + 0.1 * g[i], vi = 0.99 * v0[i] + 0.01 * g[i] * g[i];
    const double pi = p0[i] * (1 - 2e-4 * 0.03) - 2e-4 / bc1 * mi / (std::sqrt(vi / bc2) + 1e-8);
    ASSERT_NEAR(p[i], pi, 1e-6) << i;
    ASSERT_NEAR(m[i], mi, 1e-7) << i;
  }
}

TEST(KernelOptim, Ema) {
  const size_t n = 50000;
  VecF e = randv(n, 1), p = randv(n, 2);
  const VecF e0 = e;
  be().ema(e.data(), p.data(), n, 0.9999f);
  for (size_t i = 0; i < n; i += 7) ASSERT_NEAR(e[i], 0.9999 * e0[i] + 1e-4 * p[i], 1e-7);
  VecF one{2.f}, target{4.f};
  be().ema(one.data(), target.data(), 1, 0.5f);
  EXPECT_EQ(one[0], 3.f);
}

// The rounding of each step, bit for bit, as the scalar loops had it before they were vectorised
// (docs/kernels.md, "Optimizer"): the moments in one FMA each, AdamW's decayed p rounded before
// the step is added (volatile: this file's own contraction must not fuse it), Adan's decayed p
// fused into its first step without the proximal form. A vectorised loop that contracted
// differently fails here; the tolerance tests above do not see it.
TEST(KernelOptim, UpdatesRoundAsTheScalarLoops) {
  const size_t n = 70001;
  const VecF g = randv(n, 21), g0 = randv(n, 22), p0 = randv(n, 23);
  const VecF m0 = randv(n, 24, -0.1f, 0.1f), v0 = randv(n, 25, 0.f, 0.01f);
  VecF p = p0, m = m0, v = v0, e = p0;
  be().adamw(p.data(), g.data(), m.data(), v.data(), n, 2e-4f, 0.99f, 0.99f, 1e-8f, 0.03f, 5);
  be().ema(e.data(), p.data(), n, 0.9999f);
  const uvit::AdamScalars s = uvit::adam_scalars(2e-4f, 0.99f, 0.99f, 1e-8f, 0.03f, 5);
  const float keep = uvit::ema_keep(0.9999f);
  for (size_t i = 0; i < n; ++i) {
    const float mi = std::fma(m0[i], s.beta1, g[i] * s.one_m_b1);
    const float vi = std::fma(v0[i], s.beta2, s.one_m_b2 * g[i] * g[i]);
    volatile float pi = p0[i] * s.decay;
    const float step = s.neg_step * mi / (std::sqrt(vi) / s.bc2_sqrt + s.eps);
    const float pn = pi + step;
    ASSERT_EQ(m[i], mi) << i;
    ASSERT_EQ(v[i], vi) << i;
    ASSERT_EQ(p[i], pn) << i;
    ASSERT_EQ(e[i], std::fma(p0[i], 0.9999f, keep * pn)) << i;
  }
  for (int no_prox : {0, 1}) {
    uvit::AdanHyper h;
    h.lr = 1e-3f, h.weight_decay = 0.02f, h.no_prox = no_prox;
    VecF q = p0, am = m0, ad = m0, an = v0, gp = g0;
    be().adan(q.data(), g.data(), am.data(), ad.data(), an.data(), gp.data(), n, h, 3);
    const uvit::AdanScalars a = uvit::adan_scalars(h, 3);
    for (size_t i = 0; i < n; ++i) {
      const float u = g[i] - g0[i];
      const float mi = std::fma(m0[i], a.beta1, g[i] * a.one_m_b1);
      const float di = std::fma(m0[i], a.beta2, u * a.one_m_b2);
      const float w = std::fma(u, a.beta2, g[i]);
      const float ni = std::fma(v0[i], a.beta3, a.one_m_b3 * w * w);
      const float den = std::sqrt(ni) / a.bc3_sqrt + a.eps;
      const float s1 = a.neg_step * mi / den, s2 = a.neg_step_diff * di / den;
      volatile float pi = no_prox ? std::fma(p0[i], a.decay, s1) : p0[i] + s1;
      const float pn = pi + s2;
      ASSERT_EQ(am[i], mi) << i;
      ASSERT_EQ(an[i], ni) << i;
      ASSERT_EQ(q[i], no_prox ? pn : pn / a.div) << no_prox << " " << i;
    }
  }
}

TEST(KernelOptim, AdamWEmaIsAdamWThenEmaBitForBit) {
  // The fused pass against the two kernels it replaces, over two steps (the second reads the
  // moments the first wrote), at a parallel size and an odd tail.
  for (size_t n : {size_t(70001), size_t(37)}) {
    VecF p = randv(n, 5), e = randv(n, 6), m = randv(n, 7, -0.1f, 0.1f),
         v = randv(n, 8, 0.f, 0.01f);
    VecF p2 = p, e2 = e, m2 = m, v2 = v;
    for (long step = 3; step <= 4; ++step) {
      const VecF g = randv(n, unsigned(9 + step));
      be().adamw(p.data(), g.data(), m.data(), v.data(), n, 2e-4f, 0.99f, 0.99f, 1e-8f, 0.03f,
                 step);
      be().ema(e.data(), p.data(), n, 0.9999f);
      be().adamw_ema(p2.data(), g.data(), m2.data(), v2.data(), e2.data(), n, 2e-4f, 0.99f, 0.99f,
                     1e-8f, 0.03f, step, 0.9999f);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(p2[i], p[i]) << n << " " << i;
        ASSERT_EQ(m2[i], m[i]) << n << " " << i;
        ASSERT_EQ(v2[i], v[i]) << n << " " << i;
        ASSERT_EQ(e2[i], e[i]) << n << " " << i;
      }
    }
  }
}

// ---------------------------------------------------------------- LightningDiT: RMSNorm, SwiGLU,
// RoPE

// Float64 RMSNorm over groups (docs/lightningdit.md): y = x rstd w; the gradients of sum(y * g).
struct RmsRef {
  VecD y, dx, dw;
};
RmsRef rms_ref(const VecD& x, const VecD& w, const VecD& g, int M, int G, int D, int ld,
               double eps) {
  RmsRef r{VecD(x.size(), 0.0), VecD(x.size(), 0.0), VecD(D, 0.0)};
  for (int m = 0; m < M; ++m)
    for (int q = 0; q < G; ++q) {
      const size_t o = size_t(m) * ld + size_t(q) * D;
      double s = 0, sgx = 0;
      for (int d = 0; d < D; ++d) s += x[o + d] * x[o + d];
      const double rs = 1 / std::sqrt(s / D + eps);
      for (int d = 0; d < D; ++d) {
        r.y[o + d] = x[o + d] * rs * w[d];
        r.dw[d] += g[o + d] * x[o + d] * rs;
        sgx += g[o + d] * w[d] * x[o + d] * rs;
      }
      for (int d = 0; d < D; ++d) r.dx[o + d] = rs * (g[o + d] * w[d] - x[o + d] * rs * sgx / D);
    }
  return r;
}

TEST(KernelRmsNorm, GroupsForwardBackwardAgainstFloat64) {
  struct Shape {
    int M, G, D, ld;
  };
  // a plain norm (G 1), per-head groups inside wider rows (the q part of a qkv row), and a size
  // above the parallel threshold
  for (Shape s : {Shape{7, 1, 24, 24}, Shape{5, 3, 8, 3 * 3 * 8}, Shape{300, 4, 32, 3 * 128}}) {
    const size_t n = size_t(s.M) * s.ld;
    VecF x = randv(n, 1, -2.f, 3.f), w = randv(s.D, 2, 0.5f, 1.5f), g = randv(n, 3);
    const RmsRef ref = rms_ref(to_d(x), to_d(w), to_d(g), s.M, s.G, s.D, s.ld, 1e-6);
    VecF y = randv(n, 4), rstd(size_t(s.M) * s.G);
    const VecF y0 = y;
    be().rmsnorm_fwd(x.data(), w.data(), y.data(), rstd.data(), s.M, s.G, s.D, s.ld, 1e-6f);
    VecD ey(y0.begin(), y0.end());  // features outside the groups are left as they were
    for (int m = 0; m < s.M; ++m)
      for (int k = 0; k < s.G * s.D; ++k) ey[size_t(m) * s.ld + k] = ref.y[size_t(m) * s.ld + k];
    expect_close(y, ey, 1e-6, 1e-5, "rms y");

    // accumulate: dx += , dw +=
    VecF dx = randv(n, 5), dw = randv(s.D, 6);
    VecD edx = to_d(dx), edw = to_d(dw);
    for (int m = 0; m < s.M; ++m)
      for (int k = 0; k < s.G * s.D; ++k) edx[size_t(m) * s.ld + k] += ref.dx[size_t(m) * s.ld + k];
    for (int d = 0; d < s.D; ++d) edw[d] += ref.dw[d];
    be().rmsnorm_bwd(g.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(), s.M, s.G, s.D,
                     s.ld, true);
    expect_close(dx, edx, 2e-5, 1e-4, "rms dx +=");
    expect_close(dw, edw, 2e-5, 1e-4, "rms dw");
    // overwrite, in place on dy
    VecF gi = g, dw2(s.D, 0.f);
    be().rmsnorm_bwd(gi.data(), x.data(), w.data(), rstd.data(), gi.data(), dw2.data(), s.M, s.G,
                     s.D, s.ld, false);
    VecD egi = to_d(g);
    for (int m = 0; m < s.M; ++m)
      for (int k = 0; k < s.G * s.D; ++k) egi[size_t(m) * s.ld + k] = ref.dx[size_t(m) * s.ld + k];
    expect_close(gi, egi, 2e-5, 1e-4, "rms dx in place");

    // the reference's gradients by finite differences of sum(y * g)
    const VecD xd = to_d(x), wd = to_d(w), gd = to_d(g);
    auto loss = [&](const VecD& xx, const VecD& ww) {
      return dot(rms_ref(xx, ww, gd, s.M, s.G, s.D, s.ld, 1e-6).y, gd);
    };
    VecD fdx = ref.dx;
    fd_check([&](const VecD& xx) { return loss(xx, wd); }, xd, fdx, 4, 7);
    fd_check([&](const VecD& ww) { return loss(xd, ww); }, wd, ref.dw, 4, 8);
  }
}

TEST(KernelSwiGlu, HandValuesAndFiniteDifferences) {
  // silu(a) b for a row [a0 a1 | b0 b1]
  VecF x12 = {1.f, -2.f, 3.f, 0.5f}, y(2);
  be().swiglu_fwd(x12.data(), y.data(), 1, 2);
  EXPECT_NEAR(y[0], 1.0 / (1 + std::exp(-1.0)) * 3.0, 1e-6);
  EXPECT_NEAR(y[1], -2.0 / (1 + std::exp(2.0)) * 0.5, 1e-6);

  for (int M : {3, 200}) {
    const int H = 37;
    const VecF x = randv(size_t(M) * 2 * H, 9, -4.f, 4.f), g = randv(size_t(M) * H, 10);
    VecF out(size_t(M) * H);
    be().swiglu_fwd(x.data(), out.data(), M, H);
    auto f = [&](const VecD& xx) {
      double s = 0;
      for (int m = 0; m < M; ++m)
        for (int j = 0; j < H; ++j) {
          const double a = xx[size_t(m) * 2 * H + j], b = xx[size_t(m) * 2 * H + H + j];
          s += a / (1 + std::exp(-a)) * b * g[size_t(m) * H + j];
        }
      return s;
    };
    EXPECT_NEAR(f(to_d(x)), dot(to_d(out), to_d(g)), 1e-4 * M);
    VecF dx(x.size());
    be().swiglu_bwd(g.data(), H, x.data(), dx.data(), M, H);
    fd_check(f, to_d(x), to_d(dx), 6, 11, 1e-6, 1e-5);
    // dy in the first half of dx12's rows (ldy = 2H), expanded in place
    VecF inplace(x.size(), 0.f);
    for (int m = 0; m < M; ++m)
      for (int j = 0; j < H; ++j) inplace[size_t(m) * 2 * H + j] = g[size_t(m) * H + j];
    be().swiglu_bwd(inplace.data(), 2 * H, x.data(), inplace.data(), M, H);
    EXPECT_EQ(inplace, dx);
  }
}

TEST(KernelRope, HandValuesInverseAndAdjoint) {
  // One token, two groups of Dh 4 in a row of 10 (2 features not rotated): pair (a, b) ->
  // (a c0 - b s0, b c1 + a s1).
  VecF cos = {0.5f, 0.25f, 1.f, 0.f}, sin = {0.75f, -0.5f, 0.f, 1.f};
  VecF x = {1.f, 2.f, 3.f, 4.f, 5.f, 6.f, 7.f, 8.f, 9.f, 10.f};
  be().rope(x.data(), cos.data(), sin.data(), 1, 1, 2, 4, 10, false);
  const VecF want = {1 * 0.5f - 2 * 0.75f,
                     2 * 0.25f + 1 * -0.5f,
                     3.f,
                     3.f,
                     5 * 0.5f - 6 * 0.75f,
                     6 * 0.25f + 5 * -0.5f,
                     7.f,
                     7.f,
                     9.f,
                     10.f};
  for (size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(x[i], want[i]) << i;

  // arbitrary tables: <rope(x), g> = <x, rope^T(g)> (the backward is the transpose)
  const int B = 3, N = 5, G = 4, Dh = 8, ld = G * Dh + 3;
  const VecF c = randv(size_t(N) * Dh, 12), s = randv(size_t(N) * Dh, 13);
  const VecF x0 = randv(size_t(B) * N * ld, 14), g0 = randv(size_t(B) * N * ld, 15);
  VecF fx = x0, tg = g0;
  be().rope(fx.data(), c.data(), s.data(), B, N, G, Dh, ld, false);
  be().rope(tg.data(), c.data(), s.data(), B, N, G, Dh, ld, true);
  EXPECT_NEAR(dot(to_d(fx), to_d(g0)), dot(to_d(x0), to_d(tg)), 1e-4);
  // true rotations (EVA-02 tables: equal angles per pair): the inverse undoes the forward
  VecF rc(size_t(N) * Dh), rs(size_t(N) * Dh);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < Dh; k += 2) {
      const double a = 0.3 * n + 0.7 * k;
      rc[n * Dh + k] = rc[n * Dh + k + 1] = float(std::cos(a));
      rs[n * Dh + k] = rs[n * Dh + k + 1] = float(std::sin(a));
    }
  VecF r = x0;
  be().rope(r.data(), rc.data(), rs.data(), B, N, G, Dh, ld, false);
  be().rope(r.data(), rc.data(), rs.data(), B, N, G, Dh, ld, true);
  expect_close(r, x0, 1e-6, 1e-6, "rope inverse");
}

TEST(KernelRope, NeoXSectionsHandValuesAndAdjoint) {
  // sec 4 (LaVin-DiT's rotate_half inside sections): features (0, 2) and (1, 3) pair in the first
  // section, (4, 6) and (5, 7) in the second; a' = a c[ia] - b s[ia], b' = b c[ib] + a s[ib].
  VecF c(8), s(8), x(8);
  for (int i = 0; i < 8; ++i) c[i] = 0.1f * (i + 1), s[i] = -0.05f * (i + 2), x[i] = float(i + 1);
  VecF y = x;
  be().rope(y.data(), c.data(), s.data(), 1, 1, 1, 8, 8, false, 4);
  for (int sec0 : {0, 4})
    for (int i = 0; i < 2; ++i) {
      const int ia = sec0 + i, ib = ia + 2;
      EXPECT_FLOAT_EQ(y[ia], x[ia] * c[ia] - x[ib] * s[ia]) << ia;
      EXPECT_FLOAT_EQ(y[ib], x[ib] * c[ib] + x[ia] * s[ib]) << ib;
    }
  const int B = 2, N = 3, G = 2, Dh = 12, ld = G * Dh + 1;
  const VecF tc = randv(size_t(N) * Dh, 22), ts = randv(size_t(N) * Dh, 23);
  const VecF x0 = randv(size_t(B) * N * ld, 24), g0 = randv(size_t(B) * N * ld, 25);
  VecF fx = x0, tg = g0;
  be().rope(fx.data(), tc.data(), ts.data(), B, N, G, Dh, ld, false, 4);
  be().rope(tg.data(), tc.data(), ts.data(), B, N, G, Dh, ld, true, 4);
  EXPECT_NEAR(dot(to_d(fx), to_d(g0)), dot(to_d(x0), to_d(tg)), 1e-4);
}

TEST(KernelAdaLN, ModulateWithoutShift) {
  // wo_shift: y = x (1 + scale), no shift gradient written
  const int B = 2, N = 3, D = 5, ldm = 4 * D;
  const VecF x = randv(size_t(B) * N * D, 16), mod = randv(size_t(B) * ldm, 17),
             g = randv(size_t(B) * N * D, 18);
  VecF y(x.size());
  be().modulate_fwd(x.data(), nullptr, mod.data(), ldm, y.data(), B, N, D);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < N * D; ++i)
      EXPECT_FLOAT_EQ(y[b * N * D + i], x[b * N * D + i] * (1 + mod[b * ldm + i % D]));
  VecF dx(x.size()), dsc(size_t(B) * ldm, 0.f);
  be().modulate_bwd(g.data(), x.data(), mod.data(), ldm, dx.data(), nullptr, dsc.data(), B, N, D);
  for (int b = 0; b < B; ++b)
    for (int d = 0; d < D; ++d) {
      double s = 0;
      for (int n = 0; n < N; ++n) s += double(g[(b * N + n) * D + d]) * x[(b * N + n) * D + d];
      EXPECT_NEAR(dsc[b * ldm + d], s, 1e-5);
    }
}

}  // namespace
