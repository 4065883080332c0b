#!/usr/bin/env bash
# Latent DiffiT through the same commands as DiT (docs/diffit.md): info (the official module's
# counts), the official checkpoint layout (a torch.save state_dict with the int64
# relative_position_index buffers) predicting the twin's output, train fmnist_diffit_tiny, resume
# bit-identically, sample with power-cos three-channel guidance, and the one-line errors.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

run "$UVIT" info --config diffit_xl_2
grep -q "parameters    563165152 in 346 tensors" "$tmp/out" || fail "info: $(grep parameters "$tmp/out")"

check_checkpoint "$FX" diffit_p2 "$FX/diffit_p2.pth"
check_checkpoint "$FX" diffit_odd_nosigma "$FX/diffit_odd_nosigma.pth"
relative_index_checks diffit_p2 blocks.1.attn.relative_position_index \
  blocks.0.attn.relative_position_index

# Train a few steps, resume to the same bits as a straight run, sample with CFG.
# (A large constant learning rate, so that 4 steps move the zero-initialised head far enough for
# guidance to show in uint8 samples.)
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.patch_size=7
  --set optimizer.lr=0.01 --set lr_scheduler.warmup_steps=0)
R=$tmp/diffit
run "$UVIT" train --config fmnist_diffit_tiny "${small[@]}" --out "$R" --steps 2 --batch 4 --no-grid -q
run "$UVIT" train --out "$R" --resume --steps 4 --no-grid -q
grep -q "at step 4" "$tmp/out" || fail "resume: $(cat "$tmp/out")"
run "$UVIT" train --config fmnist_diffit_tiny "${small[@]}" --out "$tmp/straight" --steps 4 \
  --batch 4 --no-grid -q
same_files "$R" "$tmp/straight" "diffit: 2 steps + resume to 4"
"$PY" - "$R/log.jsonl" <<'PYEOF' || fail "diffit: training log"
import json, sys
import numpy as np
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert len(rows) >= 2 and all(np.isfinite(r["loss"]) for r in rows), rows
print("ok: losses", [r["loss"] for r in rows])
PYEOF
# No guidance, constant guidance (three channels: min(3, 2) here), and the preset-style power-cos.
for g in "1 0" "4 0" "4 4"; do
  set -- $g
  run "$UVIT" sample --config "$R" --weights "$R/nnet.safetensors" -q --n 4 --classes 1,7 \
    --sampler ddpm --steps 5 --guidance $1 --cfg-power $2 --npy "$tmp/s$1_$2.npy"
done
"$PY" - "$tmp/s1_0.npy" "$tmp/s4_0.npy" "$tmp/s4_4.npy" <<'PYEOF' || fail "sample: bad output"
import sys
import numpy as np
a, b, c = (np.load(p) for p in sys.argv[1:4])
assert a.shape == b.shape == c.shape == (4, 28, 28, 1), (a.shape, b.shape, c.shape)
assert not np.array_equal(a, b), "guidance changed nothing"
PYEOF

# Bad configs: one line naming the field.
bad=(--out "$tmp/bad" --steps 1 --batch 2 --no-grid -q)
expect_error "nnet.mask_ratio: only null is supported" \
  "$UVIT" train --config fmnist_diffit_tiny --set nnet.mask_ratio=0.3 "${bad[@]}"
expect_error "nnet.skip: unknown key (not an argument of DiffiT)" \
  "$UVIT" train --config fmnist_diffit_tiny --set nnet.skip=1 "${bad[@]}"
expect_error "nnet.input_size 28 is not divisible by nnet.patch_size 3" \
  "$UVIT" train --config fmnist_diffit_tiny --set nnet.patch_size=3 "${bad[@]}"
exit $fails
