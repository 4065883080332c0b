#!/usr/bin/env bash
# Runs the C API test program (tests/capi/test_capi.c, compiled as C) on a tiny class-conditional
# model trained for 2 steps: capi_test.sh UVIT TEST_CAPI
set -euo pipefail
UVIT=$1 TEST=$2 PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=2 lr_scheduler.warmup_steps=1
"$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" -q
# The config is a preset too (tiny_e2e), so that a load of its weights with another preset's
# config names it.
mkdir "$tmp/presets" && cp "$tmp/tiny.json" "$tmp/presets/tiny_e2e.json"
UVIT_CONFIG_DIR=$tmp/presets "$TEST" "$tmp/presets/tiny_e2e.json" "$tmp/run/nnet_ema.safetensors"
# n_threads 0 with OMP_NUM_THREADS far beyond the CPUs: capped, said to the log callback.
OMP_NUM_THREADS=100000 "$TEST" "$tmp/tiny.json" /nonexistent/w.safetensors env-threads
# n_threads on a thread other than the one that made the context (libgomp's count is per thread).
OMP_NUM_THREADS=6 "$TEST" "$tmp/tiny.json" "$tmp/run/nnet_ema.safetensors" threads-elsewhere
