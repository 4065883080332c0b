#!/usr/bin/env bash
# `uvit clip-score` and `uvit eval` on a text-to-image preset: CLIPScore with both CLIP towers
# (random weights of a small config of the ViT-L/14 family in the HF CLIPModel layout) equals the
# PyTorch twin's (tests/reference/clip_vision_torch.py, PIL preprocessing, float64), for a folder,
# an .npz, .safetensors and .bin weights; `eval --max-chunks` stops and resumes to the same bytes
# and numbers as an uninterrupted run; gray presets' sample batches are RGB; one-line errors.
set -uo pipefail
UVIT=$1 FIX=${2:-}
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_INCEPTION
VOCAB=data/clip/bpe_simple_vocab_16e6.txt.gz
TWIN=tests/reference/clip_vision_torch.py
"$PY" -c "import PIL" 2>/dev/null || { echo "skip: /usr/bin/python3 has no PIL (python3-pil)"; exit 0; }

fx=$tmp/fx
"$PY" "$TWIN" fixtures --vocab "$VOCAB" --out "$fx" >/dev/null || fail "twin fixtures"
CLIP=(--clip "$fx/clip_small.safetensors" --clip-config "$fx/clip_small.json" --vocab "$VOCAB")
close() {  # close GOT WANT: relative difference <= 1e-4
  "$PY" -c "import sys; g, w = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(g - w) > 1e-4 * abs(w))" "$1" "$2"
}

# --- clip-score: a folder of 6 images of different sizes, one prompt each -----------------------
run "$UVIT" clip-score --images "$fx/images" --prompts "$fx/prompts.txt" "${CLIP[@]}" --json "$tmp/cs.json" -q
got=$(sed -n 's/^CLIPScore: //p' "$tmp/out")
want=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['mean'])" "$fx/clip_score.json")
close "$got" "$want" && echo "ok: clip-score of a folder $got = twin $want" || fail "clip-score $got != twin $want"
"$PY" - "$tmp/cs.json" "$fx/clip_scores.npy" <<'PYEOF' && echo "ok: --json per-image scores = twin" || fail "clip-score --json"
import json, sys, numpy as np
j = json.load(open(sys.argv[1])); w = np.load(sys.argv[2])
assert j["n"] == 6 and np.allclose(j["per_image"], w, rtol=1e-4, atol=1e-4), (j["per_image"], w)
assert repr(float(j["clip_score"])) == open(sys.argv[1]).read().split('"clip_score": ')[1].split(",")[0]
PYEOF
# --repeat (bench/bench_clip_vision.sh): the score line, then one JSON line of timings.
run "$UVIT" clip-score --images "$fx/images" --prompts "$fx/prompts.txt" "${CLIP[@]}" --repeat 2 -q
"$PY" -c "import json, sys; l = open(sys.argv[1]).read().splitlines(); assert l[0] == 'CLIPScore: $got', l
j = json.loads(l[1]); assert j['images'] == 6 and j['iters'] == 2 and j['img_per_s'] > 0, j" "$tmp/out" \
  && echo "ok: clip-score --repeat prints its timing JSON" || fail "clip-score --repeat"
# An .npz (arr_0) and the .bin weights; fewer prompts than images: image i gets prompt i mod P.
"$PY" -c "
import numpy as np, sys
a = np.load(sys.argv[1] + '/image_0.npy'); b = np.load(sys.argv[1] + '/image_2.npy')
b = np.array(__import__('PIL.Image', fromlist=['x']).fromarray(b).resize((80, 64)))
np.savez(sys.argv[2], arr_0=np.stack([a, b, a]))
open(sys.argv[3], 'w').write('a photo of a cat\n\ntwo dogs playing in the snow\n')" "$fx" "$tmp/im.npz" "$tmp/p2.txt"
run "$UVIT" clip-score --images "$tmp/im.npz" --prompts "$tmp/p2.txt" --clip "$fx/clip_small.bin" \
  --clip-config "$fx/clip_small.json" --vocab "$VOCAB" --batch 2
grep -q "3 images (image i gets prompt i mod 2)" "$tmp/err" || fail "clip-score: no prompt-cycling note"
got=$(sed -n 's/^CLIPScore: //p' "$tmp/out")
want=$("$PY" "$TWIN" score --weights "$fx/clip_small.safetensors" --config "$fx/clip_small.json" --vocab "$VOCAB" \
  --images "$tmp/im.npz" --prompts "$tmp/p2.txt")
