// SignalScope (src/core/signals.hpp): its handler runs while it lives, and the scope's end puts
// back what was there before: another handler, SIG_DFL or SIG_IGN (kept, or replaced and restored).
// route_signals_to_one_thread runs in a child process: it changes the process's signal masks.
#include <gtest/gtest.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <thread>

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

std::atomic<pthread_t> g_handler_thread{};
std::atomic<int> g_routed_seen{0};
extern "C" void note_thread(int sig) {
  g_handler_thread = pthread_self();
  g_routed_seen = sig;
}

// Runs `body` in a forked child and returns its wait status (gtest's macros do not cross a fork:
// the child reports by its exit code).
int in_child(int (*body)()) {
  const pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

bool blocked_here(int sig) {
  sigset_t cur;
  pthread_sigmask(SIG_BLOCK, nullptr, &cur);
  return sigismember(&cur, sig) == 1;
}

TEST(SignalRouting, HandlersRunOnTheSignalThreadNotOnTheWorkers) {
  const int status = in_child([] {
    route_signals_to_one_thread();
    const SignalScope scope({SIGTERM}, note_thread);
    // A thread started after it (an OpenMP or oneDNN worker) blocks the signals too.
    std::atomic<bool> worker_blocks{false};
    std::thread([&] { worker_blocks = blocked_here(SIGTERM) && blocked_here(SIGINT); }).join();
    if (!worker_blocks || !blocked_here(SIGUSR1)) return 2;
    kill(getpid(), SIGTERM);  // process-directed, as kill(1) and mpirun send it
    for (int i = 0; i < 5000 && !g_routed_seen; ++i) usleep(1000);
    if (g_routed_seen != SIGTERM) return 3;
    // Not this thread (nor a worker, which all block it): the one that only waits.
    return pthread_equal(g_handler_thread.load(), pthread_self()) ? 4 : 0;
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SignalRouting, RaiseHereRunsTheHandlerNowOnABlockedThread) {
  const int status = in_child([] {
    route_signals_to_one_thread();
    const SignalScope scope({SIGUSR1}, note_thread);
    raise_here(SIGUSR1);  // as io::SignalHold's release: the handler has run when it returns
    if (g_routed_seen != SIGUSR1) return 2;
    if (!pthread_equal(g_handler_thread.load(), pthread_self())) return 3;
    return blocked_here(SIGUSR1) ? 0 : 4;  // and blocked again
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(SignalRouting, RaiseHereTakesTheDefaultActionOnABlockedThread) {
  const int status = in_child([] {
    route_signals_to_one_thread();
    raise_here(SIGTERM);  // SIG_DFL: the process ends by the signal, as raise() would end it
    return 5;
  });
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
}

}  // namespace
}  // namespace uvit
