#!/usr/bin/env bash
# FiTv1 end to end (docs/fit.md, "FiTv1"): fmnist_fitv1_tiny trains on the ADM objective (learned
# sigma, hybrid loss) 3 steps, resumes to 5 byte-identical to a straight run, samples with ADM's
# ancestral sampler and DDIM under classifier-free guidance; `uvit predict` against the twin (2C
# outputs, non-square grid); `uvit info --json` of fitv1_xl_2 against the twin's official
# state_dict; the one-line errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
FX=$2
source tests/e2e/data/lib.sh
CFG=fmnist_fitv1_tiny
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2)

train_resume $CFG fitv1 "${small[@]}"
grep -q '"use_sit": *false' "$tmp/run/config.json" || fail "run config lost use_sit"
straight_matches $CFG fitv1 "${small[@]}"
R=(--config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors" -q)
# ADM's ancestral sampler (the official p_sample_loop, learned-range variance) with cfg 1.5 on the
# first 3 channels, and DDIM; a seed repeats. (tests/unit/test_dit_sampling.cpp checks the guided
# samplers against the float64 reference on fitv1_p2's weights.)
run "$UVIT" sample "${R[@]}" --n 4 --classes 0,7 --sampler ddpm --steps 8 --guidance 1.5 \
  --seed 3 --npy "$tmp/g.npy"
run "$UVIT" sample "${R[@]}" --n 4 --classes 0,7 --sampler ddpm --steps 8 --guidance 1.5 \
  --seed 3 --npy "$tmp/g2.npy"
cmp -s "$tmp/g.npy" "$tmp/g2.npy" || fail "ddpm with a seed is not repeatable"
run "$UVIT" sample "${R[@]}" --n 3 --class 4 --sampler ddim --steps 5 --guidance 2 \
  --npy "$tmp/d.npy"
# Five steps leave the labels little say: the raw weights (not the EMA's) at a large scale show
# that guidance reaches the network.
W=(--config "$tmp/run" --weights "$tmp/run/nnet.safetensors" -q --n 4 --classes 0,7 --sampler ddpm
  --steps 8 --seed 3)
run "$UVIT" sample "${W[@]}" --guidance 1 --npy "$tmp/u.npy"
run "$UVIT" sample "${W[@]}" --guidance 8 --npy "$tmp/w.npy"
"$PY" -c "
import numpy as n, sys
g, d, u, w = (n.load(f) for f in sys.argv[1:])
assert g.shape == u.shape == w.shape == (4, 28, 28, 1) and d.shape == (3, 28, 28, 1), (g.shape, d.shape)
assert (u != w).any(), 'guidance changed nothing'
" "$tmp/g.npy" "$tmp/d.npy" "$tmp/u.npy" "$tmp/w.npy" || fail "sample shapes / guidance"

# The network from the command line against the PyTorch twin: the official .pth state_dict, a 3 x 2
# grid, eps and the variance values (2 C = 6 channels), timesteps as they are (time_clamp false).
predicts_as_twin "$FX/fitv1_rect" fitv1_rect "(2, 6, 6, 4)"

# fitv1_xl_2's parameter table is the official FiTv1-XL/2 state_dict, name for name and shape for
# shape (configs/fit/config_fit_xl.yaml through the twin), 347 tensors, 823,599,392 values.
official_keys "FiTv1-XL/2" fit_torch 'build_from_config(preset("v1_xl"))' 347 823599392 \
  --config fitv1_xl_2
run "$UVIT" info --config fitv1_xl_2
grep -q "823599392 in 347 tensors" "$tmp/out" || fail "fitv1_xl_2 size: $(cat "$tmp/out")"

# One-line errors: a variance output on the velocity model; packed batches on U-ViT's eps-MSE
# schedules (the ADM objective packs them: tests/e2e/fitv1_packed_cli.sh).
expect_error "use_sit" "$UVIT" train --config $CFG "${small[@]}" --set nnet.use_sit=true \
  --out "$tmp/e" --steps 1 --batch 4 --no-grid -q
D=$tmp/folder
"$PY" - "$D" <<'PYEOF'
import os, sys
import numpy as np
os.makedirs(sys.argv[1])
for i, (h, w) in enumerate([(28, 28), (16, 28), (12, 8), (8, 8)]):
    np.save(os.path.join(sys.argv[1], "%d_%d.npy" % (i % 2, i)), np.zeros((1, h, w), np.float32))
PYEOF
expect_error "need the flow or the ADM objective" "$UVIT" train --config $CFG "${small[@]}" \
  --set schedule=continuous_vp --set nnet.learn_sigma=false --set dataset.name=npy_folder \
  --set "dataset.path=$D" --out "$tmp/e2" --steps 1 --batch 4 --no-grid -q
exit $fails
