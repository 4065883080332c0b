#!/usr/bin/env bash
# FiTv2 on variable-size data from the CLI (docs/fit.md "Packed batches", docs/data.md
# npy_folder): a folder of per-image .npy arrays of five sizes on fmnist_fit_tiny's 28 x 28
# canvas, trained a few steps in packed batches, resumed to the same bits as a straight run, then
# sampled at a non-square size; and the one-line errors of files that do not fit (patch, token
# limit) and of a network that cannot pack.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.adaln_lora_dim=8)
D=$tmp/lat
packed_resume fmnist_fit_tiny fitv2 "${small[@]}"

R=(--config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors" -q)
run "$UVIT" sample "${R[@]}" --set 'nnet.input_size=[16,28]' --n 3 --class 1 --steps 4 \
  --npy "$tmp/s.npy"
"$PY" -c "
import numpy as n, sys
a = n.load(sys.argv[1])
assert a.shape == (3, 16, 28, 1) and n.isfinite(a).all(), a.shape
" "$tmp/s.npy" || fail "sample 16 x 28 after packed training"

# A file that is not a multiple of the patch (4) is named; so is one over the token limit.
"$PY" -c "import numpy as n; n.save('$D/0_bad.npy', n.zeros((1, 10, 12), n.float32))"
expect_error "0_bad.npy: 10 x 12 is not a multiple of 4" "$UVIT" train --config fmnist_fit_tiny \
  "${small[@]}" "${data[@]}" --out "$tmp/bad" --steps 1 --batch 8 -q
rm "$D/0_bad.npy"
expect_error "49 tokens exceed max_tokens 30" "$UVIT" train --config fmnist_fit_tiny "${small[@]}" \
  "${data[@]}" --set dataset.max_tokens=30 --out "$tmp/bad" --steps 1 --batch 8 -q
# A sequence shorter than an item (nnet.context_size under the data's limit): the network says so.
expect_error "49 tokens, more than the 30 of a packed sequence" "$UVIT" train --config \
  fmnist_fit_tiny "${small[@]}" "${data[@]}" --set nnet.context_size=30 --out "$tmp/bad2" \
  --steps 1 --batch 8 -q
# Only FiT packs (fitv1 on the ADM objective: tests/e2e/fitv1_packed_cli.sh).
expect_error "only fitv2 and fitv1 pack them" "$UVIT" train --config fmnist_lightningdit_tiny "${data[@]}" \
  --set nnet.hidden_size=32 --set nnet.depth=2 --out "$tmp/bad" --steps 1 --batch 8 -q
exit $fails
