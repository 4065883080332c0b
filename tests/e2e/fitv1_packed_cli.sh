#!/usr/bin/env bash
# FiTv1 on variable-size data from the CLI (docs/fit.md "FiTv1", "Packed batches"): fmnist_fitv1_tiny
# on the ADM objective's masked hybrid loss over a folder of .npy arrays of six sizes on the 28 x 28
# canvas, 3 steps + resume to 5 byte-identical to 5 straight steps; then ADM's ancestral sampler
# and DDIM under guidance at a non-square size.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2)
packed_resume fmnist_fitv1_tiny fitv1 "${small[@]}"

R=(--config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors" -q --set 'nnet.input_size=[16,28]')
run "$UVIT" sample "${R[@]}" --n 3 --classes 0,2 --sampler ddpm --steps 6 --guidance 1.5 --seed 2 \
  --npy "$tmp/s.npy"
run "$UVIT" sample "${R[@]}" --n 2 --class 1 --sampler ddim --steps 4 --npy "$tmp/d.npy"
"$PY" -c "
import numpy as n, sys
a, b = n.load(sys.argv[1]), n.load(sys.argv[2])
assert a.shape == (3, 16, 28, 1) and b.shape == (2, 16, 28, 1), (a.shape, b.shape)
assert n.isfinite(a).all() and n.isfinite(b).all()
" "$tmp/s.npy" "$tmp/d.npy" || fail "ADM sampling at 16 x 28 after packed training"
exit $fails
