// SignalScope (core/signals.hpp): sigaction in, the saved sigaction back.
#include "core/signals.hpp"

#include "uvit/error.hpp"

namespace uvit {

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
