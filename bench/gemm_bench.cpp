// Kernel benchmark: GEMM libraries at the U-ViT-S shapes, plus the backend's attention and GELU.
// Standalone (not part of the default build). Build from the repository root with
//   g++ -O3 -march=native -std=gnu++20 -fopenmp -Iinclude -Isrc bench/gemm_bench.cpp \
//       src/backend/cpu/*.cpp -ldnnl -lopenblas -o gemm_bench
// or with CMake via bench/CMakeLists.txt (see the note there).
// Run: OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 ./gemm_bench   (times are the best of 15 runs, so
// noise from other processes inflates them less).
#include <cblas.h>
#include <oneapi/dnnl/dnnl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "uvit/backend.hpp"

namespace {

// Wall time by default. UVIT_BENCH_CPUTIME=1 measures process CPU time instead: with
// OMP_NUM_THREADS=1 this gives per-core speed that other processes on a shared machine barely
// disturb (they inflate wall time, not the CPU time we get).
bool use_cpu_time() {
  const char* e = std::getenv("UVIT_BENCH_CPUTIME");
  return e && *e == '1';
}

double now_seconds() {
  timespec ts;
  clock_gettime(use_cpu_time() ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

template <class F>
double best_seconds(F&& f, int reps = 15) {
  f();  // warm-up (primitive creation, page faults)
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_seconds();
    f();
    best = std::min(best, now_seconds() - t0);
  }
  return best;
}

std::vector<float> randv(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = u(g);
  return v;
}

}  // namespace

int main() {
  auto be = uvit::make_cpu_backend();
  const int rows = 8 * 257;  // B = 8 sequences of 257 tokens (CIFAR-10 U-ViT-S/2)
  const int nk[][2] = {{1536, 512}, {512, 512}, {2048, 512}, {512, 2048}, {512, 1024}};
  std::vector<float> A = randv(size_t{8} << 20, 1), B = randv(size_t{8} << 20, 2);
  std::vector<float> C(size_t{8} << 20);
  std::printf("GEMM GFLOP/s (best of 15, %s), M = %d token rows\n",
              use_cpu_time() ? "process CPU time" : "wall time", rows);
  std::printf("%-9s %5s %5s %5s  %10s %10s %10s\n", "use", "M", "N", "K", "matmul", "dnnl_sgemm",
              "openblas");
  double tot[3] = {0, 0, 0}, flops_all = 0;
  for (const auto& s : nk) {
    const int n = s[0], k = s[1];
    struct Case {
      const char* use;
      bool ta, tb;
      int M, N, K;
    } cases[] = {{"fwd NT", false, true, rows, n, k},  // y = x W^T
                 {"dX NN", false, false, rows, k, n},  // dx = dy W
                 {"dW TN", true, false, n, k, rows}};  // dW += dy^T x
    for (const auto& c : cases) {
      const int lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
      const float beta = c.ta ? 1.f : 0.f;  // weight gradients accumulate
      const double fl = 2.0 * c.M * c.N * c.K;
      const double t0 = best_seconds([&] {
        be->gemm(c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, beta, C.data(), c.N);
      });
      const double t1 = best_seconds([&] {
        dnnl_sgemm(c.ta ? 'T' : 'N', c.tb ? 'T' : 'N', c.M, c.N, c.K, 1.f, A.data(), lda, B.data(),
                   ldb, beta, C.data(), c.N);
      });
      const double t2 = best_seconds([&] {
        cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans,
                    c.tb ? CblasTrans : CblasNoTrans, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(),
                    ldb, beta, C.data(), c.N);
      });
      tot[0] += t0, tot[1] += t1, tot[2] += t2, flops_all += fl;
      std::printf("%-9s %5d %5d %5d  %10.1f %10.1f %10.1f\n", c.use, c.M, c.N, c.K, fl / t0 * 1e-9,
                  fl / t1 * 1e-9, fl / t2 * 1e-9);
    }
  }
  std::printf("%-27s  %10.1f %10.1f %10.1f\n", "all shapes (total time)", flops_all / tot[0] * 1e-9,
              flops_all / tot[1] * 1e-9, flops_all / tot[2] * 1e-9);

  // Attention at B=8, N=257, H=8, Dh=64.
  {
    const int Bb = 8, N = 257, H = 8, Dh = 64, D = H * Dh;
    std::vector<float> qkv = randv(size_t{1} * Bb * N * 3 * D, 3), out(size_t{1} * Bb * N * D);
    std::vector<float> lse(size_t{1} * Bb * H * N), dout = randv(out.size(), 4), dqkv(qkv.size());
    const float sc = 1.f / std::sqrt(static_cast<float>(Dh));
    const double tf = best_seconds(
        [&] { be->attention_fwd(qkv.data(), out.data(), lse.data(), Bb, N, H, Dh, sc); });
    const double tb = best_seconds([&] {
      be->attention_bwd(dout.data(), qkv.data(), out.data(), lse.data(), dqkv.data(), Bb, N, H, Dh,
                        sc);
    });
    const double fl = 4.0 * Bb * H * N * N * Dh;  // QK^T and PV
    std::printf(
        "attention B=%d N=%d H=%d Dh=%d: fwd %.2f ms (%.1f GFLOP/s), bwd %.2f ms (%.1f "
        "GFLOP/s)\n",
        Bb, N, H, Dh, tf * 1e3, fl / tf * 1e-9, tb * 1e3, 2.5 * fl / tb * 1e-9);
  }
  // GELU over one MLP hidden activation [2056, 2048].
  {
    const size_t n = size_t{1} * rows * 2048;
    std::vector<float> x = randv(n, 5), y(n), g = randv(n, 6);
    const double tf = best_seconds([&] { be->gelu_fwd(x.data(), y.data(), n); });
    const double tb = best_seconds([&] { be->gelu_bwd(g.data(), x.data(), y.data(), n); });
    std::printf("gelu n=%zu: fwd %.2f ms, bwd %.2f ms\n", n, tf * 1e3, tb * 1e3);
  }
  // LayerNorm over [2056, 512].
  {
    const int D = 512;
    std::vector<float> x = randv(size_t{1} * rows * D, 7), y(x.size()), w = randv(D, 8);
    std::vector<float> b = randv(D, 9), mu(rows), rs(rows), dx(x.size()), dw(D), db(D);
    const double tf = best_seconds([&] {
      be->layernorm_fwd(x.data(), w.data(), b.data(), y.data(), mu.data(), rs.data(), rows, D,
                        1e-5f);
    });
    const double tb = best_seconds([&] {
      be->layernorm_bwd(y.data(), x.data(), w.data(), mu.data(), rs.data(), dx.data(), dw.data(),
                        db.data(), rows, D);
    });
    std::printf("layernorm [%d, %d]: fwd %.3f ms, bwd %.3f ms\n", rows, D, tf * 1e3, tb * 1e3);
  }
  return 0;
}
