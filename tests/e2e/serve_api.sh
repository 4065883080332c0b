#!/usr/bin/env bash
# `uvit serve` against a live server on 127.0.0.1 with a tiny class model (tests/e2e/serve_api.py:
# API shapes, metadata, reproducibility, 4xx on bad input, 429 on a full queue, progress, SSE,
# cancel and interrupt leaving it usable, the API key); then SIGTERM stops it cleanly. Then the job
# store bounded in bytes (tests/e2e/serve_job_store.py). Then a tiny text-to-image model: A1111 and
# OpenAI requests with a prompt (tests/e2e/serve_api_t2i.py).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
if ! "$UVIT" help serve >/dev/null 2>&1 || "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib (libcpp-httplib-dev)"; exit 0
fi
"$PY" tests/e2e/data/tiny_config.py "$tmp/srv.json" train.n_steps=2 lr_scheduler.warmup_steps=1
run "$UVIT" train --config "$tmp/srv.json" --out "$tmp/run" -q
serve_up --config "$tmp/srv.json" --weights "$tmp/run/nnet_ema.safetensors" --queue 1 \
  --max-images 16 --api-key sekret
"$PY" tests/e2e/serve_api.py "$B" sekret || { fail "API checks"; cat "$tmp/server.log"; }
serve_down TERM
grep -q "^\[INFO \] serving srv on http://127.0.0.1:$port/" "$tmp/server.log" || { fail "no serving line"; cat "$tmp/server.log"; }

# The job store bounded in bytes: --job-store-mb checked in one line, then a server with 0.015 MiB
# (tests/e2e/serve_job_store.py).
expect_error "--job-store-mb must be >= 0, got -1" "$UVIT" serve -c "$tmp/srv.json" -w "$tmp/run/nnet_ema.safetensors" --job-store-mb -1
expect_error "--job-store-mb must be a number, got 'lots'" "$UVIT" serve -c "$tmp/srv.json" -w "$tmp/run/nnet_ema.safetensors" --job-store-mb lots
serve_up --config "$tmp/srv.json" --weights "$tmp/run/nnet_ema.safetensors" --job-store-mb 0.015
"$PY" tests/e2e/serve_job_store.py "$B" || { fail "job store checks"; cat "$tmp/server.log"; }
serve_down TERM

# A text-to-image model: A1111 and OpenAI requests with a prompt (tests/e2e/serve_api_t2i.py).
source tests/e2e/data/tiny_t2i.sh
serve_up "${T2I_CONFIG[@]}" "${T2I_MODEL[@]}"
timeout 600 "$PY" tests/e2e/serve_api_t2i.py "$B" || { fail "t2i API checks"; cat "$tmp/server.log"; }
exit $fails
