// One signal handler for a scope: installed for a few signals, the previous dispositions restored
// (handler, flags and mask, SIG_IGN included) when the scope ends. train's checkpoint-and-stop,
// serve's shutdown, eval's interrupt note and io::SignalHold's held rename use it.
#pragma once
#include <signal.h>

#include <initializer_list>

namespace uvit {

// oneDNN 2.6's JIT f32 GEMMs (gemm:jit, AVX2 and AVX-512) point rsp into a heap workspace while
// they run, so a signal handled on a thread inside one has the kernel write its signal frame over
// the heap (oneDNN issue 4845, fixed upstream in 2026): `uvit train` stopped by SIGTERM mid-step
// aborted in a later free() about once in twenty (docs/kernels.md, "Signals and the JIT GEMMs").
// The CLI calls this first thing in main(): it blocks the handled signals (SIGINT, SIGTERM,
// SIGUSR1, SIGHUP) in the calling thread, so in every thread started after it (OpenMP's, oneDNN's,
// the loader's, the server's), and starts one thread that has them unblocked and only waits, so the
// handlers (and the default actions) run there.
void route_signals_to_one_thread();

// std::raise(sig) from a thread where the signal may be blocked (route_signals_to_one_thread):
// delivered here and now as raise() would (the handler, or the default action), then blocked again.
void raise_here(int sig);

class SignalScope {
 public:
  // Keep: a signal the process ignores (a background job's SIGINT, nohup's SIGHUP) stays ignored.
  enum class Ignored { Replace, Keep };

  // `handler` must be async-signal-safe. It runs with SA_RESTART (std::signal's BSD semantics on
  // glibc), its own signal blocked while it runs.
  SignalScope(std::initializer_list<int> signals, void (*handler)(int),
              Ignored ignored = Ignored::Replace);
  ~SignalScope();
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  static constexpr int kMax = 4;
  int n_ = 0;
  int signals_[kMax] = {};
  struct sigaction old_[kMax] = {};
  bool installed_[kMax] = {};
};

}  // namespace uvit
