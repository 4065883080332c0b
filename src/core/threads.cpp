#include "uvit/threads.hpp"

#include <omp.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>

#include "uvit/error.hpp"
#include "uvit/log.hpp"

namespace uvit {

namespace {
// The count set_thread_count gave (0: none): libgomp keeps it per thread for threads it did not
// start (a thread started later takes the environment's), so adopt_thread_count repeats it.
std::atomic<int> g_count{0};
}  // namespace

void set_thread_count(int n, const std::string& source) {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = ::sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
  const int want = n > 0 ? n : omp_get_max_threads();
  if (cpus > 0 && want > 4 * cpus) {
    log(LogLevel::Warn, cat(source, " asks for ", want, " threads, more than 4 for each of the ",
                            cpus, " CPUs this process may run on; using ", cpus));
    omp_set_num_threads(cpus);
    g_count = cpus;
  } else if (n > 0) {
    omp_set_num_threads(n);
    g_count = n;
  }
}

void adopt_thread_count() {
  if (const int n = g_count; n > 0 && omp_get_max_threads() != n) omp_set_num_threads(n);
}

void cap_environment_threads() {
  if (const char* e = std::getenv("OMP_NUM_THREADS"); e && *e)
    set_thread_count(0, "OMP_NUM_THREADS=" + std::string(e));
}

}  // namespace uvit
