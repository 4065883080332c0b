// Time to open an npy_folder dataset (docs/benchmarks.md, "npy_folder open"): the file walk and the
// per-file shape checks, then one pass loading every item, each best of --reps (wall seconds).
//   npy_folder_bench DIR CHANNELS CANVAS PATCH [--reps N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "uvit/data.hpp"

namespace {
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: npy_folder_bench DIR CHANNELS CANVAS PATCH [--reps N]\n");
    return 2;
  }
  const std::string dir = argv[1];
  const int C = std::atoi(argv[2]), S = std::atoi(argv[3]), p = std::atoi(argv[4]);
  const int reps = argc >= 7 && std::string(argv[5]) == "--reps" ? std::atoi(argv[6]) : 5;
  double open_best = 1e30, load_best = 1e30;
  int64_t n = 0;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    auto ds = uvit::make_npy_folder_dataset(dir, C, S, S, p, 0);
    const double t1 = now_s();
    n = ds->size();
    std::vector<float> x(size_t(C) * S * S);
    const uvit::DrawRng rng{};
    for (int64_t i = 0; i < n; ++i) ds->get(i, x.data(), nullptr, rng);
    const double t2 = now_s();
    open_best = std::min(open_best, t1 - t0);
    load_best = std::min(load_best, t2 - t1);
  }
  std::printf("%lld files: open %.3f s, load every item %.3f s (best of %d)\n",
              static_cast<long long>(n), open_best, load_best, reps);
  return 0;
}
