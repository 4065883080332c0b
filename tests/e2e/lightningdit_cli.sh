#!/usr/bin/env bash
# fmnist_lightningdit_tiny end to end at toy step counts (docs/lightningdit.md): `uvit train`
# (flow matching, logit-normal time, cosine loss) and resume, `uvit sample` with the LightningDiT
# recipe's options (euler, shift, cfg with interval), and `uvit demo --config
# fmnist_lightningdit_tiny` drawing its class grid.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
CFG=fmnist_lightningdit_tiny
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2)

train_resume $CFG lightningdit "${small[@]}"
grep -q '"use_rope": *true' "$tmp/run/config.json" || fail "run config lost use_rope"

S=(--config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors" -q)
run "$UVIT" sample "${S[@]}" --n 4 --classes 0,7 --steps 6 --npy "$tmp/a.npy"
"$PY" -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(4,28,28,1), a.shape" \
  "$tmp/a.npy" || fail "bad sample shape"
run "$UVIT" sample "${S[@]}" --n 4 --classes 0,7 --steps 6 --shift 0.3 --guidance 6.7 \
  --cfg-interval 0.125 --npy "$tmp/b.npy"
# (That these options act is tests/e2e/flow_cli.sh's; a 5-step network's velocity barely depends on
# t or the label, so here they only have to run.)

# The demo with this preset: a few steps, then the 10x10 class grid (302 x 302 grayscale).
run "$UVIT" demo --config $CFG "${small[@]}" --out "$tmp/demo" --steps 2 \
  --set sample.sample_steps=4
[ -s "$tmp/demo/grid.png" ] || fail "demo drew no grid"
"$PY" - "$tmp/demo/grid.png" <<'PYEOF' || fail "demo grid"
import struct, sys
b = open(sys.argv[1], "rb").read()
w, h, depth, color = struct.unpack(">IIBB", b[16:26])
assert b[:8] == b"\x89PNG\r\n\x1a\n" and (w, h, depth, color) == (302, 302, 8, 0), (w, h)
PYEOF
grep -q '"name": *"lightningdit"' "$tmp/demo/config.json" || fail "demo ran another network"
exit $fails