close "$got" "$want" && echo "ok: clip-score of an .npz with .bin weights $got = twin $want" || fail "npz clip-score $got != $want"

# --- eval on a tiny pixel-space text-to-image U-ViT: CLIPScore of its samples = the twin's ------
inception_weights IW "$FIX"
"$PY" tests/e2e/data/tiny_config.py "$tmp/t2i.json" 'nnet={"name": "uvit_t2i", "img_size": 16,
  "patch_size": 4, "in_chans": 3, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
  "qkv_bias": false, "qk_scale": null, "mlp_time_embed": false, "clip_dim": 64, "num_clip_token": 77,
  "use_checkpoint": false, "conv": false, "skip": true}'
"$PY" - "$tmp/t2i.json" "$tmp/t2i.safetensors" <<'PYEOF' || fail "t2i weights"
import json, sys, torch
sys.path.insert(0, "tests/reference")
import clip_torch, uvit_torch
torch.manual_seed(0)
net = uvit_torch.build_from_config(json.load(open(sys.argv[1]))["nnet"])
with torch.no_grad():
    for p in net.parameters():
        p.add_(0.02 * torch.randn(p.shape))
clip_torch.write_safetensors(sys.argv[2], {k: v.numpy() for k, v in net.state_dict().items()})
PYEOF
run "$UVIT" fid-stats "$fx/images" --out "$tmp/ref.npz" --inception "$IW" -q
E=(eval --config "$tmp/t2i.json" --weights "$tmp/t2i.safetensors" "${CLIP[@]}" --prompts "$fx/prompts.txt"
   --n 7 --chunk 3 --steps 2 --inception "$IW" --ref "$tmp/ref.npz" --metrics fid)
run "$UVIT" "${E[@]}" --out "$tmp/full.npz" --json "$tmp/full.json" -q
[ "$(sed 's/: .*//' "$tmp/out" | tr '\n' ,)" = "FID,sFID,CLIPScore," ] && echo "ok: eval t2i: $(tr '\n' ' ' <"$tmp/out")" \
  || { fail "eval t2i output"; cat "$tmp/out"; }
got=$(sed -n 's/^CLIPScore: //p' "$tmp/out")
want=$("$PY" "$TWIN" score --weights "$fx/clip_small.safetensors" --config "$fx/clip_small.json" --vocab "$VOCAB" \
  --images "$tmp/full.npz" --prompts "$fx/prompts.txt")
close "$got" "$want" && echo "ok: eval CLIPScore $got = twin on its samples $want" || fail "eval CLIPScore $got != $want"
# Interrupted and resumed with --max-chunks: the same samples (bit for bit) and the same numbers.
run "$UVIT" "${E[@]}" --out "$tmp/part.npz" --json "$tmp/part.json" --max-chunks 1
grep -q "stopped after 1 new chunks" "$tmp/err" && [ ! -e "$tmp/part.npz" ] || fail "--max-chunks 1 did not stop"
[ "$(ls "$tmp/part.npz.parts"/chunk_*.npz | wc -l)" = 1 ] || fail "--max-chunks 1: expected 1 chunk"
run "$UVIT" "${E[@]}" --out "$tmp/part.npz" --json "$tmp/part.json" --max-chunks 1
run "$UVIT" "${E[@]}" --out "$tmp/part.npz" --json "$tmp/part.json"
grep -q "(6 resumed" "$tmp/err" || { fail "eval did not resume 6 samples"; cat "$tmp/err"; }
"$PY" - "$tmp" <<'PYEOF' && echo "ok: stopped + resumed eval = uninterrupted eval, bit for bit" || fail "resume differs"
import json, sys, numpy as np
t = sys.argv[1]
a, b = np.load(t + "/full.npz")["arr_0"], np.load(t + "/part.npz")["arr_0"]
assert a.shape == (7, 16, 16, 3) and np.array_equal(a, b)
ja, jb = json.load(open(t + "/full.json")), json.load(open(t + "/part.json"))
for k in ("fid", "sfid", "clip_score"):
    assert ja[k] == jb[k], (k, ja[k], jb[k])
