// What train.zero=2's released gradient pages cost per step (docs/benchmarks.md, "ZeRO-2"): 784 MB
// of private anonymous memory released with MADV_DONTNEED, then touched as backward does (read
// before write: the GEMMs accumulate), with 4 KB pages or transparent huge pages (MADV_HUGEPAGE,
// as src/train/grad_pages.cpp asks), against a resident buffer filled with zeros (the plain
// zero_grad) and touched the same way. Standalone:
//   g++ -O2 bench/page_faults.cpp -o /tmp/page_faults && /tmp/page_faults
#include <sys/mman.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {
double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
long faults() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
}
void touch(float* p, size_t n) {  // a read, then writes, of every float
  for (size_t i = 0; i < n; ++i) p[i] += 1.f;
}
}  // namespace

int main() {
  const size_t n = size_t(196) << 20, bytes = n * 4, huge = size_t(2) << 20;
  for (int thp = 0; thp < 2; ++thp) {
    char* m = static_cast<char*>(
        mmap(nullptr, bytes + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    float* p = reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(m) + huge - 1) / huge * huge);
    if (thp) madvise(p, bytes, MADV_HUGEPAGE);
    for (int it = 0; it < 4; ++it) {
      madvise(p, bytes, MADV_DONTNEED);
      const long f0 = faults();
      const double t0 = now();
      touch(p, n);
      std::printf("%s pages, released then touched: %.3f s, %ld minor faults\n",
                  thp ? "huge" : "4 KB", now() - t0, faults() - f0);
    }
    const double t0 = now();
    std::memset(p, 0, bytes);
    touch(p, n);
    std::printf("resident, filled then touched: %.3f s\n", now() - t0);
    munmap(m, bytes + huge);
  }
}
