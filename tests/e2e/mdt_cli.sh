#!/usr/bin/env bash
# MDTv2 through the same commands as DiT (docs/mdt.md): info (the official parameter counts), the
# official checkpoint layout (a torch.save state_dict with the int64 relative_position_index
# buffers) predicting the twin's output, train fmnist_mdt_tiny (two passes a step: plain and
# masked), resume bit-identically, sample, and the one-line errors.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

for want in "mdt_xl_2 744164448 394" "mdt_s_2 39306840 188"; do
  set -- $want
  run "$UVIT" info --config "$1"
  grep -q "parameters    $2 in $3 tensors" "$tmp/out" || fail "info $1: $(grep parameters "$tmp/out")"
done

check_checkpoint "$FX" mdt_p2 "$FX/mdt_p2.pth"
check_checkpoint "$FX" mdt_odd_nosigma "$FX/mdt_odd_nosigma.pth"
# A wrong index (another grid's or a corrupted one) is refused, naming the tensor.
relative_index_checks mdt_p2 de_blocks.0.attn.rel_pos_bias.relative_position_index \
  sideblocks.0.attn.rel_pos_bias.relative_position_index

# Train a few steps (both passes), resume to the same bits as a straight run, sample.
small=(--set nnet.hidden_size=32 --set nnet.depth=4 --set nnet.num_heads=2 --set nnet.patch_size=7)
R=$tmp/mdt
run "$UVIT" train --config fmnist_mdt_tiny "${small[@]}" --out "$R" --steps 2 --batch 4 --no-grid -q
run "$UVIT" train --out "$R" --resume --steps 4 --no-grid -q
grep -q "at step 4" "$tmp/out" || fail "resume: $(cat "$tmp/out")"
run "$UVIT" train --config fmnist_mdt_tiny "${small[@]}" --out "$tmp/straight" --steps 4 --batch 4 \
  --no-grid -q
same_files "$R" "$tmp/straight" "mdt: 2 steps + resume to 4"
# Without mask_ratio a step is the plain pass alone: another loss, mask_token untouched.
run "$UVIT" train --config fmnist_mdt_tiny "${small[@]}" --set nnet.mask_ratio=null \
  --out "$tmp/nomask" --steps 2 --batch 4 --no-grid -q
"$PY" - "$R/log.jsonl" "$tmp/nomask/nnet.safetensors" <<'PYEOF' || fail "mdt: training log / mask_token"
import json, struct, sys
import numpy as np
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
assert rows and all(np.isfinite(r["loss"]) for r in rows), rows
b = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
o = h["mask_token"]["data_offsets"]
assert not np.frombuffer(b[8 + n + o[0]:8 + n + o[1]], np.float32).any(), "frozen mask_token changed"
print("ok: losses", [r["loss"] for r in rows])
PYEOF
run "$UVIT" sample --config "$R" --weights "$R/nnet_ema.safetensors" -q --n 4 --classes 1,7 \
  --sampler ddim --steps 4 --guidance 2 --npy "$tmp/s.npy"
"$PY" -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(4,28,28,1), a.shape" \
  "$tmp/s.npy" || fail "sample: bad output shape"

# Bad configs: one line naming the field.
bad=(--out "$tmp/bad" --steps 1 --batch 2 --no-grid -q)
expect_error "nnet.mask_ratio must be >= 0 and keep a token" \
  "$UVIT" train --config fmnist_mdt_tiny --set nnet.mask_ratio=0.9 "${bad[@]}"
expect_error "nnet.decode_layer" \
  "$UVIT" train --config fmnist_mdt_tiny --set nnet.decode_layer=9 "${bad[@]}"
expect_error "nnet.skip: unknown key" "$UVIT" train --config fmnist_mdt_tiny --set nnet.skip=1 "${bad[@]}"
exit $fails