PYEOF
# A prompts path recorded unnormalised (an older uvit's `--prompts ./p.txt`: `/d/./p.txt`) is the
# same setting as `/d/p.txt`: the chunks resume (they were refused as another run's).
"$PY" - "$tmp/part.npz.parts/manifest.json" <<'PYEOF' || fail "manifest edit"
import json, os, sys
m = json.load(open(sys.argv[1]))
m["prompts"] = os.path.join(os.path.dirname(m["prompts"]), ".", os.path.basename(m["prompts"]))
json.dump(m, open(sys.argv[1], "w"))
PYEOF
run "$UVIT" "${E[@]}" --out "$tmp/part.npz" --json "$tmp/part.json"
grep -q "(7 resumed" "$tmp/err" && grep -q "\"prompts\": \"$fx/prompts.txt\"" "$tmp/part.npz.parts/manifest.json" &&
  echo "ok: a prompts path recorded with ./ resumes" || fail "prompts ./: $(cat "$tmp/err")"

# --- the prompts and the CLIP recorded by content too (docs/evaluation.md) -----------------------
# Both moved to another folder under other names: the same content, so the chunks resume.
mv_=$tmp/moved m=$tmp/part.npz.parts/manifest.json
mkdir -p "$mv_" && cp "$fx/prompts.txt" "$mv_/p.txt" && cp "$fx/clip_small.safetensors" "$mv_/c.safetensors"
M=(eval --config "$tmp/t2i.json" --weights "$tmp/t2i.safetensors" --clip "$mv_/c.safetensors"
   --clip-config "$fx/clip_small.json" --vocab "$VOCAB" --prompts "$mv_/p.txt" --n 7 --chunk 3 --steps 2
   --inception "$IW" --ref "$tmp/ref.npz" --metrics fid)
run "$UVIT" "${M[@]}" --out "$tmp/part.npz"
grep -q "(7 resumed" "$tmp/err" && grep -q "same file at another path" "$tmp/err" &&
  grep -q "\"prompts\": \"$mv_/p.txt\"" "$m" && grep -q "\"clip\": \"$mv_/c.safetensors\"" "$m" &&
  echo "ok: prompts and CLIP moved: resumed, the manifest names the new paths" ||
  fail "moved prompts/CLIP: $(cat "$tmp/err")"
# The prompts file edited in place (one word; as many lines): other prompts, refused by name.
"$PY" -c "
import sys; p = sys.argv[1]; l = open(p).read().split('\n'); l[0] += ' again'; open(p, 'w').write('\n'.join(l))" "$mv_/p.txt"
expect_error "holds chunks of a different run (prompts_sha256 " "$UVIT" "${M[@]}" --out "$tmp/part.npz"
cp "$fx/prompts.txt" "$mv_/p.txt"
# A manifest without the two SHA-256s (uvit before 2026-12-07): taken as of these files when
# neither changed since it was written, and completed; refused when the prompts file is newer.
unsha() {
  "$PY" -c "
import json, sys; m = json.load(open(sys.argv[1])); del m['clip_sha256'], m['prompts_sha256']
json.dump(m, open(sys.argv[1], 'w'))" "$m" || fail "manifest edit"
}
unsha
run "$UVIT" "${M[@]}" --out "$tmp/part.npz"
grep -q "(7 resumed" "$tmp/err" && grep -q "predates the record of clip_sha256 .*, prompts_sha256 " "$tmp/err" &&
  grep -q '"prompts_sha256": "' "$m" && echo "ok: a manifest without the SHA-256s is completed" ||
  fail "older manifest: $(cat "$tmp/err")"
unsha
touch -d "@$(($(stat -c %Y "$m") + 10))" "$mv_/p.txt"
expect_error "does not record clip_sha256, prompts_sha256" "$UVIT" "${M[@]}" --out "$tmp/part.npz"
# The prompts file replaced between its read and its hash (UVIT_TEST_HASH_PAUSE holds eval at its
# first hash, the weights'): refused, not recorded as the new file's.
rm -rf "$tmp/race.npz.parts" "$tmp/pause"
UVIT_TEST_HASH_PAUSE=$tmp/pause "$UVIT" "${M[@]}" --out "$tmp/race.npz" >"$tmp/out" 2>"$tmp/err" &
p=$! end=$((SECONDS + 300))
while [ ! -e "$tmp/pause" ] && kill -0 $p 2>/dev/null && ((SECONDS < end)); do sleep 0.05; done
printf 'a photo of a cat\n' >"$mv_/p2.txt" && mv "$mv_/p2.txt" "$mv_/p.txt" && rm -f "$tmp/pause"
wait $p; rc=$?
[ $rc -eq 1 ] && grep -q "^uvit: error: $mv_/p.txt changed while it was read" "$tmp/err" &&
  [ ! -e "$tmp/race.npz.parts/manifest.json" ] && echo "ok: prompts replaced before their hash: refused" ||
  fail "prompts replaced before their hash (rc=$rc): $(cat "$tmp/err")"

