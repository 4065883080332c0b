#!/usr/bin/env bash
# extract-features' manifest lives in its folder (docs/autoencoder.md, "What made a feature
# folder"): `mv feat feat2` takes it along, so a rerun into feat2 with other weights is refused (it
# was taken as a folder from before manifests and mixed two encoders' features); a statistics
# file inside the folder is recorded relative to it, so the moved folder resumes; an older uvit's
# manifest beside the folder is moved in and still checked.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae2.pth" --seed 4
"$PY" tests/e2e/data/image_folder.py "$tmp/images/train" n01_a:256x256 n02_b:256x256 ||
  fail "writing the images"
X=(--threads 2 extract-features --data "$tmp/images" --config "$tmp/ae.json" --batch 2)
run "$UVIT" "${X[@]}" --weights "$tmp/ae.pth" --out "$tmp/feat/" \
  --write-latent-stats "$tmp/feat/stats.safetensors" -q
M=$tmp/feat/.manifest.json
[ -e "$M" ] && [ ! -e "$tmp/feat.manifest.json" ] && echo "ok: the manifest is in the folder" ||
  fail "no manifest in the folder: $(ls -a "$tmp" "$tmp/feat")"
[ "$(ls "$tmp/feat" | tr '\n' ' ')" = "0.npy 1.npy 2.npy 3.npy stats.safetensors " ] ||
  fail "feature folder: $(ls "$tmp/feat")"
"$PY" -c "import json, sys; m = json.load(open(sys.argv[1])); assert m['write_latent_stats'] == 'stats.safetensors', m" "$M" &&
  echo "ok: the statistics inside the folder are recorded relative to it" || fail "manifest: $(cat "$M")"

# Moved: the record goes along. Other weights are refused, the same ones resume.
mv "$tmp/feat" "$tmp/feat2"
rm "$tmp/feat2/3.npy"
Y=("${X[@]}" --out "$tmp/feat2" --write-latent-stats "$tmp/feat2/stats.safetensors")
expect_error "^uvit: error: $tmp/feat2: holds features of a different run (weights_sha256 \"$(sha256sum "$tmp/ae.pth" | cut -c1-64)\" -> \"$(sha256sum "$tmp/ae2.pth" | cut -c1-64)\"); give another --out folder, or delete it$" \
  "$UVIT" "${Y[@]}" --weights "$tmp/ae2.pth" -q
[ ! -e "$tmp/feat2/3.npy" ] || fail "a refused resume wrote a feature file"
run "$UVIT" "${Y[@]}" --weights "$tmp/ae.pth"
grep -q "(1 already done)" "$tmp/err" && ! grep -q "manifest" "$tmp/err" &&
  echo "ok: the moved folder resumes with its statistics" || fail "moved resume: $(cat "$tmp/err")"

# An older uvit's manifest beside the folder, its statistics path absolute: moved in, made
# relative, and still checked (other weights refused, the same ones resume).
M2=$tmp/feat2/.manifest.json
"$PY" -c "
import json, sys
m = json.load(open(sys.argv[1])); m['write_latent_stats'] = sys.argv[2] + '/stats.safetensors'
json.dump(m, open(sys.argv[2] + '.manifest.json', 'w'))" "$M2" "$tmp/feat2" && rm "$M2"
rm "$tmp/feat2/3.npy"
expect_error "holds features of a different run (weights_sha256" "$UVIT" "${Y[@]}" --weights "$tmp/ae2.pth" -q
[ ! -e "$tmp/feat2.manifest.json" ] && [ -e "$M2" ] || fail "the older manifest was not moved in"
"$PY" -c "
import json, sys
m = json.load(open(sys.argv[1])); m['write_latent_stats'] = sys.argv[2] + '/stats.safetensors'
json.dump(m, open(sys.argv[2] + '.manifest.json', 'w'))" "$M2" "$tmp/feat2" && rm "$M2"
run "$UVIT" "${Y[@]}" --weights "$tmp/ae.pth"
grep -q "^$tmp/feat2: its manifest $tmp/feat2.manifest.json (an older uvit's, beside the folder) moved into $M2$" "$tmp/err" &&
  grep -q "(1 already done)" "$tmp/err" && echo "ok: $(grep 'moved into' "$tmp/err")" ||
  fail "older manifest: $(cat "$tmp/err")"
"$PY" -c "import json, sys; m = json.load(open(sys.argv[1])); assert m['write_latent_stats'] == 'stats.safetensors', m" "$M2" ||
  fail "the older manifest's path was not made relative: $(cat "$M2")"
exit $fails
