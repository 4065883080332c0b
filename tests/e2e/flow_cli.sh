#!/usr/bin/env bash
# Flow matching end to end (docs/flow.md): train a tiny flow DiT (tests/configs/flow_dit_tiny.json,
# logit-normal time, cosine loss) with its in-training grid (euler), resume, sample with every
# flow sampler and the flow options, and the one-line errors of bad values.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
CFG=tests/configs/flow_dit_tiny.json

# No warm-up, so that a few steps move the zero-initialised output layer off zero.
run "$UVIT" train --config $CFG --set lr_scheduler.warmup_steps=0 --out "$tmp/run" --steps 4 \
  --batch 8 --grid-every 4 --grid-n 10 -q
[ -f "$tmp/run/samples/step_0000004.png" ] || fail "no in-training grid"
run "$UVIT" train --out "$tmp/run" --resume --steps 6 --no-grid -q
grep -q "at step 6" "$tmp/out" || fail "resume: $(cat "$tmp/out")"
"$PY" -c "
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
loss = [r['loss'] for r in rows if 'loss' in r]
assert loss and all(math.isfinite(x) and 1.0 < x < 5.0 for x in loss), loss
" "$tmp/run/log.jsonl" || fail "flow training loss rows: $(cat "$tmp/run/log.jsonl")"

R=$tmp/run
S=(--config "$R" --weights "$R/nnet.safetensors" -q)
for s in euler heun dopri5 euler_maruyama; do
  run "$UVIT" sample "${S[@]}" --n 4 --classes 0,7 --sampler $s --steps 6 --npy "$tmp/$s.npy"
  "$PY" -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(4,28,28,1), a.shape" \
    "$tmp/$s.npy" || fail "$s: bad output shape"
done
cmp -s "$tmp/euler.npy" "$tmp/heun.npy" && fail "heun equals euler"
# The preset's defaults (euler, 20 steps, shift 0.3, interval 0.1, S 1) equal them spelled out.
run "$UVIT" sample "${S[@]}" --n 2 --class 3 --npy "$tmp/d.npy"
run "$UVIT" sample "${S[@]}" --n 2 --class 3 --sampler euler --steps 20 --shift 0.3 \
  --cfg-interval 0.1 --guidance 2 --guidance-channels all --npy "$tmp/e.npy"
cmp -s "$tmp/d.npy" "$tmp/e.npy" || fail "the preset's flow defaults differ from the same options"
run "$UVIT" sample "${S[@]}" --n 2 --class 3 --shift 1 --npy "$tmp/f.npy"
cmp -s "$tmp/d.npy" "$tmp/f.npy" && fail "--shift was ignored"
run "$UVIT" sample "${S[@]}" --n 2 --class 3 --cfg-interval 0.9 --npy "$tmp/g.npy"
cmp -s "$tmp/d.npy" "$tmp/g.npy" && fail "--cfg-interval was ignored"
run "$UVIT" sample "${S[@]}" --n 2 --class 3 --sampler dopri5 --atol 1e-4 --rtol 1e-2 \
  --npy "$tmp/h.npy"
# dopri5's progress total is not known in advance.
"$UVIT" sample --config "$R" --weights "$R/nnet.safetensors" --n 1 --class 1 \
  --sampler dopri5 --npy "$tmp/p.npy" 2>"$tmp/err" >/dev/null || fail "dopri5 with progress"
grep -q "? (adaptive)" "$tmp/err" || fail "dopri5 progress: $(cat "$tmp/err")"

# One-line errors.
expect_error "not a flow sampler (valid for flow presets: euler, heun, euler_maruyama, dopri5); config .* is a flow preset (velocity objective, docs/flow.md)" \
  "$UVIT" sample "${S[@]}" --n 2 --class 1 --sampler dpm-solver++ --npy "$tmp/x.npy"
expect_error "'heun' is a flow sampler (flow presets); config .* (schedule adm) takes dpm-solver, dpm-solver++, dpm-solver++2m, ddpm, ddim" \
  "$UVIT" sample "${S[@]}" --set schedule=adm --n 2 --class 1 \
  --sampler heun --npy "$tmp/x.npy"
expect_error "flow presets only" "$UVIT" sample "${S[@]}" --set schedule=adm --n 2 --class 1 \
  --sampler ddim --shift 0.3 --npy "$tmp/x.npy"
expect_error "--shift" "$UVIT" sample "${S[@]}" --n 2 --class 1 --shift 0 --npy "$tmp/x.npy"
expect_error "--cfg-interval must be in \[0, 1\], got 1.5" "$UVIT" sample "${S[@]}" --n 2 \
  --class 1 --cfg-interval 1.5 --npy "$tmp/x.npy"
expect_error "guidance channels 2 exceed the 1 output channels" "$UVIT" sample "${S[@]}" --n 2 --class 1 \
  --guidance-channels 2 --npy "$tmp/x.npy"
expect_error "--guidance-channels must be 'all' or a positive integer" "$UVIT" sample "${S[@]}" \
  --n 2 --class 1 --guidance-channels some --npy "$tmp/x.npy"
expect_error "--atol" "$UVIT" sample "${S[@]}" --n 2 --class 1 --sampler dopri5 --atol -1 \
  --npy "$tmp/x.npy"
expect_error "at least 2 time points" "$UVIT" sample "${S[@]}" --n 2 --class 1 --steps 1 \
  --npy "$tmp/x.npy"
expect_error "transport.time_dist must be" "$UVIT" train --config $CFG \
  --set transport.time_dist=beta --out "$tmp/bad" --steps 1
expect_error "learn_sigma false" "$UVIT" train --config $CFG --set nnet.learn_sigma=true \
  --out "$tmp/bad2" --steps 1 --no-grid
exit $fails
