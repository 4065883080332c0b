// The engine's CPU thread count (OpenMP's, process-wide): one rule for the CLI (--threads,
// OMP_NUM_THREADS) and the C API (uvit_ctx_params.n_threads). docs/cli.md "The environment".
#pragma once
#include <string>

namespace uvit {

// Sets OpenMP's thread count to `n` (n <= 0: keeps the count its environment gave it), capped at
// the CPUs this process may run on when it is beyond 4 per CPU, with one warning (uvit::log)
// naming `source` ("--threads 64", "OMP_NUM_THREADS=100000"): libgomp starts every thread asked
// for (OMP_NUM_THREADS=10000 made a 3 s sample take 64 s and 2.5 GB; 100000 crashed it). A few per
// CPU stay as asked (a measurement may want them; tests pass --threads 2 anywhere).
void set_thread_count(int n, const std::string& source);

// The count OMP_NUM_THREADS gave OpenMP, capped as set_thread_count caps it (the warning names
// "OMP_NUM_THREADS=..."); nothing when the variable is unset or empty. For the CLI's start and a
// C API context that keeps the environment's count (n_threads 0): libgomp reads the variable at
// load and takes any count.
void cap_environment_threads();

// Gives the calling thread the count set_thread_count last set, if any: libgomp keeps the count
// per thread for threads it did not start, and a thread started later takes the environment's
// (uncapped), so a C API context made on one thread and used on another, or a server's worker,
// calls this before its work. `OMP_NUM_THREADS=6` with n_threads 2 gave a generation on another
// thread a team of 6.
void adopt_thread_count();

}  // namespace uvit
