#!/usr/bin/env bash
# FiT's official latent root, one rule for `uvit info` and `uvit convert-fit-latents` (docs/fit.md,
# "The official root"): a folder with any of from_16_to_L, greater_than_L_resize and
# greater_than_L_crop. The edge cases: only the greater_than_L_* folders (a root: the crop file is
# the resize file's alternative, not an item of its own), a greater_than_L folder of another suffix
# and less_than_16 alone (no root), two lengths (refused by both, naming them).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

run "$PY" tests/reference/fit_data_twin.py write-latents "$tmp/off"
R=$tmp/off/root
info_line() { "$UVIT" info "$1" 2>&1 | grep -v '^file'; }

# Only the greater_than_256_* folders: one item, n03_d's resize version (its crop with --versions).
mkdir -p "$tmp/gt" && cp -r "$R/greater_than_256_resize" "$R/greater_than_256_crop" "$tmp/gt/"
[ "$(info_line "$tmp/gt")" = "fit_latents   FiT's latent folders (greater_than_256_crop: 1 file, greater_than_256_resize: 1): uvit convert-fit-latents $tmp/gt OUT makes a training folder of them (docs/fit.md)" ] ||
  fail "info of the greater_than folders: $(info_line "$tmp/gt")"
run "$UVIT" convert-fit-latents "$tmp/gt" "$tmp/gt_conv"
grep -q "^converted 1 latent files (0 with their crop version)" "$tmp/err" || fail "convert of the greater_than folders: $(cat "$tmp/err")"
[ "$(cd "$tmp/gt_conv" && ls | tr '\n' ' ')" = "0042_n03_d.flip.npy 0042_n03_d.npy " ] ||
  fail "the greater_than folders converted to: $(ls "$tmp/gt_conv")"
cmp -s "$tmp/gt_conv/0042_n03_d.npy" "$tmp/off/expected/0042_n03_d.npy" || fail "n03_d's resize version differs"
run "$UVIT" convert-fit-latents "$tmp/gt" "$tmp/gt_both" --versions both
grep -q "^converted 1 latent files (1 with their crop version)" "$tmp/err" || fail "--versions both: $(cat "$tmp/err")"

# No root: a greater_than folder of another suffix, less_than_16 alone. info names no FiT folders,
# convert takes every file as an item of its own.
mkdir -p "$tmp/other/greater_than_256_old" "$tmp/other/less_than_16"
cp "$R/greater_than_256_resize/n03_d.safetensors" "$tmp/other/greater_than_256_old/"
cp "$R/less_than_16/n04_e.safetensors" "$tmp/other/less_than_16/"
expect_error "$tmp/other: a folder, not a PNG file" "$UVIT" info "$tmp/other"
expect_error "--versions both needs the official root (from_16_to_L, greater_than_L_resize or _crop)" \
  "$UVIT" convert-fit-latents "$tmp/other" "$tmp/x" --versions both -q
run "$UVIT" convert-fit-latents "$tmp/other" "$tmp/other_conv"
grep -q "^converted 2 latent files" "$tmp/err" || fail "convert of another folder: $(cat "$tmp/err")"

# Two lengths: both commands refuse, naming them (convert took one in directory order).
mkdir -p "$tmp/two" && cp -r "$R/from_16_to_256" "$tmp/two/" && cp -r "$R/from_16_to_256" "$tmp/two/from_16_to_1024"
two="$tmp/two: holds FiT's latent folders of two target lengths (1024 and 256); give a folder with the folders of one"
expect_error "$two" "$UVIT" info "$tmp/two"
expect_error "$two" "$UVIT" convert-fit-latents "$tmp/two" "$tmp/x" -q
[ -e "$tmp/x" ] && fail "a refused conversion wrote $tmp/x"
[ $fails -eq 0 ] && echo "ok: one FiT latent root rule for info and convert-fit-latents"
exit $fails
