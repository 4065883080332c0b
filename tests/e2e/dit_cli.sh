#!/usr/bin/env bash
# DiT and Skip-DiT through the same commands as U-ViT: info (official parameter counts), train on
# the built-in Fashion-MNIST, resume, sample with ADM's ddpm/ddim and DPM-Solver, --classes lists,
# --noise, --guidance (w = s + 1), predict (learned-variance output), and their one-line errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# Official parameter counts (pos_embed included, as in the official state_dict).
for want in "dit_xl_2 675129632" "dit_s_2 32963360" "skip_dit_xl_2 712369184"; do
  set -- $want
  run "$UVIT" info --config "$1"
  grep -q "parameters    $2 " "$tmp/out" || fail "info $1: $(grep parameters "$tmp/out")"
done

# A tiny DiT and Skip-DiT: 2 blocks of width 32 on 28x28 Fashion-MNIST (patch 7, 16 tokens).
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.patch_size=7)
for cfg in fmnist_dit_tiny fmnist_skip_dit_tiny; do
  run "$UVIT" train --config $cfg "${small[@]}" --out "$tmp/$cfg" --steps 4 --batch 8 --no-grid -q
  run "$UVIT" train --out "$tmp/$cfg" --resume --steps 6 --no-grid -q
  grep -q "at step 6" "$tmp/out" || fail "$cfg resume: $(cat "$tmp/out")"
  python_rows=$("$PY" -c "import json,sys; print(sum('loss' in json.loads(l) for l in open(sys.argv[1])))" "$tmp/$cfg/log.jsonl")
  [ "$python_rows" -ge 1 ] || fail "$cfg: no loss rows in log.jsonl"
done

# Weight decay leaves the frozen tensors (DiT's pos_embed, LightningDiT's RoPE tables) alone, as
# the official optimizers never see them; the trained weights do change. 1 step + resume to 3
# equals 3 steps straight (the optimizer's trained ranges hold across the resume).
for cfg in fmnist_dit_tiny fmnist_lightningdit_tiny; do
  for n in 1 3; do
    run "$UVIT" train --config $cfg "${small[@]}" --set optimizer.weight_decay=0.5 \
      --out "$tmp/wd_${cfg}_$n" --steps $n --batch 4 --no-grid -q
  done
  "$PY" - "$tmp/wd_${cfg}_1/nnet.safetensors" "$tmp/wd_${cfg}_3/nnet.safetensors" <<'PYEOF' || fail "$cfg: weight decay"
import json, struct, sys
import numpy as np
def tensors(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], np.float32)
            for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
frozen = [k for k in a if k == "pos_embed" or k.startswith("feat_rope.")]
assert frozen, "no frozen tensors"
for k in frozen:
    assert np.array_equal(a[k], b[k]), k + " changed under weight decay"
assert not np.array_equal(a["x_embedder.proj.weight"], b["x_embedder.proj.weight"]), "no update"
print("ok: frozen", frozen)
PYEOF
  run "$UVIT" train --out "$tmp/wd_${cfg}_1" --resume --steps 3 --no-grid -q
  same_files "$tmp/wd_${cfg}_1" "$tmp/wd_${cfg}_3" "$cfg: 1 step + resume to 3"
done

R=$tmp/fmnist_dit_tiny
W=$R/nnet_ema.safetensors
S=(--config "$R" --weights "$W" -q)
# ADM's samplers and DPM-Solver on the ADM schedule, with a class list.
for s in ddpm ddim dpm-solver++; do
  run "$UVIT" sample "${S[@]}" --n 6 --classes 0,3,9 --sampler $s --steps 5 --guidance 2 \
    --npy "$tmp/$s.npy"
  "$PY" -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(6,28,28,1), a.shape" \
    "$tmp/$s.npy" || fail "$s: bad output shape"
done

# --noise: the given x_T; DDIM is deterministic, so the seed does not matter then.
"$PY" -c "import numpy as n; n.save('$tmp/xT.npy', n.random.RandomState(0).randn(4,1,28,28).astype(n.float32))"
run "$UVIT" sample "${S[@]}" --n 4 --class 2 --sampler ddim --steps 4 --noise "$tmp/xT.npy" \
  --seed 1 --npy "$tmp/a.npy"
