# A tiny text-to-image model for the t2i and serve tests (sourced after lib.sh, with $UVIT, $PY and $tmp
# set): a random one-layer CLIP text model of width 768, a generated mscoco256_features folder whose
# captions it encodes, 3 training steps of a small mscoco_uvit_small and a tiny random KL
# autoencoder to decode its 32x32x4 latents to 256x256. Sets T2I_CONFIG (the preset and its --set
# overrides) and T2I_MODEL (--weights, --autoencoder, --clip and their configs) as arrays.
T2I=$tmp/t2i
mkdir -p "$T2I/coco/train"
echo '{"hidden_size": 768, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}' >"$T2I/clip.json"
"$PY" tests/reference/clip_torch.py weights --config "$T2I/clip.json" --dtype f16 --seed 3 \
  --out "$T2I/clip.safetensors" >/dev/null || fail "tiny t2i: clip weights"
CLIP=(--clip "$T2I/clip.safetensors" --clip-config "$T2I/clip.json" --vocab data/clip/bpe_simple_vocab_16e6.txt.gz)
run "$UVIT" encode-text "${CLIP[@]}" --out "$T2I/caps.npy" -- "a red bus" "a bus on a street" "two dogs" \
  "dogs playing" "a plate of food" "broccoli and sauce" "a green train" "a train on the tracks" ""
"$PY" - "$T2I" <<'PYEOF' || fail "tiny t2i: dataset"
import sys
import numpy as np
t = sys.argv[1]
c = np.load(t + "/caps.npy")
assert c.shape == (9, 77, 768) and c.dtype == np.float32 and np.isfinite(c).all(), c.shape
assert np.abs(c[0] - c[1]).max() > 1e-3, "different captions gave the same context"
rng = np.random.default_rng(0)
for i in range(4):
    m = np.concatenate([rng.standard_normal((4, 32, 32)), np.full((4, 32, 32), -4.0)]).astype(np.float32)
    np.save(f"{t}/coco/train/{i}.npy", m)
    for k in range(2):
        np.save(f"{t}/coco/train/{i}_{k}.npy", c[2 * i + k])
np.save(t + "/coco/empty_context.npy", c[8])
PYEOF
T2I_CONFIG=(--config mscoco_uvit_small --set nnet.embed_dim=32 --set nnet.depth=2 --set nnet.num_heads=2
  --set nnet.patch_size=8 --set sample.sample_steps=3)
run "$UVIT" train "${T2I_CONFIG[@]}" --set lr_scheduler.warmup_steps=1 --data "$T2I/coco" --steps 3 \
  --batch 4 --out "$T2I/run" -q
tiny_kl_f8 "$T2I/ae.json" 0.23010
"$PY" tests/reference/autoencoder_torch.py save --config "$T2I/ae.json" --out "$T2I/ae.pth" --seed 5 >/dev/null ||
  fail "tiny t2i: autoencoder"
T2I_MODEL=(--weights "$T2I/run/nnet_ema.safetensors" --autoencoder "$T2I/ae.pth"
  --autoencoder-config "$T2I/ae.json" "${CLIP[@]}")
