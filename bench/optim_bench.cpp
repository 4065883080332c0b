// The optimizer step of the CPU backend on a flat parameter vector: AdamW against Adan (which
// streams six fp32 vectors instead of four; docs/mdt_diffusion.md), wall clock, the two
// alternating, best of --reps runs each (docs/benchmarks.md, "Adan").
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
  std::vector<float> p(n, 0.1f), g(n, 0.01f), m(n), v(n), d(n), gp(n);
  uvit::AdanHyper h;
  h.lr = 3e-4f;
  auto now = [] { return std::chrono::steady_clock::now(); };
  double best_adamw = 1e30, best_adan = 1e30;
  for (long step = 1; step <= reps; ++step) {
    auto t0 = now();
    be->adamw(p.data(), g.data(), m.data(), v.data(), n, 2e-4f, 0.9f, 0.999f, 1e-8f, 0.03f, step);
    auto t1 = now();
    be->adan(p.data(), g.data(), m.data(), d.data(), v.data(), gp.data(), n, h, step);
    auto t2 = now();
    best_adamw = std::min(best_adamw, std::chrono::duration<double>(t1 - t0).count());
    best_adan = std::min(best_adan, std::chrono::duration<double>(t2 - t1).count());
  }
  std::printf("params %zu, threads: the backend's; best of %d\n", n, reps);
  std::printf("adamw %.2f ms (%.1f GB/s for 4 reads + 3 writes)\n", best_adamw * 1e3,
              7.0 * 4 * n / best_adamw / 1e9);
  std::printf("adan  %.2f ms (%.1f GB/s for 6 reads + 5 writes), %.2fx adamw\n", best_adan * 1e3,
              11.0 * 4 * n / best_adan / 1e9, best_adan / best_adamw);
  return 0;
}
