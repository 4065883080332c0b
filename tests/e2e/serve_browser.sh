#!/usr/bin/env bash
# The `uvit serve` page in Debian's headless Chromium (tests/browser/serve_page.py) against a server
# on 127.0.0.1, once with a tiny class model and once with a tiny text-to-image model. Skips,
# saying so, without chromium or cpp-httplib.
# UVIT_SHOTS=DIR keeps the screenshots (docs/serve_page*.png were made so).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium is not installed (scripts/setup.sh installs it)"; exit 0; }
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib"; exit 0
fi
source tests/e2e/data/lib.sh
shots=${UVIT_SHOTS:-$tmp/shots}; mkdir -p "$shots"

# A class model: the class picker.
"$PY" tests/e2e/data/tiny_config.py "$tmp/srv.json" train.n_steps=2 lr_scheduler.warmup_steps=1
run "$UVIT" train --config "$tmp/srv.json" --out "$tmp/run" -q
serve_up --config "$tmp/srv.json" --weights "$tmp/run/nnet_ema.safetensors"
timeout 300 "$PY" tests/browser/serve_page.py "$CHROMIUM" "$B/" "$shots" ||
  { fail "browser checks (class model)"; cat "$tmp/server.log"; }
serve_down

# A text-to-image model (latent, decoded to 256x256): the prompt box.
source tests/e2e/data/tiny_t2i.sh
serve_up "${T2I_CONFIG[@]}" "${T2I_MODEL[@]}"
timeout 300 "$PY" tests/browser/serve_page.py "$CHROMIUM" "$B/" "$shots" t2i ||
  { fail "browser checks (text-to-image model)"; cat "$tmp/server.log"; }
serve_down
exit $fails
