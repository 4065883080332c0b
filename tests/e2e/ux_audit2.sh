#!/usr/bin/env bash
# Regressions from the second new-user audit (docs/ux_audit.md, "Round 2"): each check failed
# before its fix.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# --- extract-features records the encoder's precision: features of a tf32 (cuda) run are not
# resumed in fp32. The manifest had no precision, so the two were mixed in one folder.
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
"$PY" - "$tmp/images/train" <<'PYEOF' || fail "writing the images"
import os, sys
import numpy as np
from PIL import Image
for name in ["n01_a", "n02_b"]:
    d = os.path.join(sys.argv[1], name[:3])
    os.makedirs(d, exist_ok=True)
    rs = np.random.RandomState(ord(name[-1]))
    Image.fromarray(rs.randint(0, 255, (256, 256, 3)).astype(np.uint8)).save(os.path.join(d, name + ".png"))
PYEOF
X=(--threads 2 extract-features --data "$tmp/images" --config "$tmp/ae.json" --weights "$tmp/ae.pth"
  --out "$tmp/feat" --batch 2)
run "$UVIT" "${X[@]}" -q
M=$tmp/feat/.manifest.json
"$PY" -c "import json, sys; assert json.load(open(sys.argv[1]))['precision'] == 'fp32'" "$M" ||
  fail "no precision fp32 in the manifest: $(cat "$M")"
# As if the folder had been made on cuda in its default tf32: a cpu (fp32) resume is refused.
sed -i 's/"fp32"/"tf32"/' "$M"
rm "$tmp/feat/3.npy"
expect_error "^uvit: error: $tmp/feat: holds features of a different run (precision \"tf32\" -> \"fp32\"); give another --out folder" \
  "$UVIT" "${X[@]}" -q
[ ! -e "$tmp/feat/3.npy" ] || fail "a refused resume wrote a feature file"
# A manifest from before the precision was recorded: completed with the rerun's, said in one line.
"$PY" -c "import json, sys; m = json.load(open(sys.argv[1])); del m['precision']; json.dump(m, open(sys.argv[1], 'w'))" "$M"
run "$UVIT" "${X[@]}"
grep -q "^$tmp/feat: $M predates the record of precision \"fp32\"; taken as made with that$" "$tmp/err" ||
  fail "old manifest: $(cat "$tmp/err")"
grep -q '"precision": "fp32"' "$M" || fail "the old manifest was not completed: $(cat "$M")"

# --- an output that is an input: the rename replaced the input (autoencoder encode wrote its
# moments over the images, predict its output over --x), or one output another (fid-features).
"$PY" -c "import numpy as np, sys; np.save(sys.argv[1], np.random.RandomState(1).uniform(-1, 1, (2, 3, 16, 16)).astype(np.float32))" "$tmp/img.npy"
cp "$tmp/img.npy" "$tmp/img_copy.npy"
expect_error "^uvit: error: --out $tmp/img.npy is the input --in: writing it would destroy that; give another name$" \
  "$UVIT" autoencoder encode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/img.npy" --out "$tmp/img.npy"
ln -s img.npy "$tmp/link.npy"
expect_error "is the input --in" \
  "$UVIT" autoencoder encode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/link.npy" --out "$tmp/./img.npy"
cmp -s "$tmp/img.npy" "$tmp/img_copy.npy" || fail "autoencoder encode changed its input"
c=dit_p2
cp "$FX/${c}_x.npy" "$tmp/x.npy"
expect_error "^uvit: error: --out $tmp/x.npy is the input --x" "$UVIT" predict --config "$FX/$c.json" \
  --weights "$FX/$c.pth" --x "$tmp/x.npy" --t "$FX/${c}_t.npy" --y "$FX/${c}_y.npy" --out "$tmp/x.npy"
cmp -s "$tmp/x.npy" "$FX/${c}_x.npy" || fail "predict changed its --x"
# sample wrote its samples (--npy) or latents over the noise it was given (--noise).
cp "$FX/${c}_x.npy" "$tmp/z.npy"
expect_error "^uvit: error: --npy $tmp/z.npy is the input --noise: writing it would destroy that" \
  "$UVIT" sample --config "$FX/$c.json" --weights "$FX/$c.pth" --n 2 --noise "$tmp/z.npy" --npy "$tmp/z.npy"
expect_error "^uvit: error: --latents $tmp/./z.npy is the input --noise" "$UVIT" sample \
  --config "$FX/$c.json" --weights "$FX/$c.pth" --n 2 --noise "$tmp/z.npy" --latents "$tmp/./z.npy"
