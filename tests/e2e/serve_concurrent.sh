#!/usr/bin/env bash
# `uvit serve` under concurrent clients (tests/e2e/serve_concurrent.py): every generating route at
# once from six clients, readers and a canceller beside them, each answer the one a lone client
# gets; then SIGTERM stops the server cleanly. Written for ThreadSanitizer (docs/fuzzing.md).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
if ! "$UVIT" help serve >/dev/null 2>&1 || "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib (libcpp-httplib-dev)"; exit 0
fi
tiny_run
serve_up --config fmnist_uvit_tiny --weights "$W" --queue 16 --max-images 16
timeout 1200 "$PY" tests/e2e/serve_concurrent.py "$B" || { fail "concurrent clients"; tail -20 "$tmp/server.log"; }
serve_down TERM
exit $fails
