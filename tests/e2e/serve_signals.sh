#!/usr/bin/env bash
# `uvit serve` stops on SIGINT and SIGTERM only (docs/serve.md, "Signals"): stopped and continued
# (kill -STOP/-CONT), SIGWINCH, SIGCHLD, SIGURG and SIGPIPE while idle, while a job runs and while
# an event stream is open; a debugger's call into the process (gdb, which made the server exit 0
# without a word: accept() returned errno 512); an accept() error cpp-httplib does not retry
# (injected with an LD_PRELOAD shim). After each the server answers and the job completes; then
# SIGINT and SIGTERM stop it with status 0. Every server has --port 0 (serve_up); the port its
# startup line names is bound again after the accept() error, also with -q (which keeps that line).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib (libcpp-httplib-dev)"; exit 0
fi
tiny_run
start() { serve_up "$@" --config fmnist_uvit_tiny --weights "$W" --threads 1; }  # start [VAR=VALUE...]
answers() {  # answers WHAT: the server is alive (else the script ends) and answers /health
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; fail "$1: the server exited (status $?): $(tail -3 "$tmp/server.log")"; exit $fails
  fi
  curl -sf -m 20 "$B/health" >/dev/null || { fail "$1: no answer from /health"; return 1; }
  echo "ok: $1"
}
harmless() {  # the signals that must not stop the server
  for _ in 1 2 3; do kill -STOP "$pid"; sleep 0.2; kill -CONT "$pid"; sleep 0.1; done
  for s in WINCH CHLD URG PIPE CONT; do kill -"$s" "$pid"; sleep 0.1; done
}
job_field() { "$PY" -c "import json, sys; print(json.load(sys.stdin)$1)"; }

start
answers "started"
harmless
answers "idle, after STOP/CONT, WINCH, CHLD, URG, PIPE"

# While a job runs, with an event stream open: the signals, then the job still completes.
id=$(curl -s -m 20 -X POST "$B/uvit/v1/jobs" -d '{"class": "Bag", "steps": 30, "n": 2}' | job_field "['id']")
curl -s -N -m 300 "$B/uvit/v1/jobs/$id/events" >"$tmp/events" &
events=$!
for _ in $(seq 300); do
  [ "$(curl -s -m 5 "$B/uvit/v1/jobs/$id" | job_field "['status']")" = generating ] && break; sleep 0.1
done
harmless
answers "a job running, after the same signals"
for _ in $(seq 600); do
  st=$(curl -s -m 5 "$B/uvit/v1/jobs/$id" | job_field "['status']")
  [ "$st" = generating ] || [ "$st" = queued ] || break; sleep 0.5
done
[ "$st" = completed ] && echo "ok: the job completed" || fail "the job ended $st"
wait "$events"
grep -q "^event: done" "$tmp/events" && echo "ok: its event stream ended with done" ||
  fail "event stream: $(tail -c 300 "$tmp/events")"

# A debugger's call: gdb runs getpid() in the process while its main thread waits for connections.
# That interrupted a blocking accept(), which returned ERESTARTSYS (512), and httplib's loop ended.
if command -v gdb >/dev/null; then
  libc=$(awk '/\/libc\.so\.6$/ {print $1; exit}' "/proc/$pid/maps" | cut -d- -f1)
  off=$(nm -D "$(awk '/\/libc\.so\.6$/ {print $6; exit}' "/proc/$pid/maps")" | awk '$3 ~ /^getpid@/ {print $1}')
  if [ -n "$libc" ] && [ -n "$off" ]; then
    for _ in 1 2; do
      timeout 60 gdb -p "$pid" -batch -ex "print ((int (*)(void)) $(printf '0x%x' $((0x$libc + 0x$off))))()" \
        >"$tmp/gdb.log" 2>&1
      sleep 0.5
    done
    if grep -q "ptrace: Operation not permitted" "$tmp/gdb.log"; then echo "SKIP: gdb may not attach here"
    else answers "after two gdb calls into the process"; fi
  else
    echo "SKIP: libc's getpid not found in /proc/$pid/maps"
  fi
else
  echo "SKIP: no gdb"
fi
serve_down TERM

# An accept() error that cpp-httplib's loop does not retry (Linux passes a failed connection's
# network error, e.g. EPROTO, on to accept()): the third accepted connection is turned into one.
if command -v "${CC:-cc}" >/dev/null; then
  cat >"$tmp/accept_fails.c" <<'EOF'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>
int accept(int fd, struct sockaddr *a, socklen_t *l) {
  static int (*real)(int, struct sockaddr *, socklen_t *);
  static int n;
  if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
  int s = real(fd, a, l);
  if (s >= 0 && ++n == 3) { close(s); errno = EPROTO; return -1; }
  return s;
}
EOF
  "${CC:-cc}" -shared -fPIC -o "$tmp/accept_fails.so" "$tmp/accept_fails.c" -ldl ||
    fail "compiling the accept shim"
  start LD_PRELOAD="$tmp/accept_fails.so"
  answers "first request" && curl -sf -m 20 "$B/health" >/dev/null  # the second
  curl -s -m 20 "$B/health" >/dev/null  # the third: its connection fails
  sleep 0.5
  answers "after an accept() error" &&
    grep -q "accepting a connection failed; listening again" "$tmp/server.log" &&
    echo "ok: the server said so" || fail "no warning in the log: $(cat "$tmp/server.log")"
  serve_down INT
  # With -q: the startup line, which names the port (serve_up reads it there), is kept; after the
  # same accept() error the server binds that port again.
  start LD_PRELOAD="$tmp/accept_fails.so" -q
  answers "--port 0 -q: port $port from the startup line" && curl -sf -m 20 "$B/health" >/dev/null
  curl -s -m 20 "$B/health" >/dev/null  # the third: its connection fails
  sleep 0.5
  answers "--port 0 -q: the same port $port after an accept() error"
  serve_down TERM
else
  echo "SKIP: no C compiler for the accept shim"
fi
exit $fails