cmp -s "$tmp/z.npy" "$FX/${c}_x.npy" || fail "sample changed its --noise"
"$PY" -c "import numpy as np, sys; np.save(sys.argv[1], np.zeros((3, 4, 4, 4), np.float32))" "$tmp/frames.npy"
L=(lavin-sample --config "$FX/lavin_tiny.json" --weights "$FX/lavin_tiny.pth" --frames "$tmp/frames.npy")
expect_error "^uvit: error: --out $tmp/frames.npy is the input --frames" "${UVIT}" "${L[@]}" --out "$tmp/frames.npy"
# --seed -1 (uvit sample's "random") wrapped to 2^64 - 1 here.
expect_error "^uvit: error: --seed must be >= 0, got -1" "$UVIT" "${L[@]}" --out "$tmp/a.npy" --seed -1
inception_weights IW "$FX"
mkdir -p "$tmp/ims"
"$PY" -c "
import numpy as np, sys
from PIL import Image
for i in range(2): Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(sys.argv[1] + '/%d.png' % i)" "$tmp/ims"
expect_error "^uvit: error: --logits $tmp/f.npy is the output --out" \
  "$UVIT" fid-features "$tmp/ims" --out "$tmp/f.npy" --logits "$tmp/f.npy" --inception "$IW"

# --- one RGB image [H, W, 3] as .npy was read as H grayscale images 3 px wide and scored.
"$PY" -c "import numpy as np, sys; np.save(sys.argv[1], np.zeros((16, 16, 3), np.uint8))" "$tmp/one.npy"
expect_error "^uvit: error: $tmp/one.npy: shape \[16, 16, 3\] reads as grayscale images \[N, H, W\] 3 px wide; one RGB image is \[1, H, W, 3\]$" \
  "$UVIT" fid-features "$tmp/one.npy" --out "$tmp/one_f.npy" --inception "$IW"

# --- a prompts file that is not text: the tokenizer said "text: invalid UTF-8 at byte 0", naming
# neither the file nor the line, after the CLIP weights had loaded
printf 'a cat\n\xff\xfe dog\n' >"$tmp/bad.txt"
expect_error "^uvit: error: $tmp/bad.txt: line 2: text: invalid UTF-8 at byte 0 (a text file of prompts?)$" \
  "$UVIT" clip-score --images "$tmp/ims" --prompts "$tmp/bad.txt" --clip "$tmp/nothere.safetensors"

# --- convert-fit-latents: two files of one name and label in two folders wrote one pair, the later
# over the earlier ("converted 2 latent files", one left).
run "$PY" tests/reference/fit_data_twin.py write-latents "$tmp/off"
mkdir -p "$tmp/two/a" "$tmp/two/b"
cp "$tmp/off/root/from_16_to_256/n01_a.safetensors" "$tmp/two/a/"
cp "$tmp/off/root/from_16_to_256/n01_a.safetensors" "$tmp/two/b/"
expect_error "^uvit: error: $tmp/two: $tmp/two/a/n01_a.safetensors and $tmp/two/b/n01_a.safetensors would both write $tmp/conv/0003_n01_a.npy" \
  "$UVIT" convert-fit-latents "$tmp/two" "$tmp/conv" -q
# One name with two labels (class folders of generic names) writes two pairs: not refused.
cp "$tmp/off/root/greater_than_256_resize/n03_d.safetensors" "$tmp/two/b/n01_a.safetensors"
run "$UVIT" convert-fit-latents "$tmp/two" "$tmp/conv2" -q
[ "$(ls "$tmp/conv2" | wc -l)" = 4 ] || fail "convert-fit-latents: $(ls "$tmp/conv2")"

# --- bench: --json checked before the run (a folder failed after it, "cannot open for appending");
# --sampler takes A1111's names as uvit sample does (it said "unknown sampler 'DPM++ 2M'").
expect_error "^uvit: error: --json $tmp/ims: is a folder; give a file name$" \
  "$UVIT" bench --config fmnist_uvit_tiny --iters 1 --json "$tmp/ims"
[ ! -s "$tmp/out" ] || fail "bench ran before refusing --json: $(cat "$tmp/out")"
run "$UVIT" bench --config fmnist_uvit_tiny --mode sample --n 1 --steps 2 --batch 1 \
  --sampler "DPM++ 2M" -q
grep -q '"sampler": "dpm-solver++2m"' "$tmp/out" || fail "bench --sampler 'DPM++ 2M': $(cat "$tmp/out")"

# --- serve: `curl -X POST .../interrupt` (no body, no Content-Length) got 400 "HTTP 400";
# a body-less POST to an endpoint that needs one now says what is missing.
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 1 --batch 2 --no-grid -q
serve_up --config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors"
got=$(curl -s -w " %{http_code}" -X POST "$B/sdapi/v1/interrupt")
[ "$got" = "{} 200" ] || fail "POST interrupt without a body: $got"
got=$(curl -s -w " %{http_code}" -X POST "$B/uvit/v1/jobs/nope/cancel")
[[ "$got" == *"no job nope"*" 404" ]] || fail "POST cancel without a body: $got"
got=$(curl -s -w " %{http_code}" -X POST -d '{"x": 1}' "$B/sdapi/v1/interrupt")
[ "$got" = "{} 200" ] || fail "POST interrupt with a body: $got"
got=$(curl -s -w " %{http_code}" -X POST "$B/sdapi/v1/txt2img")
[[ "$got" == *"POST /sdapi/v1/txt2img sent no body and no Content-Length"*" 400" ]] ||
  fail "POST txt2img without a body: $got"
curl -sf "$B/health" >/dev/null || fail "the server stopped answering: $(cat "$tmp/server.log")"
serve_down
exit $fails
