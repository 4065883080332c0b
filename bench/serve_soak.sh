#!/usr/bin/env bash
# `uvit serve` memory over a long run (docs/serve.md, "Memory over time"): fmnist_uvit_tiny (one
# training step) served with --threads 1, then N requests of tests/e2e/ux_audit6.sh's mix (good,
# malformed, oversized, abandoned, cancelled and concurrent), the server's RSS printed every 50.
# Usage: bench/serve_soak.sh [N (default 600)] [UVIT (default build/uvit)]
# The server inherits the environment (e.g. MALLOC_ARENA_MAX=2); SOAK_SERVE_ARGS replaces its -q;
# SOAK_HOLD=FILE keeps it up after the requests until FILE is removed (to read /proc/PID).
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-600}
UVIT=$(realpath "${2:-build/uvit}")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_run
port=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$UVIT" serve --config fmnist_uvit_tiny --weights "$W" --port "$port" --threads 1 ${SOAK_SERVE_ARGS:--q} 2>"$tmp/server.log" &
pid=$!
B=http://127.0.0.1:$port
for _ in $(seq 1200); do curl -sf "$B/health" >/dev/null 2>&1 && break; sleep 0.1; done
curl -sf "$B/health" >/dev/null || { echo "the server did not start: $(tail -3 "$tmp/server.log")"; exit 1; }
head -c 100000 /dev/urandom >"$tmp/noise.bin"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
echo "requests 0: RSS $(rss) kB"
t0=$(date +%s)
for i in $(seq 1 "$N"); do
  c=(curl -s -m 60 -o /dev/null -w '%{http_code}\n')
  case $((i % 12)) in
    0) "${c[@]}" -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Sneaker", "steps": 2, "batch_size": 2}' ;;
    1) "${c[@]}" -X POST "$B/sdapi/v1/txt2img" -d '{"prompt":' ;;
    2) "${c[@]}" -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Sneaker", "batch_size": 100000}' ;;
    3) "${c[@]}" -X POST "$B/v1/images/generations" -d '{"prompt": "Bag", "steps": 2, "size": "512x512"}' ;;
    4) "${c[@]}" -X POST "$B/v1/images/generations" -d '{"prompt": "Bag", "n": 1e12}' ;;
    5) curl -s -m 0.3 -o /dev/null -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Bag", "steps": 50, "batch_size": 4}' ;;
    6) "${c[@]}" -X POST "$B/uvit/v1/jobs" -d '{"class": "Sneaker", "steps": 2, "n": 2}' ;;
    7) "${c[@]}" -X POST "$B/uvit/v1/jobs" -d '{"class": "snaeker", "steps": 2}' ;;
    8) "${c[@]}" "$B/uvit/v1/jobs/nope" ;;
    9) "${c[@]}" -X POST "$B/sdapi/v1/txt2img" -H 'Content-Type: application/json' --data-binary "@$tmp/noise.bin" ;;
    10) for _ in 1 2 3; do "${c[@]}" -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Bag", "steps": 2}' & done
        wait $(jobs -p | grep -vx "$pid") ;;
    11) id=$(curl -s -m 20 -X POST "$B/uvit/v1/jobs" -d '{"class": "Bag", "steps": 40, "n": 4}' | "$PY" -c "import json, sys; print(json.load(sys.stdin)['id'])")
        curl -s -m 20 -o /dev/null -X POST "$B/uvit/v1/jobs/$id/cancel"
        curl -s -m 0.5 -o /dev/null "$B/uvit/v1/jobs/$id/events" ;;
  esac >>"$tmp/codes"
  kill -0 "$pid" 2>/dev/null || { echo "the server died at request $i: $(tail -3 "$tmp/server.log")"; exit 1; }
  [ $((i % 50)) = 0 ] && echo "requests $i: RSS $(rss) kB ($(($(date +%s) - t0)) s)"
done
[ -n "${SOAK_HOLD:-}" ] && { echo "server pid $pid held: $SOAK_HOLD"; touch "$SOAK_HOLD"; while [ -e "$SOAK_HOLD" ]; do sleep 1; done; }
echo "HTTP statuses (count status): $(sort "$tmp/codes" | uniq -c | tr -s ' \n' ' ')"
kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
echo "server exit $rc"
grep -v "^$" "$tmp/server.log" | tail -"${SOAK_LOG_LINES:-20}"