run "$UVIT" sample "${S[@]}" --n 4 --class 2 --sampler ddim --steps 4 --noise "$tmp/xT.npy" \
  --seed 2 --npy "$tmp/b.npy"
cmp -s "$tmp/a.npy" "$tmp/b.npy" || fail "--noise with ddim depends on the seed"
run "$UVIT" sample "${S[@]}" --n 4 --class 2 --sampler ddim --steps 4 --seed 1 --npy "$tmp/c.npy"
cmp -s "$tmp/a.npy" "$tmp/c.npy" && fail "--noise was ignored"
# --guidance w equals --cfg-scale w - 1.
run "$UVIT" sample "${S[@]}" --n 3 --class 5 --sampler ddim --steps 3 --guidance 3 --npy "$tmp/g.npy"
run "$UVIT" sample "${S[@]}" --n 3 --class 5 --sampler ddim --steps 3 --cfg-scale 2 --npy "$tmp/s.npy"
cmp -s "$tmp/g.npy" "$tmp/s.npy" || fail "--guidance 3 differs from --cfg-scale 2"
# --classes i mod len: a list of one class is --class.
run "$UVIT" sample "${S[@]}" --n 3 --classes 5 --sampler ddim --steps 3 --cfg-scale 2 --npy "$tmp/l.npy"
cmp -s "$tmp/l.npy" "$tmp/s.npy" || fail "--classes 5 differs from --class 5"

# predict: eps and the learned variance, 2 C channels.
"$PY" -c "
import numpy as n
n.save('$tmp/x.npy', n.zeros((2,1,28,28), n.float32))
n.save('$tmp/t.npy', n.array([10., 500.], n.float32))
n.save('$tmp/y.npy', n.array([1, 10], n.int64))"
run "$UVIT" predict --config "$R" --weights "$W" --x "$tmp/x.npy" --t "$tmp/t.npy" \
  --y "$tmp/y.npy" --out "$tmp/eps.npy"
"$PY" -c "import numpy as n,sys; a=n.load(sys.argv[1]); assert a.shape==(2,2,28,28), a.shape" \
  "$tmp/eps.npy" || fail "predict: bad output shape"

# One-line errors.
expect_error "excludes" "$UVIT" sample "${S[@]}" --n 2 --class 1 --guidance 2 --cfg-scale 1 \
  --npy "$tmp/e.npy"
expect_error "class 12 is outside" "$UVIT" sample "${S[@]}" --n 2 --classes 1,12 \
  --npy "$tmp/e.npy"
expect_error "expected 'all' or a list" "$UVIT" sample "${S[@]}" --n 2 --classes 1,x \
  --npy "$tmp/e.npy"
expect_error "xT.npy: shape .4, 1, 28, 28., expected .2, 1, 28, 28." "$UVIT" sample "${S[@]}" \
  --n 2 --class 1 --noise "$tmp/xT.npy" --npy "$tmp/e.npy"
expect_error "--guidance" "$UVIT" sample "${S[@]}" --n 2 --class 1 --guidance 0.5 --npy "$tmp/e.npy"
expect_error "has no Skip-Cache" "$UVIT" sample "${S[@]}" --n 2 --class 1 --skip-cache 2 \
  --npy "$tmp/e.npy"
R2=$tmp/fmnist_skip_dit_tiny
expect_error "of depth 2 has no Skip-Cache" "$UVIT" sample --config "$R2" \
  --weights "$R2/nnet_ema.safetensors" -q --n 2 --class 1 --skip-cache 2 --npy "$tmp/e.npy"
expect_error "must be even for skip_dit" "$UVIT" train --config fmnist_skip_dit_tiny \
  --set nnet.depth=3 --out "$tmp/bad"
expect_error "nnet.hidden_sise: unknown key" "$UVIT" train --config fmnist_dit_tiny \
  --set nnet.hidden_sise=64 --out "$tmp/bad"
[ -e "$tmp/bad" ] && fail "a failed train left $tmp/bad behind"
exit $fails
