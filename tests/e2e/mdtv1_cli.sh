#!/usr/bin/env bash
# MDTv1 (docs/mdt.md, "MDTv1"): `uvit info --json` of mdtv1_xl_2 against the twin's state_dict of the
# mdtv1 branch's MDT-XL/2 (362 tensors), the fixture's official-layout .pth predicting the twin's
# output, fmnist_mdtv1_tiny trained (plain and masked passes) and resumed bit-identically, ADM
# sampling with power-cos guidance, and the missing decode_layer as a one-line error.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

official_keys "MDT-XL/2 (v1)" mdt_torch 'build_from_config(preset("xl", 2, name="mdtv1"))' \
  362 701678688 --config mdtv1_xl_2

# The twin's real state_dict (int64 index buffers) converted and predicting its output.
check_checkpoint "$FX" mdtv1_p2 "$FX/mdtv1_p2.pth"

small=(--set nnet.hidden_size=32 --set nnet.depth=4 --set nnet.num_heads=2 --set nnet.patch_size=7)
R=$tmp/mdt
run "$UVIT" train --config fmnist_mdtv1_tiny "${small[@]}" --out "$R" --steps 2 --batch 4 --no-grid -q
run "$UVIT" train --out "$R" --resume --steps 4 --no-grid -q
grep -q "at step 4" "$tmp/out" || fail "resume: $(cat "$tmp/out")"
run "$UVIT" train --config fmnist_mdtv1_tiny "${small[@]}" --out "$tmp/straight" --steps 4 \
  --batch 4 --no-grid -q
same_files "$R" "$tmp/straight" "mdtv1: 2 steps + resume to 4"
grep -q '"name": *"mdtv1"' "$R/config.json" || fail "run config lost the network name"
run "$UVIT" sample --config "$R" --weights "$R/nnet_ema.safetensors" -q --n 4 --classes 1,7 \
  --sampler ddpm --steps 6 --guidance 3.8 --cfg-power 4 --npy "$tmp/s.npy"
"$PY" -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(4,28,28,1), a.shape" \
  "$tmp/s.npy" || fail "sample: bad output shape"

expect_error "decode_layer is required" "$UVIT" train --config fmnist_mdtv1_tiny \
  --set nnet.decode_layer=null --out "$tmp/e" --steps 1 --batch 4 --no-grid -q
exit $fails
