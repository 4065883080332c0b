#!/usr/bin/env bash
# The SHA-256 a command records is of the weights it loaded (docs/evaluation.md, "The weights'
# SHA-256"): `eval`, `train --init` and `extract-features` (its weights, its --latent-stats) load
# the file, then hash it; a file replaced in between (a training run saving
# RUN/nnet_ema.safetensors, a rename) was recorded by the other file's hash, so a later eval of
# those weights resumed chunks of the first (docs/ux_audit.md, round 13). UVIT_TEST_HASH_PAUSE
# holds the command at its first hash while the script replaces or removes the file: the command
# must refuse in one line (or record the loaded file).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
T=(--threads 1)
tiny_run  # $W: step 1's EMA weights
run "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out "$tmp/run2" --steps 2 --batch 2 \
  --no-grid -q
W2=$tmp/run2/nnet_ema.safetensors
cp "$W" "$tmp/w1.safetensors"
sha1=$(sha256sum "$W" | cut -d' ' -f1)

# paused ACTION CMD...: CMD with UVIT_TEST_HASH_PAUSE; at the pause ACTION runs (eval'd), then CMD
# goes on. Its status in $rc, its output in $tmp/out and $tmp/err.
paused() {
  local act=$1 p end=$((SECONDS + 300)); shift
  rm -f "$tmp/pause"
  UVIT_TEST_HASH_PAUSE=$tmp/pause "$@" >"$tmp/out" 2>"$tmp/err" &
  p=$!
  while [ ! -e "$tmp/pause" ] && kill -0 $p 2>/dev/null && ((SECONDS < end)); do sleep 0.05; done
  if [ -e "$tmp/pause" ]; then eval "$act"; rm -f "$tmp/pause"; else echo "(the hash's pause was not reached)"; fi
  wait $p
  rc=$?
}
# refused WHAT FILE: the command's status and one line naming FILE as changed.
refused() {
  local want="^uvit: error: $2 changed while it was read (a training run saving it?); run again$"
  if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "$want" "$tmp/err"; then
    echo "ok: $1: $(cat "$tmp/err")"
  else
    fail "$1 (rc=$rc, want '$want'): $(cat "$tmp/err")"
  fi
}
restore() { cp "$tmp/w1.safetensors" "$W"; }

# --- eval: the chunk manifest's weights_sha256 -------------------------------------------------
inception_weights I "${2:-}"
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 4 --steps 2 --class 1 -q \
  --npy "$tmp/s.npy"
run "$UVIT" "${T[@]}" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=("$UVIT" "${T[@]}" eval --config fmnist_uvit_tiny --n 2 --chunk 1 --steps 2 --sampler dpm-solver
  --seed 1 --ref "$tmp/ref.npz" --inception "$I" --metrics fid --weights "$W" --out "$tmp/ev.npz"
  --max-chunks 1 -q)
# A training run's save: the new file renamed over the path while eval holds the old one.
paused 'cp "$W2" "$W.tmp" && mv "$W.tmp" "$W"' "${E[@]}"
refused "eval, weights replaced between load and hash" "$W"
m=$tmp/ev.npz.parts/manifest.json
if [ -f "$m" ]; then
  got=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['weights_sha256'])" "$m")
  [ "$got" = "$sha1" ] || fail "eval recorded $got for chunks of the weights $sha1"
fi
# keep_snapshots pruning the snapshot between the two: named as changed, not a bare "cannot open".
restore
rm -rf "$tmp/ev.npz.parts"
paused 'rm "$W"' "${E[@]}"
refused "eval, weights removed between load and hash" "$W"
restore
# Run again as the refusal says (its empty OUT.parts kept), unchanged: the manifest records the
# file loaded (the pause is harmless).
paused ':' "${E[@]}"
[ $rc -eq 0 ] && grep -q "\"weights_sha256\": \"$sha1\"" "$m" &&
  echo "ok: eval with the file unchanged records $sha1" ||
  fail "eval with the file unchanged (rc=$rc): $(cat "$tmp/err")"

# --- train --init: the run's train.init_weights_sha256 -----------------------------------------
paused 'cp "$W2" "$W.tmp" && mv "$W.tmp" "$W"' \
  "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --init "$W" --out "$tmp/ft" --steps 1 \
  --batch 2 --no-grid -q
refused "train --init, weights replaced between load and hash" "$W"
[ ! -f "$tmp/ft/config.json" ] || ! grep -q "init_weights_sha256" "$tmp/ft/config.json" ||
  grep -q "\"init_weights_sha256\": \"$sha1\"" "$tmp/ft/config.json" ||
  fail "train --init recorded $(grep init_weights_sha256 "$tmp/ft/config.json") for $sha1"
restore
run "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --init "$W" --out "$tmp/ft" --steps 1 \
  --batch 2 --no-grid -q
grep -q "\"init_weights_sha256\": \"$sha1\"" "$tmp/ft/config.json" &&
  echo "ok: train --init run again records $sha1" || fail "train --init run again: $(cat "$tmp/err")"

# --- extract-features: the feature folder's manifest -------------------------------------------
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae2.pth" --seed 4
"$PY" tests/e2e/data/image_folder.py "$tmp/images/train" n01_a:256x256 || fails=$((fails+1))
for layout in imagenet fit; do
  X=("$UVIT" "${T[@]}" extract-features --data "$tmp/images" --weights "$tmp/ae.pth" --config
    "$tmp/ae.json" --out "$tmp/feat_$layout" -q)
  [ $layout = fit ] && X+=(--fit --resolution 256)
  cp "$tmp/ae.pth" "$tmp/ae1.pth"
  paused 'cp "$tmp/ae2.pth" "$tmp/ae.tmp" && mv "$tmp/ae.tmp" "$tmp/ae.pth"' "${X[@]}"
  refused "extract-features ($layout), weights replaced between load and hash" "$tmp/ae.pth"
  mv "$tmp/ae1.pth" "$tmp/ae.pth"
done
# --latent-stats, hashed after the weights (the pause): loaded by the weights readers, so its
# hash is of the file loaded too.
"$PY" -c "import torch, sys; [torch.save({'mean': torch.full((1, 4, 1, 1), float(v)), 'std': torch.ones(1, 4, 1, 1)}, sys.argv[1] + f'/ls{v}.pt') for v in (0, 1)]" "$tmp" ||
  fails=$((fails+1))
cp "$tmp/ls0.pt" "$tmp/ls.pt"
paused 'cp "$tmp/ls1.pt" "$tmp/ls.tmp" && mv "$tmp/ls.tmp" "$tmp/ls.pt"' "$UVIT" "${T[@]}" \
  extract-features --data "$tmp/images" --weights "$tmp/ae.pth" --config "$tmp/ae.json" \
  --latent-stats "$tmp/ls.pt" --out "$tmp/feat_stats" -q
refused "extract-features, --latent-stats replaced between load and hash" "$tmp/ls.pt"
exit $fails
