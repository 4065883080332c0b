#!/usr/bin/env bash
# `uvit serve --job-store-mb`: the finished jobs kept for polling are bounded in bytes, oldest
# dropped first, the newest always kept (tests/e2e/serve_job_store.py; docs/serve.md, "Memory over
# time"); a negative or non-numeric value is refused in one line.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib (libcpp-httplib-dev)"; exit 0
fi
tiny_run
expect_error "--job-store-mb must be >= 0, got -1" "$UVIT" serve -c fmnist_uvit_tiny -w "$W" --job-store-mb -1
expect_error "--job-store-mb must be a number, got 'lots'" "$UVIT" serve -c fmnist_uvit_tiny -w "$W" --job-store-mb lots
port=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$UVIT" serve --config fmnist_uvit_tiny --weights "$W" --port "$port" --threads 1 --job-store-mb 0.025 \
  2>"$tmp/server.log" &
pid=$!
"$PY" tests/e2e/serve_job_store.py "http://127.0.0.1:$port" || { fail "job store checks"; cat "$tmp/server.log"; }
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
[ $rc -eq 0 ] || fail "server exit status $rc after SIGTERM"
exit $fails
