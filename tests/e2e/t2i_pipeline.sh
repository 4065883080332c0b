#!/usr/bin/env bash
# Text-to-image pipeline, tiny: `uvit tokenize` / `uvit encode-text` with a random tiny CLIP text
# model (width 768 as the MS-COCO features need), a generated mscoco256_features folder whose
# captions are encoded with it, a few training steps of a tiny mscoco-style preset, then
# `uvit sample --prompt` (contexts from CLIP, guidance against CLIP("")), checked against
# sampling from the same contexts given as --context/--null-context.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
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

# A tiny CLIP text model (ViT-L/14's width 768, one layer, fp16 weights), a generated
# mscoco256_features folder whose captions it encodes, 3 training steps of a tiny
# mscoco-style preset, and a tiny autoencoder (tests/e2e/data/tiny_t2i.sh).
source tests/e2e/data/tiny_t2i.sh
W=$T2I/run/nnet_ema.safetensors
[ -f "$W" ] || fail "training wrote no $W"

S=(sample "${T2I_CONFIG[@]}" --weights "$W" --seed 5)  # not -q: the summary is read
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "a red bus" --prompt "two dogs" --latents "$tmp/z.npy"
grep -q "(3 network evaluations)" "$tmp/err" || fail "sampling: $(cat "$tmp/err")"  # 3 guided steps
printf 'a red bus\n\ntwo dogs\n' >"$tmp/prompts.txt"
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompts "$tmp/prompts.txt" --latents "$tmp/z_file.npy"
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/ctx.npy" -- "a red bus" "two dogs"
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/null.npy" -- ""
"$PY" -c "import numpy as np, sys; n = np.load(sys.argv[1]); np.save(sys.argv[2], n[0])" "$tmp/null.npy" "$tmp/null77.npy"
run "$UVIT" "${S[@]}" --n 2 --context "$tmp/ctx.npy" --null-context "$tmp/null77.npy" --latents "$tmp/z_ctx.npy"
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "a plate of food" --prompt "two dogs" --latents "$tmp/z_other.npy"
# --negative-prompt: CLIP(negative) as the unconditional context, as --null-context of its encoding.
run "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "a red bus" --prompt "two dogs" --negative-prompt "broccoli" --latents "$tmp/z_neg.npy"
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/neg.npy" -- "broccoli"
"$PY" -c "import numpy as np, sys; n = np.load(sys.argv[1]); np.save(sys.argv[2], n[0])" "$tmp/neg.npy" "$tmp/neg77.npy"
run "$UVIT" "${S[@]}" --n 2 --context "$tmp/ctx.npy" --null-context "$tmp/neg77.npy" --latents "$tmp/z_negctx.npy"
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
neg = np.load(t + "/z_neg.npy")
assert np.array_equal(neg, np.load(t + "/z_negctx.npy")), "--negative-prompt differs from --null-context of its encoding"
assert not np.array_equal(neg, z), "--negative-prompt had no effect"
print("ok: t2i latents from --prompt, --prompts and --context agree; prompts and guidance matter")
PYEOF

# Bad requests: one line, exit code 1.
expect_error "give --clip W" "$UVIT" "${S[@]}" --prompt "x" --latents "$tmp/e.npy"
expect_error "not text-to-image" "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 0 --prompt "x" "${CLIP[@]}" --npy "$tmp/e.npy"
expect_error "not both" "$UVIT" "${S[@]}" "${CLIP[@]}" --prompt "x" --context "$tmp/ctx.npy" --latents "$tmp/e.npy"
expect_error "expects \\[77, 64\\]" "$UVIT" "${S[@]}" --set nnet.clip_dim=64 --prompt "x" "${CLIP[@]}" --latents "$tmp/e.npy"
expect_error "missing text-model tensor" "$UVIT" encode-text --clip "$W" --clip-config "$T2I/clip.json" --out "$tmp/e.npy" x
expect_error "invalid UTF-8" "$UVIT" tokenize --vocab "$VOCAB" $'\xff'
expect_error "file not found" "$UVIT" tokenize --vocab "$tmp/none.gz" x
[ ! -e "$tmp/e.npy" ] || fail "an output was written despite errors"
# `uvit extract-features --captions`: MS-COCO images + captions JSON -> moments, per-caption CLIP
# contexts equal to `uvit encode-text` of the same captions, and empty_context.npy = CLIP("").
"$PY" - "$tmp" <<'PYEOF' || fail "make coco images"
import json, os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
os.makedirs(t + "/coco_img")
rs = np.random.RandomState(1)
images = []
for iid, (w, h) in [(42, (320, 240)), (7, (256, 300))]:
    name = "COCO_%012d.jpg" % iid
    Image.fromarray(rs.randint(0, 255, size=(h, w, 3)).astype(np.uint8)).save(t + "/coco_img/" + name)
    images.append({"id": iid, "file_name": name})
anns = [{"image_id": 42, "id": 1, "caption": "two dogs"}, {"image_id": 7, "id": 2, "caption": "a red bus"},
        {"image_id": 42, "id": 3, "caption": "dogs playing"}]
json.dump({"images": images, "annotations": anns}, open(t + "/caps.json", "w"))
PYEOF
run "$UVIT" extract-features --captions "$tmp/caps.json" --data "$tmp/coco_img" --weights "$T2I/ae.pth" \
  --config "$T2I/ae.json" "${CLIP[@]}" --out "$tmp/coco_x" -q
run "$UVIT" encode-text "${CLIP[@]}" --out "$tmp/ref_caps.npy" -- "a red bus" "two dogs" "dogs playing" ""
"$PY" - "$tmp" <<'PYEOF' || fail "extract-features --captions layout"
import os, sys
import numpy as np
t = sys.argv[1]
d = t + "/coco_x/train"
ref = np.load(t + "/ref_caps.npy")
# Sorted image ids: 7 (index 0: "a red bus"), 42 (index 1: "two dogs", "dogs playing").
m0 = np.load(d + "/0.npy")
assert m0.shape == (8, 32, 32) and np.isfinite(m0).all(), m0.shape
for name, r in [("0_0", 0), ("1_0", 1), ("1_1", 2)]:
    c = np.load(d + "/" + name + ".npy")
    assert c.shape == (77, 768), (name, c.shape)
    assert np.abs(c - ref[r]).max() < 1e-5, name
e = np.load(t + "/coco_x/empty_context.npy")
assert np.abs(e.reshape(77, 768) - ref[3]).max() < 1e-5
assert not os.path.exists(d + "/0_1.npy")
PYEOF

exit $fails
