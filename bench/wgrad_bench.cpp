// The CPU backend's weight-gradient product (gemm_wgrad: C[M,N] += A^T B over K rows) at the
// training shapes: a hash of each result's bits and the best time of `--reps` calls, at the
// process's OpenMP thread count. Run it once per count (OMP_NUM_THREADS=t) and compare the hashes:
// each process creates its oneDNN primitives at its own count (docs/kernels.md, "Weight gradients
// in fixed row chunks"; docs/benchmarks.md).
//   wgrad_bench [--bf16] [--cpu] [--reps R] M,N,K[,ldc] ...
// --cpu: the process's CPU time instead of wall time (steadier on a shared machine: other processes
// inflate the wall time, not the CPU time this one gets).
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "uvit/backend.hpp"

namespace {

// Random values exactly representable in bf16 (the low 16 bits zero), so that the fp32 and bf16
// modes read the same numbers; in bf16 mode the buffer holds the upper halves.
std::vector<float> randv(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) {
    x = u(g);
    uint32_t b;
    std::memcpy(&b, &x, 4);
    b &= 0xffff0000u;
    std::memcpy(&x, &b, 4);
  }
  return v;
}

std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> o(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t b;
    std::memcpy(&b, &v[i], 4);
    o[i] = uint16_t(b >> 16);
  }
  return o;
}

double seconds(bool cpu) {
  timespec ts;
  clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

uint64_t fnv(const std::vector<float>& v) {
  uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (size_t i = 0; i < v.size() * 4; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  bool bf16 = false, cpu = false;
  int reps = 5;
  std::vector<std::vector<int>> shapes;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--bf16") {
      bf16 = true;
    } else if (a == "--cpu") {
      cpu = true;
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else {
      std::vector<int> s;
      for (const char* p = a.c_str(); *p;) {
        char* end = nullptr;
        s.push_back(int(std::strtol(p, &end, 10)));
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p) break;
      }
      if (s.size() < 3) {
        std::fprintf(stderr, "wgrad_bench: shape '%s' is not M,N,K[,ldc]\n", a.c_str());
        return 2;
      }
      shapes.push_back(s);
    }
  }
  auto be = uvit::make_backend("cpu", bf16 ? "bf16" : "fp32");
  for (const auto& s : shapes) {
    const int M = s[0], N = s[1], K = s[2], ldc = s.size() > 3 ? s[3] : N;
    const std::vector<float> a = randv(size_t(K) * M, 1), b = randv(size_t(K) * N, 2);
    const std::vector<uint16_t> a16 = to_bf16(a), b16 = to_bf16(b);
    const float* A = bf16 ? reinterpret_cast<const float*>(a16.data()) : a.data();
    const float* B = bf16 ? reinterpret_cast<const float*>(b16.data()) : b.data();
    const std::vector<float> c0 = randv(size_t(M) * ldc, 3);
    std::vector<float> c = c0;
    be->gemm_wgrad(M, N, K, A, M, B, N, c.data(), ldc);
    const uint64_t h = fnv(c);
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      c = c0;
      const double t0 = seconds(cpu);
      be->gemm_wgrad(M, N, K, A, M, B, N, c.data(), ldc);
      best = std::min(best, seconds(cpu) - t0);
    }
    std::printf("%s threads %d M %d N %d K %d ldc %d hash %016llx best_%s_ms %.3f\n",
                bf16 ? "bf16" : "fp32", omp_get_max_threads(), M, N, K, ldc,
                static_cast<unsigned long long>(h), cpu ? "cpu" : "wall", best * 1e3);
  }
}
