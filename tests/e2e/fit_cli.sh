#!/usr/bin/env bash
# fmnist_fit_tiny end to end at toy step counts (docs/fit.md): `uvit train` and resume, `uvit
# sample` at the training size and at a non-square extrapolated size with FiTv2's RoPE scaling
# (ntk-aware + decouple, the official 160x320 recipe's), `uvit predict` against the twin on a
# non-square scaled grid, and `uvit info` on the XL/2 preset; then the official options
# (docs/fit.md "Options").
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
CFG=fmnist_fit_tiny
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.adaln_lora_dim=8)

train_resume $CFG fitv2 "${small[@]}"
grep -q '"adaln_lora_dim": *8' "$tmp/run/config.json" || fail "run config lost adaln_lora_dim"

R=(--config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors" -q)
run "$UVIT" sample "${R[@]}" --n 4 --classes 0,7 --steps 6 --npy "$tmp/a.npy"

# Extrapolation: 28 x 56 pixels = 7 x 14 tokens from a 7 x 7 training grid; the w axis's RoPE base
# grows by (14/7)^(d/(d-2)), the h axis keeps its frequencies. ori_max_pe_len before custom_freqs:
# each --set is validated as it applies.
wide=(--set 'nnet.input_size=[28,56]' --set nnet.ori_max_pe_len=7 --set nnet.custom_freqs=ntk-aware
  --set nnet.decouple=true)
run "$UVIT" sample "${R[@]}" "${wide[@]}" --n 3 --class 2 --steps 4 --npy "$tmp/w.npy" \
  --out "$tmp/w_%d.png"
"$PY" -c "
import numpy as n, sys
shapes = [n.load(f).shape for f in sys.argv[1:]]
assert shapes == [(4, 28, 28, 1), (3, 28, 56, 1)], shapes
" "$tmp/a.npy" "$tmp/w.npy" || fail "sample shapes (square, then 28 x 56)"
"$PY" - "$tmp/w_0.png" <<'PYEOF' || fail "non-square PNG"
import struct, sys
b = open(sys.argv[1], "rb").read()
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (56, 28), (w, h)
PYEOF
# The network from the command line against the PyTorch twin: the official .pth state_dict, a
# non-square 2 x 6 grid with ntk-aware + decouple (fixture fit_rect_dynntk, make_fixtures.py).
predicts_as_twin "$2/fit_rect_dynntk" fit_rect_dynntk "(2, 4, 4, 12)"

# A scaling without its training length is one line naming the field.
expect_error "ori_max_pe_len" "$UVIT" sample "${R[@]}" --set nnet.custom_freqs=ntk-aware-pro2 \
  --n 1 --class 0 --npy "$tmp/x.npy"

run "$UVIT" info --config fitv2_xl_2
grep -q "671045776 in 517 tensors" "$tmp/out" || fail "fitv2_xl_2 size: $(cat "$tmp/out")"

# The official options no preset uses (docs/fit.md "Options"): training with SwiGLU modulations,
# weighted q/k LayerNorms and online RoPE (ori_max_pe_len and custom_freqs before online_rope:
# each --set is validated as it applies), then sampling with FiTv2's power-cos guidance.
opts=(--set nnet.adaln_type=swiglu --set nnet.qk_norm_weight=true --set nnet.ori_max_pe_len=7
  --set nnet.custom_freqs=ntk-aware --set nnet.online_rope=true)
run "$UVIT" train --config $CFG "${small[@]}" "${opts[@]}" --set lr_scheduler.warmup_steps=0 \
  --out "$tmp/opts" --steps 2 --batch 8 --no-grid -q
grep -q '"adaln_type": *"swiglu"' "$tmp/opts/config.json" || fail "run config lost adaln_type"
run "$UVIT" sample --config "$tmp/opts" --weights "$tmp/opts/nnet_ema.safetensors" -q --n 2 \
  --class 3 --steps 4 --guidance 1.5 --cfg-power 1 --npy "$tmp/o.npy"
# The twin's checkpoints with those options and with the norm/RoPE-on-v ones below (official
# names) predict as the twin does.
for c in fit_qkw fit_ada_swiglu fitv1_ada_swiglu fit_online fit_rope_v fit_rms fit_norm_mix \
  fitv1_norm_none; do
  predicts_as_twin "$2/$c" "$c"
done
# XL/2 with SwiGLU modulations and weighted q/k norms: the official state_dict, 663 tensors.
"$PY" -c "
import json, sys
c = json.load(open('configs/fitv2_xl_2.json'))
c['nnet'].update(adaln_type='swiglu', qk_norm_weight=True)
json.dump(c, open(sys.argv[1], 'w'))
" "$tmp/xl_opts.json" || fail "writing the XL/2 options config"
official_keys "FiTv2-XL/2 (adaln swiglu, qk_norm_weight)" fit_torch \
  'build_from_config(dict(preset("xl"), adaln_type="swiglu", qk_norm_weight=True))' 663 866181328 \
  --config "$tmp/xl_opts.json"
# online_rope where the official online path fails (custom_freqs normal) is one line.
expect_error "online_rope" "$UVIT" sample "${R[@]}" --set nnet.online_rope=true --n 1 --class 0 \
  --npy "$tmp/x.npy"

# The norm options and add_rel_pe_to_v: training with RMSNorms (over D and of q and k) and RoPE
# on v, then sampling; XL/2's state_dict with them is the official one.
nopts=(--set nnet.norm_type=w_rmsnorm --set nnet.q_norm=w_rmsnorm --set nnet.k_norm=w_rmsnorm
  --set nnet.add_rel_pe_to_v=true)
run "$UVIT" train --config $CFG "${small[@]}" "${nopts[@]}" --set lr_scheduler.warmup_steps=0 \
  --out "$tmp/norms" --steps 2 --batch 8 --no-grid -q
grep -q '"norm_type": *"w_rmsnorm"' "$tmp/norms/config.json" || fail "run config lost norm_type"
grep -q '"add_rel_pe_to_v": *true' "$tmp/norms/config.json" || fail "run config lost add_rel_pe_to_v"
run "$UVIT" sample --config "$tmp/norms" --weights "$tmp/norms/nnet_ema.safetensors" -q --n 2 \
  --class 3 --steps 4 --npy "$tmp/n.npy"
"$PY" -c "
import numpy as n, sys
a = n.load(sys.argv[1])
assert a.shape == (2, 28, 28, 1) and n.isfinite(a).all(), a.shape
" "$tmp/n.npy" || fail "sampling with the norm options"
"$PY" -c "
import json, sys
c = json.load(open('configs/fitv2_xl_2.json'))
c['nnet'].update(norm_type='w_rmsnorm', q_norm='w_rmsnorm', k_norm='w_rmsnorm', add_rel_pe_to_v=True)
json.dump(c, open(sys.argv[1], 'w'))
" "$tmp/xl_norms.json" || fail "writing the XL/2 norms config"
official_keys "FiTv2-XL/2 (w_rmsnorm norms, add_rel_pe_to_v)" fit_torch \
  'build_from_config(dict(preset("xl"), norm_type="w_rmsnorm", q_norm="w_rmsnorm", k_norm="w_rmsnorm", add_rel_pe_to_v=True))' \
  662 671135056 --config "$tmp/xl_norms.json"
# create_norm's "rmsnorm" fails officially: refused with the reason.
expect_error "fails in the official code" "$UVIT" sample "${R[@]}" --set nnet.norm_type=rmsnorm \
  --n 1 --class 0 --npy "$tmp/x.npy"
exit $fails
