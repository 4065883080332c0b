#!/usr/bin/env bash
# FiTv2's data path from the CLI (docs/fit.md "Training on your own images"): images of different
# sizes -> `extract-features --fit` (the official resize_arr, SD-style VAE twin, each image and its
# flip; checked against PIL + the PyTorch twin; resumable) -> `uvit train` a few steps with
# random_flip on the stored flips; the official latent files (written by
# tests/reference/fit_data_twin.py) -> `convert-fit-latents` (resize, --crop, --versions both) ->
# train (both versions: drawn per draw, or pinned); errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/fit_data_twin.py
source tests/e2e/data/lib.sh

tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3

# Five images in two synsets at S = 64 (<= 16 tokens of 16 px): over S^2 (shrunk), under it
# (floored to 16), exactly 16 tokens, and a thin one raised to 16 px.
"$PY" tests/e2e/data/image_folder.py "$tmp/images" n01_a:100x50 n01_b:64x64 n02_c:40x30 \
  n02_d:10x40 n01_e:200x150 || fail "writing the images"

# By default images of under 16 tokens are left out, as the official less_than_16 folder: at S 64
# only n01_b (64 x 64: 4 x 4 tokens) stays; n01_a 10, n01_e 12, n02_c 2, n02_d 4 tokens.
X=(--data "$tmp/images" --weights "$tmp/ae.pth" --config "$tmp/ae.json" --fit --resolution 64)
run "$UVIT" --threads 2 extract-features "${X[@]}" --out "$tmp/lat16"
grep -q "(0 already done, 4 under 16 tokens left out)" "$tmp/err" || fail "less_than_16: $(cat "$tmp/err")"
[ "$(cd "$tmp/lat16" && find . -name '*.npy' | sort | tr '\n' ' ')" = "./n01/n01_b.flip.npy ./n01/n01_b.npy " ] ||
  fail "less_than_16 kept: $(find "$tmp/lat16" -name '*.npy')"
X+=(--out "$tmp/lat" --min-tokens 0)
run "$UVIT" --threads 2 extract-features "${X[@]}"  # not -q: its counts are read
n=$(find "$tmp/lat" -name '*.npy' | wc -l)
[ "$n" -eq 10 ] || fail "expected 10 latent files, found $n"
grep -q "0 already done" "$tmp/err" || fail "first extraction: $(cat "$tmp/err")"
run "$PY" $TWIN check-extracted "$tmp/images" "$tmp/lat" "$tmp/ae.json" "$tmp/ae.pth" 2 64
cat "$tmp/out"

# Resume: only the image whose flip is missing is encoded again, to the same bytes.
cp "$tmp/lat/n02/n02_c.flip.npy" "$tmp/c.before"
rm "$tmp/lat/n02/n02_c.flip.npy"
run "$UVIT" --threads 2 extract-features "${X[@]}"
grep -q "(4 already done," "$tmp/err" || fail "resume did not skip finished images: $(cat "$tmp/err")"
grep -q "encoded 1 images" "$tmp/err" || fail "resume re-encoded the wrong count: $(cat "$tmp/err")"
cmp -s "$tmp/lat/n02/n02_c.flip.npy" "$tmp/c.before" || fail "n02_c.flip.npy differs after resume"
find "$tmp/lat" -name '*tmp*' | grep -q . && fail "temporary files left in $tmp/lat"

# Train a tiny FiT on the latents ([4, h, w] up to 8 x 10: a 12 x 12 canvas, <= 16 tokens), the
# stored flips drawn by random_flip.
tiny=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.adaln_lora_dim=8
      --set nnet.in_channels=4 --set nnet.patch_size=2 --set nnet.input_size=12
      --set nnet.context_size=16 --set dataset.name=npy_folder --set dataset.max_tokens=16
      --set dataset.random_flip=true)
run "$UVIT" train --config fmnist_fit_tiny "${tiny[@]}" --set "dataset.path=$tmp/lat" \
  --set lr_scheduler.warmup_steps=0 --out "$tmp/run" --steps 3 --batch 4 --no-grid -q

grep -q "\"random_flip\": *true" "$tmp/run/config.json" || fail "run config lost random_flip"
"$PY" -c "
import json, math, sys
loss = [r['loss'] for r in map(json.loads, open(sys.argv[1])) if 'loss' in r]
assert loss and all(math.isfinite(x) for x in loss), loss
" "$tmp/run/log.jsonl" || fail "training on the extracted latents"

# The official latent files: convert (resize versions by default, --crop the crop versions) and
# compare with the twin's latents bit for bit (F32, F16 and BF16 files).
run "$PY" $TWIN write-latents "$tmp/off"
run "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/conv"
run "$PY" $TWIN check-converted "$tmp/off/expected" "$tmp/conv"
cat "$tmp/out"
run "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/conv_crop" --crop -q
run "$PY" $TWIN check-converted "$tmp/off/crop_expected" "$tmp/conv_crop"
cat "$tmp/out"
# Labels 0000, 0003, 0042, 0999 as file-name prefixes (4 classes); latents [4, 8, 12], [4, 32, 32],
# [4, 2, 40] and [4, 24, 42]: a 32 x 42 canvas, up to 256 tokens.
run "$UVIT" train --config fmnist_fit_tiny "${tiny[@]}" --set 'nnet.input_size=[32,42]' \
  --set nnet.context_size=256 --set dataset.max_tokens=256 \
  --set "dataset.path=$tmp/conv" --set lr_scheduler.warmup_steps=0 --out "$tmp/run2" --steps 2 \
  --batch 4 --no-grid -q

