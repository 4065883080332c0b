// The optimizer step of the CPU backend on a flat parameter vector: AdamW against Adan (which
// streams six fp32 vectors instead of four; docs/mdt_diffusion.md), and AdamW then EMA (two
// passes) against the fused adamw_ema (one); wall clock, alternating, best of --reps runs each
// (docs/benchmarks.md, "Adan" and "Zen 5: non-GEMM costs").
//   optim_bench [--params N] [--reps R]      N defaults to DiT-S/2's 32963360
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "uvit/backend.hpp"

int main(int argc, char** argv) {
  size_t n = 32963360;
  int reps = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--params"))
      n = std::strtoull(argv[i + 1], nullptr, 10);
    else if (!std::strcmp(argv[i], "--reps"))
      reps = std::atoi(argv[i + 1]);
  }
  auto be = uvit::make_cpu_backend();
  std::vector<float> p(n, 0.1f), g(n, 0.01f), m(n), v(n), d(n), gp(n), e(n, 0.1f);
  uvit::AdanHyper h;
  h.lr = 3e-4f;
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  double best_adamw = 1e30, best_adan = 1e30, best_ema = 1e30, best_fused = 1e30;
  for (long step = 1; step <= reps; ++step) {
    auto t0 = now();
    be->adamw(p.data(), g.data(), m.data(), v.data(), n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.03f, step);
    auto t1 = now();
    be->ema(e.data(), p.data(), n, 0.9999f);
    auto t2 = now();
    be->adamw_ema(p.data(), g.data(), m.data(), v.data(), e.data(), n, 2e-4f, 0.9f, 0.999f, 1e-8f,
                  0.03f, step, 0.9999f);
    auto t3 = now();
    be->adan(p.data(), g.data(), m.data(), d.data(), v.data(), gp.data(), n, h, step);
    auto t4 = now();
    best_adamw = std::min(best_adamw, secs(t0, t1));
    best_ema = std::min(best_ema, secs(t1, t2));
    best_fused = std::min(best_fused, secs(t2, t3));
    best_adan = std::min(best_adan, secs(t3, t4));
  }
  auto gbs = [&](double streams, double t) { return streams * 4 * double(n) / t / 1e9; };
  std::printf("params %zu, threads: the backend's; best of %d\n", n, reps);
  std::printf("adamw     %.2f ms (%.1f GB/s for 4 reads + 3 writes)\n", best_adamw * 1e3,
              gbs(7, best_adamw));
  std::printf("ema       %.2f ms (%.1f GB/s for 2 reads + 1 write)\n", best_ema * 1e3,
              gbs(3, best_ema));
  std::printf("adamw_ema %.2f ms (%.1f GB/s for 5 reads + 4 writes), %.2fx adamw + ema\n",
              best_fused * 1e3, gbs(9, best_fused), (best_adamw + best_ema) / best_fused);
  std::printf("adan      %.2f ms (%.1f GB/s for 6 reads + 5 writes), %.2fx adamw\n",
              best_adan * 1e3, gbs(11, best_adan), best_adan / best_adamw);
  return 0;
}
