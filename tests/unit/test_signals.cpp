// SignalScope (src/core/signals.hpp): its handler runs while it lives, and the scope's end puts
// back what was there before: another handler, SIG_DFL or SIG_IGN (kept, or replaced and restored).
#include <gtest/gtest.h>
#include <signal.h>

#include "core/signals.hpp"

namespace uvit {
namespace {

volatile sig_atomic_t g_seen = 0;
volatile sig_atomic_t g_outer_seen = 0;
extern "C" void note_signal(int sig) { g_seen = sig; }
extern "C" void outer_handler(int sig) { g_outer_seen = sig; }

void (*disposition(int sig))(int) {
  struct sigaction sa {};
  sigaction(sig, nullptr, &sa);
  return sa.sa_handler;
}

// Sets a disposition for one test and puts the process's own back after it.
struct Disposition {
  int sig;
  struct sigaction saved {};
  Disposition(int s, void (*h)(int)) : sig(s) {
    struct sigaction sa {};
    sa.sa_handler = h;
    sigemptyset(&sa.sa_mask);
    sigaction(sig, &sa, &saved);
    g_seen = 0;
    g_outer_seen = 0;
  }
  ~Disposition() { sigaction(sig, &saved, nullptr); }
};

TEST(SignalScope, HandlerRunsAndThePreviousHandlerComesBack) {
  const Disposition d1(SIGUSR1, outer_handler), d2(SIGUSR2, SIG_DFL);
  {
    const SignalScope scope({SIGUSR1, SIGUSR2}, note_signal);
    EXPECT_EQ(disposition(SIGUSR1), note_signal);
    raise(SIGUSR1);
    EXPECT_EQ(g_seen, SIGUSR1);
    raise(SIGUSR2);
    EXPECT_EQ(g_seen, SIGUSR2);
    EXPECT_EQ(g_outer_seen, 0);
  }
  EXPECT_EQ(disposition(SIGUSR1), outer_handler);
  EXPECT_EQ(disposition(SIGUSR2), SIG_DFL);
  raise(SIGUSR1);
  EXPECT_EQ(g_outer_seen, SIGUSR1);
}

TEST(SignalScope, KeepLeavesAnIgnoredSignalIgnored) {
  const Disposition d1(SIGUSR1, SIG_IGN), d2(SIGUSR2, SIG_DFL);
  {
    const SignalScope scope({SIGUSR1, SIGUSR2}, note_signal, SignalScope::Ignored::Keep);
    EXPECT_EQ(disposition(SIGUSR1), SIG_IGN);
    EXPECT_EQ(disposition(SIGUSR2), note_signal);
    raise(SIGUSR1);  // ignored: neither handler runs, the process lives
    EXPECT_EQ(g_seen, 0);
  }
  EXPECT_EQ(disposition(SIGUSR1), SIG_IGN);
  EXPECT_EQ(disposition(SIGUSR2), SIG_DFL);
}

TEST(SignalScope, ReplaceOverridesSigIgnAndRestoresIt) {
  const Disposition d(SIGUSR1, SIG_IGN);
  {
    const SignalScope scope({SIGUSR1}, note_signal);
    raise(SIGUSR1);
    EXPECT_EQ(g_seen, SIGUSR1);
  }
  EXPECT_EQ(disposition(SIGUSR1), SIG_IGN);
}

TEST(SignalScope, NestedScopesUnwindInOrder) {
  const Disposition d(SIGUSR1, outer_handler);
  {
    const SignalScope outer({SIGUSR1}, note_signal);
    {
      const SignalScope inner({SIGUSR1}, SIG_IGN);
      EXPECT_EQ(disposition(SIGUSR1), SIG_IGN);
    }
    EXPECT_EQ(disposition(SIGUSR1), note_signal);
  }
  EXPECT_EQ(disposition(SIGUSR1), outer_handler);
}

TEST(SignalScope, HandlerRestartsInterruptedCalls) {
  const Disposition d(SIGUSR1, SIG_DFL);
  const SignalScope scope({SIGUSR1}, note_signal);
  struct sigaction sa {};
  sigaction(SIGUSR1, nullptr, &sa);
  EXPECT_TRUE(sa.sa_flags & SA_RESTART);  // as std::signal on glibc: reads and writes go on
}

}  // namespace
}  // namespace uvit
