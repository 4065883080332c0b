#!/usr/bin/env bash
# One sampling surface (docs/c_api.md, docs/serve.md "Sampling options"): on a tiny flow DiT (40 steps), each
# sampler option of `uvit sample` (--shift, --cfg-interval, --cfg-power, dopri5's --atol/--rtol,
# --cfg-scale, --guidance-channels) gives the same image, bit for bit, through the C API
# (tests/capi/capi_options.c) and through `uvit serve` (all three request families), and bad
# values are refused naming the field (tests/capi/sampling_parity.py).
# sampling_parity.sh UVIT CAPI_OPTIONS
set -uo pipefail
UVIT=$1 CAPI=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
# No warm-up, so that a few steps move the zero-initialised output layer off zero.
run "$UVIT" train --config tests/configs/flow_dit_tiny.json --set lr_scheduler.warmup_steps=0 \
  --out "$tmp/run" --steps 40 --batch 16 --no-grid -q
W=$tmp/run/nnet.safetensors  # not the EMA: 4 steps barely move it
mkdir -p "$tmp/capi" "$tmp/cli"
"$CAPI" "$tmp/run/config.json" "$W" "$tmp/capi" || fail "C API options"
url=
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP (server part): uvit was built without cpp-httplib (libcpp-httplib-dev)"
else
  serve_up --config "$tmp/run/config.json" --weights "$W"
  url=$B
fi
timeout 600 "$PY" tests/capi/sampling_parity.py "$UVIT" "$tmp/run/config.json" "$W" "$tmp" "$url" ||
  { fail "parity checks"; [ -n "$url" ] && cat "$tmp/server.log"; }
exit $fails
