#!/usr/bin/env bash
# MDT's options through the CLI (docs/mdt_diffusion.md): a tiny DiT trained with Adan and min-SNR
# weighting set by --set, resumed bit-identically; sampling with --cfg-power (0 = the constant
# path, bit for bit; 4 differs; the preset's sample.cfg_power as the default; PNG metadata); the
# one-line errors of bad values.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

small=(--config fmnist_dit_tiny --set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2
  --set nnet.patch_size=7 --batch 8 --no-grid -q)
mdt=(--set optimizer.name=adan --set "optimizer.betas=[0.98,0.92,0.99]" --set optimizer.lr=3e-4
  --set optimizer.weight_decay=0 --set optimizer.max_grad_norm=1 --set train.min_snr_gamma=5)
run "$UVIT" train "${small[@]}" "${mdt[@]}" --out "$tmp/A" --steps 4
run "$UVIT" train "${small[@]}" "${mdt[@]}" --out "$tmp/B" --steps 2
run "$UVIT" train --out "$tmp/B" --resume --steps 4 --no-grid -q
same_files "$tmp/A" "$tmp/B" "adan + min-SNR: 2 steps + resume to 4"
"$PY" - "$tmp/A" <<'PYEOF' || fail "train state / config of the Adan run"
import json, struct, sys
d = sys.argv[1]
with open(d + "/train_state.safetensors", "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    head = json.loads(f.read(n))
meta = head.pop("__metadata__")
want = ["adan.exp_avg", "adan.exp_avg_diff", "adan.exp_avg_sq", "adan.pre_grad"]
assert sorted(head) == want, sorted(head)
assert meta["optimizer"] == "adan", meta
cfg = json.load(open(d + "/config.json"))
assert cfg["train"]["min_snr_gamma"] == 5 and cfg["optimizer"]["max_grad_norm"] == 1, cfg
losses = [json.loads(l)["loss"] for l in open(d + "/log.jsonl") if '"loss"' in l]
assert losses and all(l == l and abs(l) < 1e3 for l in losses), losses
print("ok: adan state, config and", len(losses), "finite loss rows")
PYEOF

# Four training steps leave adaLN-Zero's label path near zero (guidance would change nothing that
# survives uint8): sample from the weights plus noise.
W=$tmp/noisy.safetensors
"$PY" - "$tmp/A/nnet_ema.safetensors" "$W" <<'PYEOF' || fail "noisy weights"
import json, struct, sys
import numpy as np
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
head = json.loads(data[8:8 + n])
body = bytearray(data[8 + n:])
rng = np.random.default_rng(0)
for k, v in head.items():
    if k != "__metadata__" and v["dtype"] == "F32":
        b, e = v["data_offsets"]
        a = np.frombuffer(bytes(body[b:e]), np.float32)
        body[b:e] = (a + 0.1 * rng.standard_normal(a.shape)).astype(np.float32).tobytes()
open(sys.argv[2], "wb").write(data[:8 + n] + bytes(body))
PYEOF
S=(--config "$tmp/A" --weights "$W" -q --class 3 --sampler ddpm --steps 6 --guidance 4 --seed 3)
run "$UVIT" sample "${S[@]}" --n 4 --npy "$tmp/plain.npy"
run "$UVIT" sample "${S[@]}" --n 4 --cfg-power 0 --npy "$tmp/p0.npy"
run "$UVIT" sample "${S[@]}" --n 4 --cfg-power 4 --npy "$tmp/p4.npy"
run "$UVIT" sample "${S[@]}" --n 4 --set sample.cfg_power=4 --npy "$tmp/preset4.npy"
cmp -s "$tmp/plain.npy" "$tmp/p0.npy" || fail "--cfg-power 0 differs from constant guidance"
cmp -s "$tmp/plain.npy" "$tmp/p4.npy" && fail "--cfg-power 4 was ignored"
cmp -s "$tmp/p4.npy" "$tmp/preset4.npy" || fail "sample.cfg_power 4 differs from --cfg-power 4"
run "$UVIT" sample "${S[@]}" --cfg-power 4 --n 1 -o "$tmp/p4.png"
"$PY" -c "import sys; b=open(sys.argv[1],'rb').read(); assert b'cfg_power' in b" "$tmp/p4.png" ||
  fail "the PNG metadata does not record cfg_power"

expect_error "--cfg-power" "$UVIT" sample "${S[@]}" --cfg-power -1 --npy "$tmp/x.npy"
expect_error "sample.cfg_power must be a finite number >= 0" \
  "$UVIT" sample "${S[@]}" --set sample.cfg_power=-2 --npy "$tmp/x.npy"
expect_error "beta3\] for adan" \
  "$UVIT" train "${small[@]}" --set optimizer.name=adan --out "$tmp/C" --steps 1
expect_error "optimizer.name \"sgd\" is not \"adamw\" or \"adan\"" \
  "$UVIT" train "${small[@]}" --set optimizer.name=sgd --out "$tmp/C" --steps 1
expect_error "optimizer.eps must be positive" \
  "$UVIT" train "${small[@]}" --set optimizer.eps=0 --out "$tmp/C" --steps 1
expect_error "train.min_snr_gamma must be positive" \
  "$UVIT" train "${small[@]}" --set train.min_snr_gamma=0 --out "$tmp/C" --steps 1
expect_error "train.min_snr_gamma weights an eps-prediction loss" \
  "$UVIT" train --config fmnist_lightningdit_tiny --set train.min_snr_gamma=5 --out "$tmp/C" --steps 1 -q
expect_error "Adan clips with optimizer.max_grad_norm" \
  "$UVIT" train "${small[@]}" "${mdt[@]}" --set grad_clip=1 --out "$tmp/C" --steps 1
expect_error "holds no adamw state" \
  "$UVIT" train --out "$tmp/B" --resume --steps 5 --set optimizer.name=adamw \
  --set "optimizer.betas=[0.9,0.999]" --set optimizer.max_grad_norm=0 --no-grid -q
expect_error "are Adan options" \
  "$UVIT" train "${small[@]}" --set optimizer.max_grad_norm=1 --out "$tmp/C" --steps 1
exit $fails
