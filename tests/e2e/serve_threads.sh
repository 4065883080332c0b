#!/usr/bin/env bash
# `uvit --threads 2 serve` under OMP_NUM_THREADS=6 (docs/serve.md, "Threads"): a job runs on the
# queue's worker thread, where libgomp gave the environment's uncapped count (6 threads) until the
# worker took the --threads count (adopt_thread_count, src/serve/jobs.cpp). libgomp keeps a team's
# threads for the thread that started it, so the process's thread count after a job says the size
# of the job's team: one more thread for a team of 2 (measured 24 -> 25), five for one of 6
# (24 -> 29). Deterministic: it counts threads that stay, not threads seen while running.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
if ! "$UVIT" help serve >/dev/null 2>&1 || "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib (libcpp-httplib-dev)"; exit 0
fi
[ -d /proc/self/task ] || { echo "SKIP: no /proc/PID/task here"; exit 0; }
tiny_run
threads() { ls "/proc/$pid/task" | wc -l; }
serve_up OMP_NUM_THREADS=6 --config fmnist_uvit_tiny --weights "$W" --threads 2
before=$(threads)
curl -sf -m 120 -H 'Content-Type: application/json' -d '{"prompt": "3", "batch_size": 2, "steps": 4}' \
  "$B/sdapi/v1/txt2img" >/dev/null || fail "txt2img: $(tail -3 "$tmp/server.log")"
after=$(threads)
# At most one more thread for the team of 2, and a margin of one (not five, a team of 6).
((after - before <= 2)) && echo "ok: a job under --threads 2 and OMP_NUM_THREADS=6: $before -> $after threads" ||
  fail "a job under --threads 2 and OMP_NUM_THREADS=6 ran a larger team: $before -> $after threads"
serve_down TERM
exit $fails