# --- gray presets write RGB sample batches (the ADM evaluator's [N, H, W, 3]) -------------------
"$PY" tests/e2e/data/tiny_config.py "$tmp/gray.json" 'nnet.num_classes=0' 'train.mode="uncond"' \
  'dataset.cfg=false' 'sample.cfg=false'
run "$UVIT" train --config "$tmp/gray.json" --out "$tmp/run" --steps 0 -q
GW=$(ls "$tmp"/run/*.safetensors | head -1)
run "$UVIT" eval --config "$tmp/gray.json" --weights "$GW" --n 3 --steps 2 --inception "$IW" --ref "$tmp/ref.npz" \
  --metrics fid --out "$tmp/gray.npz" -q
"$PY" -c "
import numpy as np, sys
a = np.load(sys.argv[1])['arr_0']
assert a.shape == (3, 28, 28, 3) and a.dtype == np.uint8, a.shape
assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()" "$tmp/gray.npz" \
  && echo "ok: a gray preset's samples batch is uint8 [N, 28, 28, 3]" || fail "gray samples batch"

# --- bad requests: one line, exit 1 --------------------------------------------------------------
"$PY" -c "import json, sys; json.dump(json.load(open(sys.argv[1]))['text_config'], open(sys.argv[2], 'w'))" \
  "$fx/clip_small.json" "$tmp/text_small.json"
"$PY" tests/reference/clip_torch.py weights --config "$tmp/text_small.json" --out "$tmp/text_only.safetensors"
expect_error "missing vision-model tensor vision_model" "$UVIT" clip-score --images "$fx/images" \
  --prompts "$fx/prompts.txt" --clip "$tmp/text_only.safetensors" --clip-config "$fx/clip_small.json" --vocab "$VOCAB"
sed 's/"projection_dim": 32/"projection_dim": 16/' "$fx/clip_small.json" >"$tmp/p16.json"
expect_error "visual_projection.weight has shape \[32, 48\], expected \[16, 48\]" "$UVIT" clip-score \
  --images "$fx/images" --prompts "$fx/prompts.txt" --clip "$fx/clip_small.safetensors" --clip-config "$tmp/p16.json" --vocab "$VOCAB"
printf '\n\n' >"$tmp/empty.txt"
expect_error "no prompts" "$UVIT" clip-score --images "$fx/images" --prompts "$tmp/empty.txt" "${CLIP[@]}"
expect_error "no such file or folder" "$UVIT" clip-score --images "$tmp/none" --prompts "$fx/prompts.txt" "${CLIP[@]}"
head -c 1000 "$fx/clip_small.safetensors" >"$tmp/cut.safetensors"
expect_error "cut.safetensors" "$UVIT" clip-score --images "$fx/images" --prompts "$fx/prompts.txt" \
  --clip "$tmp/cut.safetensors" --clip-config "$fx/clip_small.json" --vocab "$VOCAB"
expect_error "give --prompts FILE and --clip W" "$UVIT" eval --config "$tmp/t2i.json" --weights "$tmp/t2i.safetensors" \
  --n 2 --ref "$tmp/ref.npz" --inception "$IW" --out "$tmp/e.npz"
expect_error "not text-to-image" "$UVIT" eval --config "$tmp/gray.json" --weights "$GW" --n 2 --ref "$tmp/ref.npz" \
  --inception "$IW" "${CLIP[@]}" --prompts "$fx/prompts.txt" --out "$tmp/e.npz"
"$PY" -c "
import json, sys; c = json.load(open(sys.argv[1])); c['text_config'].update(hidden_size=32, intermediate_size=40)
json.dump(c, open(sys.argv[2], 'w'))" "$fx/clip_small.json" "$tmp/c32.json"
expect_error "text_model.embeddings.token_embedding.weight has shape" "$UVIT" eval --config "$tmp/t2i.json" \
  --weights "$tmp/t2i.safetensors" --clip "$fx/clip_small.safetensors" --clip-config "$tmp/c32.json" --vocab "$VOCAB" \
  --prompts "$fx/prompts.txt" --n 2 --ref "$tmp/ref.npz" --inception "$IW" --out "$tmp/e.npz"
[ ! -e "$tmp/e.npz" ] || fail "an output was written despite errors"

exit $fails
