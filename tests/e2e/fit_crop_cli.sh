#!/usr/bin/env bash
# FiT's crop versions from `extract-features --fit --versions crop|both` (docs/fit.md "Training on
# your own images"): an image over S px both ways (the README's H > S and W > S) also gets ADM's
# center_crop_arr to S x S, as REL.npy (crop) or beside as REL.crop.npy + REL.crop.flip.npy (both);
# checked against PIL + the PyTorch autoencoder twin, the file names and counts, resume and the
# upgrade of a resize folder, `uvit train` drawing the crop alternative, and the errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/fit_data_twin.py
source tests/e2e/data/lib.sh

tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3

# At S 64: n01_e 200 x 150 and n02_f 300 x 130 (BOX-halved first) and n01_g 65 x 300 (one px over)
# have crop versions; n01_b 64 x 64 (not over: the README's H > S is strict) and n01_a 100 x 50 not.
"$PY" tests/e2e/data/image_folder.py "$tmp/img" n01_e:200x150 n02_f:300x130 n01_g:65x300 \
  n01_b:64x64 n01_a:100x50 || fail "writing the images"
X=(--data "$tmp/img" --weights "$tmp/ae.pth" --config "$tmp/ae.json" --fit --resolution 64
   --min-tokens 0)
check() { run "$PY" $TWIN check-extracted "$tmp/img" "$1" "$tmp/ae.json" "$tmp/ae.pth" 2 64 "$2"; cat "$tmp/out"; }

run "$UVIT" --threads 2 extract-features "${X[@]}" --out "$tmp/both" --versions both
grep -q "3 pending images over 64 px both ways: their crop (64 x 64) beside" "$tmp/err" ||
  fail "the crop line: $(cat "$tmp/err")"
grep -q "encoded 8 images" "$tmp/err" || fail "5 resize + 3 crop passes: $(cat "$tmp/err")"
check "$tmp/both" both
grep -q "5 images (+ flips, 3 with a crop version, 16 files)" "$tmp/out" || fail "$(cat "$tmp/out")"
run "$UVIT" --threads 2 extract-features "${X[@]}" --out "$tmp/crop" --crop -q
check "$tmp/crop" crop
grep -q "5 images (+ flips, 3 with a crop version, 10 files)" "$tmp/out" || fail "$(cat "$tmp/out")"
run "$UVIT" --threads 2 extract-features "${X[@]}" --out "$tmp/resize" -q
check "$tmp/resize" resize
# The resize files of both are the resize folder's, byte for byte (the noise keyed by the name).
for f in n01/n01_e n02/n02_f n01/n01_b; do
  cmp -s "$tmp/both/$f.npy" "$tmp/resize/$f.npy" || fail "$f.npy: both differs from resize"
done
cmp -s "$tmp/both/n01/n01_e.crop.npy" "$tmp/crop/n01/n01_e.npy" &&
  fail "the crop file's noise is not keyed by its own name"

# Resume: only the missing crop flip is encoded again, to the same bytes; a resize folder resumed
# with --versions both gains the crop files of its three images (the same bytes as both's).
cp "$tmp/both/n02/n02_f.crop.flip.npy" "$tmp/f.before"
rm "$tmp/both/n02/n02_f.crop.flip.npy"
run "$UVIT" --threads 2 extract-features "${X[@]}" --out "$tmp/both" --versions both
grep -q "(4 already done," "$tmp/err" || fail "resume: $(cat "$tmp/err")"
grep -q "encoded 1 images" "$tmp/err" || fail "resume re-encoded the wrong count: $(cat "$tmp/err")"
cmp -s "$tmp/both/n02/n02_f.crop.flip.npy" "$tmp/f.before" || fail "n02_f.crop.flip.npy differs after resume"
cp -r "$tmp/resize" "$tmp/upgraded"
run "$UVIT" --threads 2 extract-features "${X[@]}" --out "$tmp/upgraded" --versions both
grep -q "(2 already done," "$tmp/err" || fail "upgrade: $(cat "$tmp/err")"
grep -q "encoded 3 images" "$tmp/err" || fail "upgrade encoded the wrong count: $(cat "$tmp/err")"
diff -r "$tmp/both" "$tmp/upgraded" >/dev/null || fail "the upgraded resize folder differs from both"
find "$tmp/both" -name '*tmp*' | grep -q . && fail "temporary files left in $tmp/both"
# Under --min-tokens (default 16) an image left out leaves its crop version out too: at S 64 only
# n01_b (16 tokens) is kept.
run "$UVIT" --threads 2 extract-features "${X[@]:0:9}" --out "$tmp/min16" --versions both
[ "$(cd "$tmp/min16" && find . -name '*.npy' | sort | tr '\n' ' ')" = "./n01/n01_b.flip.npy ./n01/n01_b.npy " ] ||
  fail "min-tokens with crops: $(find "$tmp/min16" -name '*.npy')"