# --versions both: n03_d's crop file beside its resize one as 0042_n03_d.crop.npy (+ .crop.flip.npy),
# still four items; npy_folder draws one of the two per draw (dataset.resize_or_crop, default
# random, the official random.choice). Pinned to resize or crop it trains as the resize or the
# --crop conversion, byte for byte; random (the preset's seed 1234: n03_d's resize version at the
# first draw, its crop version at the second) trains as neither.
run "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/conv_both" --versions both
grep -q "converted 4 latent files (1 with their crop version)" "$tmp/err" || fail "$(cat "$tmp/err")"
run "$PY" $TWIN check-converted "$tmp/off/both_expected" "$tmp/conv_both"
cat "$tmp/out"
two=(--config fmnist_fit_tiny "${tiny[@]}" --set 'nnet.input_size=[32,42]' --set nnet.context_size=256
     --set dataset.max_tokens=256 --set lr_scheduler.warmup_steps=0 --steps 2 --batch 4 --no-grid)
run "$UVIT" train "${two[@]}" --set "dataset.path=$tmp/conv_crop" --out "$tmp/run_crop" -q
for v in resize crop; do
  run "$UVIT" train "${two[@]}" --set "dataset.path=$tmp/conv_both" \
    --set dataset.resize_or_crop=$v --out "$tmp/both_$v" -q
done
same_files "$tmp/run2" "$tmp/both_resize" "resize_or_crop resize = the resize conversion"
same_files "$tmp/run_crop" "$tmp/both_crop" "resize_or_crop crop = the --crop conversion"
run "$UVIT" train "${two[@]}" --set "dataset.path=$tmp/conv_both" --out "$tmp/both_random"
grep -q "4 arrays (5 stored flips), 4 classes, canvas \[4, 32, 42\], 1 with a crop version (resize_or_crop random)" \
  "$tmp/out" "$tmp/err" || fail "the npy folder's line: $(cat "$tmp/out" "$tmp/err")"
for v in resize crop; do
  cmp -s "$tmp/both_random/nnet.safetensors" "$tmp/both_$v/nnet.safetensors" &&
    fail "resize_or_crop random trained as $v throughout"
done

# Errors, one line each: a too-thin image, a latent file whose grid repeats a position.
mkdir -p "$tmp/thin"
"$PY" -c "
import numpy as np; from PIL import Image
Image.fromarray(np.zeros((10, 8000, 3), np.uint8)).save('$tmp/thin/n01_t.png')"
expect_error "n01_t.png: 8000 x 10 is too thin for FiT's resize" "$UVIT" extract-features \
  --data "$tmp/thin" --weights "$tmp/ae.pth" --config "$tmp/ae.json" --out "$tmp/thin_out" --fit -q
"$PY" - "$tmp/badgrid" <<'PYEOF' || fail "writing the bad latent file"
import os, sys
import numpy as np
sys.path.insert(0, "tests/reference")
import fit_data_twin as t
os.makedirs(sys.argv[1])
t.write_safetensors(os.path.join(sys.argv[1], "x.safetensors"),
                    {"feature": np.zeros((2, 1, 2, 16), np.float32), "grid": np.zeros((2, 2), np.int64),
                     "size": np.array([1, 2], np.int32), "label": np.array([1], np.int64)})
PYEOF
expect_error "x.safetensors: grid position (0, 0) of token 1 is outside the 1 x 2 grid or repeated" \
  "$UVIT" convert-fit-latents "$tmp/badgrid" "$tmp/badgrid_out" -q
expect_error "--resolution must be 256 or 512, got 64" "$UVIT" extract-features --data "$tmp/images" \
  --weights "$tmp/ae.pth" --out "$tmp/x" --resolution 64 -q
# --versions both refusals: a folder that is not the official root, with --crop, a crop file
# without its resize file, a crop file of another label; npy_folder names a crop version outside the
# canvas and an unknown resize_or_crop.
expect_error "--versions both needs the official root" \
  "$UVIT" convert-fit-latents "$tmp/badgrid" "$tmp/x" --versions both -q
expect_error "--crop is --versions crop, not both" \
  "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/x" --versions both --crop -q
expect_error "--crop is --versions crop, not resize" \
  "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/x" --versions resize --crop -q
cp -r "$tmp/off/root" "$tmp/root2"
rm "$tmp/root2/greater_than_256_resize/n03_d.safetensors"
expect_error "greater_than_256_crop/n03_d.safetensors: a crop version without its 256_resize file" \
  "$UVIT" convert-fit-latents "$tmp/root2" "$tmp/x" --versions both -q
cp "$tmp/off/root/greater_than_256_resize/n03_d.safetensors" "$tmp/root2/greater_than_256_resize/"
cp "$tmp/off/root/from_16_to_256/n01_a.safetensors" "$tmp/root2/greater_than_256_crop/n03_d.safetensors"
expect_error "greater_than_256_crop/n03_d.safetensors: label 3 differs from 42 of its resize version" \
  "$UVIT" convert-fit-latents "$tmp/root2" "$tmp/x" --versions both -q
cp -r "$tmp/conv_both" "$tmp/conv_fit"
rm "$tmp/conv_fit"/0000_n01_b*
expect_error "0042_n03_d.crop.npy (the crop version of $tmp/conv_fit/0042_n03_d.npy): 32 x 32 is not a multiple of 2 within the 24 x 42 canvas" \
  "$UVIT" train "${two[@]}" --set "dataset.path=$tmp/conv_fit" --set 'nnet.input_size=[24,42]' \
  --out "$tmp/x_run" -q
expect_error "resize_or_crop 'both' is not random, resize or crop" \
  "$UVIT" train "${two[@]}" --set "dataset.path=$tmp/conv_both" --set dataset.resize_or_crop=both \
  --out "$tmp/x_run" -q
exit $fails
