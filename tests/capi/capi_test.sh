#!/usr/bin/env bash
# Runs the C API test program (tests/capi/test_capi.c, compiled as C) on a tiny class-conditional
# model trained for 2 steps: capi_test.sh UVIT TEST_CAPI
set -euo pipefail
UVIT=$1 TEST=$2 PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=2 lr_scheduler.warmup_steps=1
"$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" -q
"$TEST" "$tmp/tiny.json" "$tmp/run/nnet_ema.safetensors"
