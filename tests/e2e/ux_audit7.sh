#!/usr/bin/env bash
# Regressions from the seventh new-user audit (docs/ux_audit.md, "round 7"): each fix's check failed
# before it; the others keep what the audit found fine (the families side by side as README.md
# "Comparing the families" shows it, the live preview on each family, interrupted commands).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") FIX=${2:-}
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_INCEPTION

# --- the families side by side (README.md "Comparing the families"), at toy size ----------------
# The same seed, data and steps for each; the same sampler steps and seed, a deterministic solver
# per objective; one reference; `uvit eval --json` per run, named by its preset.
families="uvit dit skip_dit lightningdit mdt diffit fit svg"
inception_weights I "$FIX"
"$PY" scripts/eval_fmnist.py --make-test-samples "$tmp/fmnist_test.npy" --n 20 >/dev/null ||
  fail "eval_fmnist.py --make-test-samples"
run "$UVIT" fid-stats "$tmp/fmnist_test.npy" --out "$tmp/fmnist_test.npz" --inception "$I" -q
before=$fails
for f in $families; do
  r=$tmp/cmp_$f
  run "$UVIT" train --config fmnist_${f}_tiny --out "$r" --steps 2 --batch 4 --seed 1 --no-grid -q
  case $f in lightningdit | fit | svg) s=euler ;; *) s=dpm-solver++ ;; esac
  run "$UVIT" eval --config "$r" --weights "$r/nnet_ema.safetensors" --n 4 --sampler $s --steps 4 \
    --seed 1 --ref "$tmp/fmnist_test.npz" --inception "$I" --metrics fid --out "$r/eval_samples.npz" \
    --json "$r/eval.json" -q
  "$PY" -c "
import json, math, sys
j = json.load(open(sys.argv[1]))
assert j['config'] == sys.argv[2] and j['n'] == 4 and j['steps'] == 4 and j['seed'] == 1, j
assert j['sampler'] == sys.argv[3] and math.isfinite(j['fid']), j
" "$r/eval.json" "fmnist_${f}_tiny" $s || fail "eval $f: $(cat "$r/eval.json")"
done
[ $fails = "$before" ] && echo "ok: 8 families trained, sampled and evaluated alike"
# Without --out every eval in a folder shares ./eval_samples.npz.parts: the second family was
# refused with "use another --work folder", an option the user had not given.
E=(--n 4 --sampler dpm-solver++ --steps 4 --ref ../fmnist_test.npz --inception "$I" --metrics fid -q)
mkdir "$tmp/here"
run bash -c "cd '$tmp/here' && exec '$UVIT' eval --config ../cmp_uvit --weights ../cmp_uvit/nnet_ema.safetensors ${E[*]}"
expect_error "^uvit: error: eval_samples.npz.parts: holds chunks of a different run (config \"fmnist_uvit_tiny\" -> \"fmnist_dit_tiny\", .*); give each model its own --out (the chunks go to OUT.parts), or delete eval_samples.npz.parts$" \
  bash -c "cd '$tmp/here' && exec '$UVIT' eval --config ../cmp_dit --weights ../cmp_dit/nnet_ema.safetensors ${E[*]}"

# --- the live preview (docs/cli.md `--preview`, docs/samplers.md "Preview") ----------------------
# `--preview-interval N` without `--preview` was dropped without a word.
expect_error "^uvit: error: --preview-interval needs --preview F.png (the file the previews are written to)$" \
  "$UVIT" sample --config "$tmp/cmp_uvit" --weights "$tmp/cmp_uvit/nnet_ema.safetensors" --class 1 \
  --n 2 --steps 2 --out "$tmp/p.png" --preview-interval 3
# On every family: the samples are the same with and without it, the preview is a PNG, and no
# temporary file is left beside it.
before=$fails
for f in $families; do
  r=$tmp/cmp_$f
  case $f in lightningdit | fit | svg) s=euler ;; *) s=dpm-solver++ ;; esac
  smp=(sample --config "$r" --weights "$r/nnet_ema.safetensors" --class 7 --n 2 --steps 3 --sampler $s -q)
  run "$UVIT" "${smp[@]}" --npy "$r/plain.npy"
  run "$UVIT" "${smp[@]}" --npy "$r/prev.npy" --preview "$r/prev/p.png" --preview-interval 1
  cmp -s "$r/plain.npy" "$r/prev.npy" || fail "$f: samples differ with --preview"
  [ "$(head -c 8 "$r/prev/p.png" | od -An -tx1 | tr -d ' ')" = 89504e470d0a1a0a ] ||
    fail "$f: no preview PNG"
  [ "$(ls "$r/prev")" = p.png ] || fail "$f: beside the preview: $(ls "$r/prev")"
done
[ $fails = "$before" ] && echo "ok: --preview on 8 families: a PNG, the same samples"

