#!/usr/bin/env bash
# `uvit demo` end to end in miniature: a few training steps, then the 10x10 class grid, drawn once
# (grid.png; no second copy of it in samples/).
set -euo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$UVIT" demo --out "$tmp/demo" --steps 3 --set sample.sample_steps=10 >"$tmp/out" 2>"$tmp/err"
grep -q "grid.png" "$tmp/out"
for f in grid.png nnet_ema.safetensors train_state.safetensors log.jsonl config.json; do
  [ -s "$tmp/demo/$f" ] || { echo "FAIL: missing $f"; exit 1; }
done
# One grid drawn (its progress: 10 steps of each of four 25-image mini-batches), none in samples/.
[ "$(grep '^grid ' "$tmp/err" | sed 's| [0-9]*/[0-9]*.*||' | sort -u | wc -l)" = 1 ] &&
  grep -q "^grid $tmp/demo/grid.png (one row per class) 40/40" "$tmp/err" ||
  { echo "FAIL: want one grid drawn: $(cat "$tmp/err")"; exit 1; }
[ ! -e "$tmp/demo/samples" ] || { echo "FAIL: demo also drew $(ls "$tmp/demo/samples")"; exit 1; }
# 10 rows x 10 columns of 28x28 images with torchvision's 2-pixel padding: 302 x 302, grayscale.
"$PY" - "$tmp/demo/grid.png" <<'PYEOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h, depth, color = struct.unpack(">IIBB", b[16:26])
assert (w, h, depth, color) == (302, 302, 8, 0), (w, h, depth, color)
print("grid ok", w, h)
PYEOF
# A second call continues the same run rather than failing on it.
"$UVIT" demo --out "$tmp/demo" --steps 4 --set sample.sample_steps=10 -q >/dev/null
grep -q '"step":4' "$tmp/demo/log.jsonl" || { echo "FAIL: demo did not continue to step 4"; exit 1; }
