// The ranks' check after loading (docs/distributed.md, "Sampling and evaluation"): one hash of a
// big model's weights (src/dist/weights_hash.hpp) against the load of the same weights from a
// .safetensors file in the page cache (docs/benchmarks.md, "Every rank loaded the same weights").
//   weights_hash_bench [CONFIG] [REPS] [DIR]   (default dit_xl_2, 3, /dev/shm: the file's folder)
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "dist/weights_hash.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/network.hpp"

int main(int argc, char** argv) {
  const std::string name = argc > 1 ? argv[1] : "dit_xl_2";
  const int reps = argc > 2 ? std::atoi(argv[2]) : 3;
  const std::string file = std::string(argc > 3 ? argv[3] : "/dev/shm") + "/weights_hash_bench_" +
                           std::to_string(getpid()) + ".safetensors";
  const uvit::Config cfg = uvit::load_config(name);
  auto be = uvit::make_cpu_backend();
  {
    auto net = uvit::make_network(cfg, *be);
    net->init_random(1);
    net->save_weights(file, {});
  }
  auto now = [] { return std::chrono::steady_clock::now(); };
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  auto cpu = [] {  // this process's CPU seconds (all threads): less bound to the machine's load
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
  };
  for (int r = 0; r < reps; ++r) {
    auto net = uvit::make_network(cfg, *be);
    const auto t0 = now();
    const double c0 = cpu();
    net->load_file(file);
    const auto t1 = now();
    const double c1 = cpu();
    const uint64_t h = uvit::hash_network(*net);
    const auto t2 = now();
    const double c2 = cpu();
    std::printf(
        "%s: %zu parameters (%.2f GB): load %.3f s (CPU %.3f s), hash %.3f s (CPU %.3f s) "
        "(%016llx)\n",
        name.c_str(), net->num_params(), net->num_params() * 4e-9, secs(t0, t1), c1 - c0,
        secs(t1, t2), c2 - c1, static_cast<unsigned long long>(h));
  }
  std::remove(file.c_str());
  return 0;
}