# Train on the folders: latents up to [4, 16, 12] (n01_g 16 x 128 px), at most 16 tokens. The
# folder of both pinned to resize trains as the resize folder, byte for byte; random (the default,
# the official random: 'random') draws crop versions, so it trains as neither pinned version.
tiny=(--config fmnist_fit_tiny --set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2
      --set nnet.adaln_lora_dim=8 --set nnet.in_channels=4 --set nnet.patch_size=2
      --set 'nnet.input_size=[16,12]' --set nnet.context_size=16 --set dataset.name=npy_folder
      --set dataset.max_tokens=16 --set dataset.random_flip=true --set lr_scheduler.warmup_steps=0
      --steps 2 --batch 4 --no-grid)
run "$UVIT" train "${tiny[@]}" --set "dataset.path=$tmp/resize" --out "$tmp/run_resize" -q
for v in resize crop; do
  run "$UVIT" train "${tiny[@]}" --set "dataset.path=$tmp/both" --set dataset.resize_or_crop=$v \
    --out "$tmp/both_$v" -q
done
same_files "$tmp/run_resize" "$tmp/both_resize" "resize_or_crop resize = the resize folder"
run "$UVIT" train "${tiny[@]}" --set "dataset.path=$tmp/both" --out "$tmp/both_random"
grep -q "5 arrays (8 stored flips), 2 classes, canvas \[4, 16, 12\], 3 with a crop version (resize_or_crop random)" \
  "$tmp/out" "$tmp/err" || fail "the npy folder's line: $(cat "$tmp/out" "$tmp/err")"
for v in resize crop; do
  cmp -s "$tmp/both_random/nnet.safetensors" "$tmp/both_$v/nnet.safetensors" &&
    fail "resize_or_crop random trained as $v throughout"
done

# Errors, one line each.
expect_error "--resolution 72 is not a multiple of 16 px (one token)" \
  "$UVIT" extract-features "${X[@]:0:6}" --fit --resolution 72 --out "$tmp/x" --versions both -q
expect_error "extract-features: --versions and --crop need --fit" \
  "$UVIT" extract-features "${X[@]:0:6}" --out "$tmp/x" --crop -q
# Given without --fit at their default values, they are still refused (were taken before).
expect_error "extract-features: --versions and --crop need --fit" \
  "$UVIT" extract-features "${X[@]:0:6}" --out "$tmp/x" --versions resize -q
expect_error "extract-features: --patch needs --fit" \
  "$UVIT" extract-features "${X[@]:0:6}" --out "$tmp/x" --patch 2 -q
expect_error "extract-features: --min-tokens needs --fit" \
  "$UVIT" extract-features "${X[@]:0:6}" --out "$tmp/x" --min-tokens 16 -q
expect_error "--crop is --versions crop, not both" \
  "$UVIT" extract-features "${X[@]}" --out "$tmp/x" --crop --versions both -q
# --crop beside --versions resize (or resize beside --crop): refused, not cropped silently.
expect_error "--crop is --versions crop, not resize" \
  "$UVIT" extract-features "${X[@]}" --out "$tmp/x" --versions resize --crop -q
expect_error "--versions: all not in {resize,crop,both}" "$UVIT" extract-features "${X[@]}" --out "$tmp/x" --versions all -q
# A folder of --versions both holds resize files as REL.npy: --versions crop there is refused.
expect_error "both: its REL.npy files hold the resize versions of images over --resolution px both ways, this run's the crop versions (--versions crop)" \
  "$UVIT" extract-features "${X[@]}" --out "$tmp/both" --crop -q
# A FiT folder from before --versions (its manifest without rel_npy) resumes as a resize folder,
# and refuses --crop.
"$PY" -c "
import json, sys; p = sys.argv[1] + '/.manifest.json'; m = json.load(open(p)); del m['rel_npy']
json.dump(m, open(p, 'w'))" "$tmp/resize" || fail "editing the manifest"
expect_error "resize: its REL.npy files hold the resize versions" \
  "$UVIT" extract-features "${X[@]}" --out "$tmp/resize" --crop -q
run "$UVIT" extract-features "${X[@]}" --out "$tmp/resize"
grep -q 'rel_npy "resize"' "$tmp/err" || fail "the older manifest completed: $(cat "$tmp/err")"
mkdir -p "$tmp/named" && cp "$tmp/img/n01/n01_b.png" "$tmp/named/n01_b.crop.png"
expect_error "n01_b.crop.png: a name ending in .crop would read as another image's version" \
  "$UVIT" extract-features "${X[@]:2}" --data "$tmp/named" --out "$tmp/x" -q
# a.png and a.jpg would both be OUT/a.npy (the second then skipped as done): refused.
mkdir -p "$tmp/twins" && cp "$tmp/img/n01/n01_b.png" "$tmp/twins/n01_b.png" &&
  "$PY" -c "from PIL import Image; import sys; Image.open(sys.argv[1]).convert('RGB').save(sys.argv[2])" \
    "$tmp/twins/n01_b.png" "$tmp/twins/n01_b.jpg" || fail "writing the twins"
expect_error "n01_b.jpg and $tmp/twins/n01_b.png would both be written as $tmp/x/n01_b.npy" \
  "$UVIT" extract-features "${X[@]:2}" --data "$tmp/twins" --out "$tmp/x" -q
exit $fails
