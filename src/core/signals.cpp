// SignalScope (core/signals.hpp): sigaction in, the saved sigaction back. The CLI's signal thread.
#include "core/signals.hpp"

#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <system_error>
#include <thread>

#include "uvit/error.hpp"

namespace uvit {

namespace {

sigset_t routed_signals() {
  sigset_t s;
  sigemptyset(&s);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1, SIGHUP}) sigaddset(&s, sig);
  return s;
}

}  // namespace

void route_signals_to_one_thread() {
  const sigset_t s = routed_signals();
  if (pthread_sigmask(SIG_BLOCK, &s, nullptr) != 0) return;
  try {
    std::thread([s] {
      pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
      for (;;) ::pause();  // the handlers run here, between pauses
    }).detach();
  } catch (const std::system_error&) {  // no thread: signals go to the threads as before
    pthread_sigmask(SIG_UNBLOCK, &s, nullptr);
  }
}

void raise_here(int sig) {
  sigset_t one, old;
  sigemptyset(&one);
  sigaddset(&one, sig);
  pthread_sigmask(SIG_UNBLOCK, &one, &old);
  std::raise(sig);  // a signal unblocked for its own thread is delivered before raise() returns
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

SignalScope::SignalScope(std::initializer_list<int> signals, void (*handler)(int),
                         Ignored ignored) {
  UVIT_CHECK(signals.size() <= size_t(kMax), "SignalScope: at most ", kMax, " signals");
  struct sigaction sa {};
  sa.sa_handler = handler;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : signals) {
    const int i = n_++;
    signals_[i] = sig;
    sigaction(sig, nullptr, &old_[i]);
    if (ignored == Ignored::Keep && old_[i].sa_handler == SIG_IGN) continue;
    installed_[i] = sigaction(sig, &sa, nullptr) == 0;
  }
}

SignalScope::~SignalScope() {
  for (int i = n_ - 1; i >= 0; --i)
    if (installed_[i]) sigaction(signals_[i], &old_[i], nullptr);
}

}  // namespace uvit
