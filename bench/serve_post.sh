#!/usr/bin/env bash
# What reading a POST body costs in `uvit serve` (docs/serve.md, "Request bodies"): a server with
# fmnist_uvit_tiny (one training step), then N requests of each kind one after another (Python
# http.client), each on a new connection (as curl sends them), and the median and 90th percentile
# in microseconds: GET /health, POST /sdapi/v1/png-info with a 2 KB JSON body (a 28x28 PNG) as
# application/json and as application/x-www-form-urlencoded (curl -d's type), and with a 300 KB
# JSON body; then GET /health min(N, 100) times on one keep-alive connection (where Nagle's algorithm on the
# server meets the client's delayed ACK unless the server sets TCP_NODELAY).
# Usage: bench/serve_post.sh [N (default 2000)] [UVIT (default build/uvit)]...: several binaries
# are measured in turn, twice each, against the same model (compare old and new on a loaded
# machine).
set -uo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}; shift || true
[ $# -gt 0 ] || set -- build/uvit
PY=${PYTHON:-/usr/bin/python3}
UVIT=$(realpath "$1")
source tests/e2e/data/lib.sh
tiny_run
"$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 7 --n 1 --steps 2 --dir "$tmp/png" -q >/dev/null ||
  { echo "sampling the PNG failed"; exit 1; }
port=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
for round in 1 2; do
  for bin in "$@"; do
    "$(realpath "$bin")" serve --config fmnist_uvit_tiny --weights "$W" --port "$port" --threads 1 -q 2>"$tmp/server.log" &
    pid=$!
    for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.1; done
    "$PY" - "$port" "$N" "$tmp/png/000000.png" "$bin (round $round)" <<'PYEOF'
import base64, http.client, json, statistics, sys, time
port, n, png, label = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
small = json.dumps({"image": base64.b64encode(open(png, "rb").read()).decode()}).encode()
big = json.dumps({"image": base64.b64encode(open(png, "rb").read()).decode(), "padding": "x" * 300000}).encode()
def run(method, path, body, ctype, keep_alive=False, count=n):
    t = []
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        t0 = time.perf_counter()
        if not keep_alive:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request(method, path, body, {"Content-Type": ctype} if body else {})
        r = c.getresponse(); r.read()
        if not keep_alive:
            c.close()
        t.append(time.perf_counter() - t0)
        assert r.status == 200, (path, ctype, r.status)
    t.sort()
    return f"{1e6 * statistics.median(t):6.0f} {1e6 * t[int(0.9 * len(t))]:6.0f}"
print(f"{label}: median/p90 us, new connections: GET /health {run('GET', '/health', None, '')}"
      f" | png-info 2 KB json {run('POST', '/sdapi/v1/png-info', small, 'application/json')}"
      f" | 2 KB form {run('POST', '/sdapi/v1/png-info', small, 'application/x-www-form-urlencoded')}"
      f" | 300 KB json {run('POST', '/sdapi/v1/png-info', big, 'application/json')}"
      f" || keep-alive GET /health {run('GET', '/health', None, '', True, min(n, 100))}")
PYEOF
    kill -TERM "$pid"; wait "$pid"; pid=
  done
done
