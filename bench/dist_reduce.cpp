// The gradient exchange alone (docs/distributed.md): uvit's ordered reduction (shards exchanged
// in pieces, ordered sum, all-gather; in place) against MPI_Allreduce on the same buffer. Usage:
//   mpirun -np W build/tests/uvit_dist_bench [FLOATS (default 44260000: U-ViT-S/2's 177 MB)] [REPS]
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "uvit/dist.hpp"

int main(int argc, char** argv) {
  uvit::Comm& c = uvit::world();
  const size_t P = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 44260000;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  const size_t W = size_t(c.size()), n = (P + W * 16 - 1) / (W * 16) * (W * 16), sh = n / W;
  std::vector<float> g(n, 1e-3f * float(c.rank() + 1)), full(n);
  auto time = [&](auto&& f) {
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      c.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      f();
      c.barrier();
      best = std::min(best,
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  };
  const double ordered = time([&] {
    c.reduce_scatter_ordered(g.data(), 1, n, n, sh, g.data() + size_t(c.rank()) * sh);  // in place
    c.allgather_shards(g.data(), n, sh);
  });
  const double allreduce = time(
      [&] { MPI_Allreduce(g.data(), full.data(), int(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
  if (c.rank() == 0) {
    const double bus = 2.0 * double(W - 1) / double(W) * double(n) * 4;
    std::printf(
        "W %zu, %.1f MB: ordered %.1f ms (%.2f GB/s bus), MPI_Allreduce %.1f ms (%.2f GB/s)\n", W,
        n * 4 / 1e6, ordered * 1e3, bus / ordered / 1e9, allreduce * 1e3, bus / allreduce / 1e9);
  }
  return 0;
}
