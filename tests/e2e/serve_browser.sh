#!/usr/bin/env bash
# The `uvit serve` page in Debian's headless Chromium (tests/browser/serve_page.py) against a server
# on 127.0.0.1 with a tiny class model. Skips, saying so, without chromium or cpp-httplib.
# UVIT_SHOTS=DIR keeps the screenshots (docs/serve_page*.png were made so).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium is not installed (scripts/setup.sh installs it)"; exit 0; }
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib"; exit 0
fi
tmp=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
source tests/e2e/data/lib.sh
"$PY" tests/e2e/data/tiny_config.py "$tmp/srv.json" train.n_steps=2 lr_scheduler.warmup_steps=1
run "$UVIT" train --config "$tmp/srv.json" --out "$tmp/run" -q
port=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$UVIT" serve --config "$tmp/srv.json" --weights "$tmp/run/nnet_ema.safetensors" --port "$port" 2>"$tmp/server.log" &
pid=$!
for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
shots=${UVIT_SHOTS:-$tmp/shots}; mkdir -p "$shots"
timeout 300 "$PY" tests/browser/serve_page.py "$CHROMIUM" "http://127.0.0.1:$port/" "$shots" ||
  { fail "browser checks"; cat "$tmp/server.log"; }
exit $fails
