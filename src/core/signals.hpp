// One signal handler for a scope: installed for a few signals, the previous dispositions restored
// (handler, flags and mask, SIG_IGN included) when the scope ends. train's checkpoint-and-stop,
// serve's shutdown, eval's interrupt note and io::SignalHold's held rename use it.
#pragma once
#include <signal.h>

#include <initializer_list>

namespace uvit {

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