# --- numbers an option's type cannot hold ---------------------------------------------------------
# `--seed 99999999999999999999999` ran with seed 9223372036854775807 (the conversion clamps), and
# `--n 99999999999` / `--n 1.5` said CLI11's `Could not convert: --n = 1.5`.
S=(sample --config "$tmp/cmp_uvit" --weights "$tmp/cmp_uvit/nnet_ema.safetensors" --class 1 --out "$tmp/x.png")
expect_error "^uvit: error: --seed must be at most 9223372036854775807, got 99999999999999999999999 (uvit help sample)$" \
  "$UVIT" "${S[@]}" --seed 99999999999999999999999
expect_error "^uvit: error: --n must be at most 2147483647, got 99999999999 (uvit help sample)$" \
  "$UVIT" "${S[@]}" --n 99999999999
expect_error "^uvit: error: --n must be a whole number, got 1.5 (uvit help sample)$" "$UVIT" "${S[@]}" --n 1.5
expect_error "^uvit: error: --steps must be at most 2147483647, got 2147483648 (uvit help sample)$" \
  "$UVIT" "${S[@]}" --n 1 --steps 2147483648

# --- dataset.resize_or_crop (docs/fit.md, docs/data.md) ---------------------------------------------
# Checked only when an npy_folder loaded: a typo on the FiT presets' own data trained without a word.
expect_error "^uvit: error: config dataset: resize_or_crop 'crop_' is not random, resize or crop (docs/fit.md)$" \
  "$UVIT" train --config fmnist_fit_tiny --set dataset.resize_or_crop=crop_ --out "$tmp/rc" --steps 1 --batch 2
[ ! -e "$tmp/rc" ] || fail "a refused resize_or_crop left a run folder"

# --- interrupting and resuming ---------------------------------------------------------------------
# signal_after_a_file SIG DIR CMD...: CMD in the background, its writes held before each rename
# (UVIT_TEST_WRITE_PAUSE_MS), signalled once one .npy (or $pattern) under DIR* is whole; its exit
# status in $rc.
signal_after_a_file() {
  local sig=$1 d=$2; shift 2
  UVIT_TEST_WRITE_PAUSE_MS=400 env --default-signal=INT "$@" >"$tmp/out" 2>"$tmp/err" &
  local p=$!
  for _ in $(seq 600); do
    [ -n "$(find "$d"* -name "${pattern:-*.npy}" 2>/dev/null)" ] && break
    sleep 0.05
  done
  kill -"$sig" "$p"
  wait "$p"
  rc=$?
}
# convert-fit-latents stopped half-way left an npy_folder of fewer items (or items without their
# stored flip or crop version) under its final name, which trained without a word; a conversion into
# the folder of an earlier one kept that one's files (its crop versions after --versions resize).
run "$PY" tests/reference/fit_data_twin.py write-latents "$tmp/off"
run "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/straight_cv" --versions both -q
signal_after_a_file INT "$tmp/cv" "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/cv" --versions both -q
[ "$rc" = 130 ] || fail "convert-fit-latents after SIGINT: exit $rc, want 130: $(cat "$tmp/err")"
[ ! -e "$tmp/cv" ] || fail "an interrupted convert-fit-latents left $tmp/cv: $(ls "$tmp/cv")"
run "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/cv" --versions both
grep -q "^removed $tmp/cv.partial, left by a conversion that was stopped$" "$tmp/err" ||
  fail "the rerun: $(cat "$tmp/err")"
diff -r "$tmp/cv" "$tmp/straight_cv" >/dev/null || fail "the rerun differs from a straight conversion"
[ ! -e "$tmp/cv.partial" ] || fail "cv.partial left after the rerun"
expect_error "^uvit: error: $tmp/cv: holds files already; convert-fit-latents writes a new folder (give another OUT, or delete this one)$" \
  "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/cv" -q
[ "$(ls "$tmp/cv" | grep -c crop)" = 2 ] || fail "the refused conversion changed $tmp/cv"
# A refusal half-way (a crop file of another label) leaves neither OUT nor OUT.partial.
cp -r "$tmp/off/root" "$tmp/root2"
cp "$tmp/off/root/from_16_to_256/n01_a.safetensors" "$tmp/root2/greater_than_256_crop/n03_d.safetensors"
expect_error "greater_than_256_crop/n03_d.safetensors: label 3 differs from 42 of its resize version" \
  "$UVIT" convert-fit-latents "$tmp/root2" "$tmp/cv2" --versions both -q
[ -z "$(compgen -G "$tmp/cv2*")" ] || fail "a refused conversion left $(compgen -G "$tmp/cv2*")"

# extract-features --fit stopped by SIGTERM after its first file, then rerun: every file whole, no
# temporary file, and the folder equal to a straight extraction (it resumes by the files done).
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
"$PY" - "$tmp/images" <<'PYEOF' || fail "writing the images"
import os, sys
import numpy as np
from PIL import Image
rs = np.random.RandomState(0)
for i, (w, h) in enumerate([(64, 64), (48, 64), (64, 40), (32, 32)]):
    d = os.path.join(sys.argv[1], "n0%d" % (i % 2))
    os.makedirs(d, exist_ok=True)
    Image.fromarray(rs.randint(0, 255, (h, w, 3)).astype(np.uint8)).save(os.path.join(d, "n0%d_%d.png" % (i % 2, i)))
