#!/usr/bin/env bash
# Text-to-image pipeline, tiny: `uvit tokenize` / `uvit encode-text` with a random tiny CLIP text
# model (width 768 as the MS-COCO features need), a generated mscoco256_features folder whose
# captions are encoded with it, a few training steps of a tiny mscoco-style preset, then
# `uvit sample --prompt` (contexts from CLIP, guidance against CLIP("")), checked against
# sampling from the same contexts given as --context/--null-context.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source tests/e2e/data/lib.sh
VOCAB=data/clip/bpe_simple_vocab_16e6.txt.gz

# tokenize: the hand-checked ids of "a photo of a cat", padding, and the .npy form.
run "$UVIT" tokenize --vocab "$VOCAB" "a photo of a cat"
[ "$(cut -d' ' -f1-8 "$tmp/out")" = "49406 320 1125 539 320 2368 49407 49407" ] || fail "tokenize: $(cut -c1-60 "$tmp/out")"
[ "$(wc -w <"$tmp/out")" = 77 ] || fail "tokenize: not 77 ids"
run "$UVIT" tokenize --vocab "$VOCAB" --out "$tmp/ids.npy" -- "a photo of a cat" "" "-dash"
"$PY" -c "import numpy as np, sys; a = np.load(sys.argv[1]); assert a.dtype == np.int64 and a.shape == (3, 77), a.shape
assert list(a[0, :7]) == [49406, 320, 1125, 539, 320, 2368, 49407] and (a[1, 1:] == 49407).all()" "$tmp/ids.npy" ||
  fail "tokenize --out"

# A tiny CLIP text model: ViT-L/14's width 768 (the mscoco feature layout), one layer, fp16 weights.
echo '{"hidden_size": 768, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}' >"$tmp/clip.json"
"$PY" tests/reference/clip_torch.py weights --config "$tmp/clip.json" --dtype f16 --seed 3 --out "$tmp/clip.safetensors" ||
  fail "clip weights"
CLIP=(--clip "$tmp/clip.safetensors" --clip-config "$tmp/clip.json" --vocab "$VOCAB")

# A generated mscoco256_features folder: 4 images x 2 captions, random moments.
caps=("a red bus" "a bus on a street" "two dogs" "dogs playing" "a plate of food" "broccoli and sauce"
  "a green train" "a train is coming down the tracks")
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/caps.npy" -- "${caps[@]}" ""
"$PY" - "$tmp" <<'PYEOF' || fail "make dataset"
import os, sys
import numpy as np
t = sys.argv[1]
c = np.load(t + "/caps.npy")
assert c.shape == (9, 77, 768) and c.dtype == np.float32 and np.isfinite(c).all(), c.shape
assert np.abs(c[0] - c[1]).max() > 1e-3, "different captions gave the same context"
d = t + "/coco/train"
os.makedirs(d)
rng = np.random.default_rng(0)
for i in range(4):
    m = np.concatenate([rng.standard_normal((4, 32, 32)), np.full((4, 32, 32), -4.0)]).astype(np.float32)
    np.save(f"{d}/{i}.npy", m)
    for k in range(2):
        np.save(f"{d}/{i}_{k}.npy", c[2 * i + k])
np.save(t + "/coco/empty_context.npy", c[8])
PYEOF

# A tiny mscoco-style preset: the mscoco_uvit_small config with a small network and few steps.
SET=(--set nnet.embed_dim=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.patch_size=8
  --set sample.sample_steps=3)
run "$UVIT" train --config mscoco_uvit_small "${SET[@]}" --set train.log_interval=1 --set lr_scheduler.warmup_steps=1 \
  --data "$tmp/coco" --steps 3 --batch 4 --out "$tmp/run" -q
W=$tmp/run/nnet_ema.safetensors
[ -f "$W" ] || fail "training wrote no $W"

S=(sample --config mscoco_uvit_small "${SET[@]}" --weights "$W" --seed 5 -q)
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "a red bus" --prompt "two dogs" --latents "$tmp/z.npy"
grep -q "(3 network evaluations)" "$tmp/err" || fail "sampling: $(cat "$tmp/err")"  # 3 guided steps
printf 'a red bus\n\ntwo dogs\n' >"$tmp/prompts.txt"
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompts "$tmp/prompts.txt" --latents "$tmp/z_file.npy"
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/ctx.npy" -- "a red bus" "two dogs"
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/null.npy" -- ""
"$PY" -c "import numpy as np, sys; n = np.load(sys.argv[1]); np.save(sys.argv[2], n[0])" "$tmp/null.npy" "$tmp/null77.npy"
run "$UVIT" "${S[@]}" --n 2 --context "$tmp/ctx.npy" --null-context "$tmp/null77.npy" --latents "$tmp/z_ctx.npy"
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "a plate of food" --prompt "two dogs" --latents "$tmp/z_other.npy"
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "a red bus" --prompt "two dogs" --cfg-scale 0 --latents "$tmp/z_noguide.npy"
"$PY" - "$tmp" <<'PYEOF' || fail "latents"
import sys
import numpy as np
t = sys.argv[1]
z = np.load(t + "/z.npy")
assert z.shape == (2, 4, 32, 32) and z.dtype == np.float32 and np.isfinite(z).all(), z.shape
assert np.array_equal(z, np.load(t + "/z_file.npy")), "--prompts FILE differs from --prompt"
assert np.array_equal(z, np.load(t + "/z_ctx.npy")), "--prompt differs from --context/--null-context"
o = np.load(t + "/z_other.npy")
assert not np.array_equal(z[0], o[0]) and np.array_equal(z[1], o[1]), "prompt 0 changed: only sample 0 may change"
assert not np.array_equal(z, np.load(t + "/z_noguide.npy")), "guidance had no effect"
print("ok: t2i latents from --prompt, --prompts and --context agree; prompts and guidance matter")
PYEOF

# Bad requests: one line, exit code 1.
expect_error "give --clip W" "$UVIT" "${S[@]}" --prompt "x" --latents "$tmp/e.npy"
expect_error "not text-to-image" "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 0 --prompt "x" "${CLIP[@]}" --npy "$tmp/e.npy"
expect_error "not both" "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "x" --context "$tmp/ctx.npy" --latents "$tmp/e.npy"
expect_error "expects \\[77, 64\\]" "$UVIT" "${S[@]}" --set nnet.clip_dim=64 --prompt "x" "${CLIP[@]}" --latents "$tmp/e.npy"
expect_error "missing text-model tensor" "$UVIT" encode-text --clip "$W" --clip-config "$tmp/clip.json" --out "$tmp/e.npy" x
expect_error "invalid UTF-8" "$UVIT" tokenize --vocab "$VOCAB" $'\xff'
expect_error "file not found" "$UVIT" tokenize --vocab "$tmp/none.gz" x
[ ! -e "$tmp/e.npy" ] || fail "an output was written despite errors"
exit $fails