PYEOF
X=(extract-features --data "$tmp/images" --weights "$tmp/ae.pth" --config "$tmp/ae.json" --fit --resolution 64 --min-tokens 0 -q)
run "$UVIT" "${X[@]}" --out "$tmp/ef_straight"
signal_after_a_file TERM "$tmp/ef/" "$UVIT" "${X[@]}" --out "$tmp/ef"
[ "$rc" = 143 ] || fail "extract-features after SIGTERM: exit $rc, want 143: $(cat "$tmp/err")"
[ -z "$(find "$tmp/ef" -name '*.tmp.*')" ] || fail "temporary files left: $(find "$tmp/ef" -name '*.tmp.*')"
run "$UVIT" "${X[@]}" --out "$tmp/ef"
diff -r "$tmp/ef" "$tmp/ef_straight" >/dev/null || fail "extract-features resumed differs from a straight one"
[ $fails = 0 ] && echo "ok: convert-fit-latents and extract-features interrupted and rerun"

# --- round 7 (follow-up) ---------------------------------------------------------------------------
# `--preview F --out F` was taken: the final grid replaced the last preview.
expect_error "^uvit: error: --preview $tmp/same.png is the output --out: writing it would destroy that; give another name$" \
  "$UVIT" sample --config "$tmp/cmp_uvit" --weights "$tmp/cmp_uvit/nnet_ema.safetensors" --class 1 \
  --n 2 --steps 2 --out "$tmp/same.png" --preview "$tmp/same.png"
# `serve --port 99999999999` said "at most 2147483647" (the int's limit, not a port's).
for p in 99999999999 65536; do
  expect_error "^uvit: error: --port must be at most 65535, got $p (uvit help serve)$" \
    "$UVIT" serve --config "$tmp/cmp_uvit" --weights "$tmp/cmp_uvit/nnet_ema.safetensors" --port $p
done
# `eval` stopped by a signal exited 130/143 without a word; a resumed run's `seconds` (~0 when every
# chunk was resumed) read as a fast model. Now one line says the chunks are kept and how to resume,
# and the JSON has the chunks' own time (`chunk_seconds`, the same however the run was split) and
# the count resumed (docs/evaluation.md).
EV=("$UVIT" eval --config "$tmp/cmp_uvit" --weights "$tmp/cmp_uvit/nnet_ema.safetensors" --n 4
  --chunk 1 --sampler dpm-solver++ --steps 4 --ref "$tmp/fmnist_test.npz" --inception "$I"
  --metrics fid --out "$tmp/ev/s.npz" --json "$tmp/ev/a.json" -q)
pattern='chunk_*.npz' signal_after_a_file INT "$tmp/ev/s.npz.parts/" "${EV[@]}"
[ "$rc" = 130 ] || fail "eval after SIGINT: exit $rc, want 130: $(cat "$tmp/err")"
[ "$(cat "$tmp/err")" = "interrupted: the finished chunks are kept in $tmp/ev/s.npz.parts; run the same command again to resume" ] ||
  fail "eval after SIGINT said: $(cat "$tmp/err")"
run "${EV[@]}"
run "${EV[@]/a.json/b.json}"
"$PY" -c "
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:])
assert a['chunks'] == b['chunks'] == 4 and 1 <= a['resumed_chunks'] < 4 and b['resumed_chunks'] == 4, (a, b)
assert a['chunk_seconds'] > 0 and a['chunk_seconds'] == b['chunk_seconds'], (a, b)
" "$tmp/ev/a.json" "$tmp/ev/b.json" || fail "eval --json resumed: $(cat "$tmp/ev/a.json" "$tmp/ev/b.json")"
# Serve: `?skip_current_image=yes` sent the image (A1111's FastAPI reads yes/on/1 as true), and an
# unknown value was taken as false.
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib"; exit $fails
fi
serve_up --config "$tmp/cmp_uvit" --weights "$tmp/cmp_uvit/nnet_ema.safetensors" --threads 1 -q
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' "$B/sdapi/v1/progress?skip_current_image=maybe")
[ "$code" = 422 ] && grep -q '"detail":"skip_current_image must be true or false' "$tmp/resp" ||
  fail "skip_current_image=maybe: $code $(cat "$tmp/resp")"
curl -s -X POST "$B/uvit/v1/jobs" -H 'Content-Type: application/json' \
  -d '{"class": 1, "n": 16, "steps": 1000, "sampler": "euler-maruyama", "seed": 1}' >/dev/null
"$PY" - "$B" <<'PYEOF' || fail "skip_current_image spellings"
import json, sys, time, urllib.request
def image(v):
    with urllib.request.urlopen(sys.argv[1] + "/sdapi/v1/progress?skip_current_image=" + v) as r:
        return json.load(r)["current_image"]
for _ in range(300):
    if image("no"):
        break
    time.sleep(0.1)
bad = [v for v in ["no", "0", "Off", "FALSE"] if not isinstance(image(v), str)]
bad += [v for v in ["yes", "YES", "1", "on", "True", "y"] if image(v) is not None]
assert not bad, bad
PYEOF
serve_down TERM
exit $fails
