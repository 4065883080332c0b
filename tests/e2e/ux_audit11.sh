#!/usr/bin/env bash
# Regressions from the eleventh new-user audit (docs/ux_audit.md, "round 11"): each fix's check
# failed before it; the others keep what the audit found fine (the user's environment: locale,
# standard streams, paths, thread counts; files of an older uvit read by today's).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
T=(--threads 1)
tiny_run  # $tmp/run at step 1, $W its EMA weights
B=("$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --n 1 --steps 2 --class 1)
S=("${B[@]}" -q "${T[@]}")

# --- locale (docs/cli.md, "The environment") -----------------------------------------------------
# A decimal-comma locale changes no number read or written (uvit never calls setlocale).
if localedef -i de_DE -f UTF-8 "$tmp/loc/de_DE.UTF-8" >/dev/null 2>&1 ||
   { mkdir -p "$tmp/loc" && localedef -i de_DE -f UTF-8 "$tmp/loc/de_DE.UTF-8" >/dev/null 2>&1; }; then
  export LOCPATH=$tmp/loc
  LC_ALL=de_DE.UTF-8 "$PY" -c "import locale; locale.setlocale(locale.LC_ALL, ''); assert locale.localeconv()['decimal_point'] == ','" ||
    fail "the generated de_DE locale has no decimal comma"
  run env LC_ALL=de_DE.UTF-8 LC_NUMERIC=de_DE.UTF-8 "$UVIT" train --config fmnist_uvit_tiny \
    --out "$tmp/de" --steps 2 --batch 2 --no-grid "${T[@]}" --set optimizer.lr=1e-4 \
    --set lr_scheduler.warmup_steps=0
  grep -q ' loss [0-9]*\.[0-9]* ' "$tmp/err" || fail "de_DE progress line: $(cat "$tmp/err")"
  "$PY" - "$tmp/de" <<'PYEOF' && echo "ok: numbers under LC_ALL=de_DE.UTF-8" || fail "de_DE run files"
import json, sys
d = sys.argv[1]
assert json.load(open(d + "/config.json"))["optimizer"]["lr"] == 1e-4
rows = [json.loads(l) for l in open(d + "/log.jsonl")]
assert any(r.get("event") == "train" and 0.5 < r["loss"] < 5 for r in rows), rows
PYEOF
  run env LC_ALL=de_DE.UTF-8 "$UVIT" info "$tmp/de/train_state.safetensors" --json
  grep -q '"step":2' "$tmp/out" || fail "de_DE info --json: $(cat "$tmp/out")"
  unset LOCPATH
else
  echo "skipped: localedef cannot make de_DE.UTF-8 here"
fi

# --- standard streams --------------------------------------------------------------------------
# A closed stderr: the run's log.jsonl took fd 2 and the progress lines were written into it.
"$UVIT" train --config fmnist_uvit_tiny --out "$tmp/closed" --steps 2 --batch 2 --no-grid "${T[@]}" \
  >&- 2>&- || fail "train with stdout and stderr closed: exit $?"
"$PY" -c "import json, sys; [json.loads(l) for l in open(sys.argv[1])]" "$tmp/closed/log.jsonl" 2>/dev/null &&
  echo "ok: closed stdout and stderr: log.jsonl is JSON lines" ||
  fail "closed stderr: log.jsonl holds: $(grep -v '^{' "$tmp/closed/log.jsonl" | head -2)"
# ... and `info` on such a log said "[json.exception.parse_error.101] ...", naming no file.
printf '{"event":"start","step":0}\ntrain 1/2 (50%%) loss 1.05\n' >"$tmp/bad.jsonl"
expect_error "^uvit: error: $tmp/bad.jsonl: line 2 is not JSON ('train 1/2 (50%) loss 1.05')" \
  "$UVIT" info "$tmp/bad.jsonl"
# stdout on a full disk: exit 0 with the output lost.
if [ -w /dev/full ]; then
  "$UVIT" info --config fmnist_uvit_tiny --json >/dev/full 2>"$tmp/err"; rc=$?
  [ $rc -eq 1 ] && grep -q '^uvit: error: standard output: write error' "$tmp/err" &&
    echo "ok: $(cat "$tmp/err")" || fail "info >/dev/full: exit $rc, $(cat "$tmp/err")"
fi
# TERM=dumb on a terminal printed "\033[K" as text; plain lines there (script(1) gives a tty).
if command -v script >/dev/null; then
  TERM=dumb script -qec "$(printf '%q ' "${B[@]}" "${T[@]}" --out "$tmp/dumb.png")" /dev/null >"$tmp/tty" 2>&1
  if grep -q $'\e' "$tmp/tty" || ! grep -q 'sample (network evaluations) 2/2 (100%)' "$tmp/tty"; then
    fail "TERM=dumb: $(cat -v "$tmp/tty" | head -3)"
  else
    echo "ok: TERM=dumb: plain progress lines"
  fi
fi

# --- paths ---------------------------------------------------------------------------------------
n255=$(printf 'n%.0s' $(seq 251))  # + ".png": 255 bytes, NAME_MAX
# The temporary name (NAME.tmp.PID) went past NAME_MAX: the sample was drawn, then not written.
run "${S[@]}" --out "$tmp/$n255.png"
[ -s "$tmp/$n255.png" ] && echo "ok: a 255-byte name is written" || fail "255-byte name not written"
# One more byte: refused after the work ("cannot create temporary file ...: File name too long").
expect_error "^uvit: error: --out $tmp/${n255}n.png: the name n*\.\.\. is 256 bytes; a file or folder name holds at most 255 (NAME_MAX)" \
  "${S[@]}" --out "$tmp/${n255}n.png"
deep=$tmp$(printf "/$(printf 'd%.0s' $(seq 200))%.0s" $(seq 21))/x.png
expect_error "^uvit: error: --out $tmp/d*\.\.\.: the path is ${#deep} bytes; at most 4031 here" "${S[@]}" --out "$deep"
# The current folder deleted under the shell: "folder . is not writable (No such file or directory)".
mkdir "$tmp/gone"
(cd "$tmp/gone" && rmdir ../gone && exec "${S[@]}" --out x.png) >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q '^uvit: error: --out x.png: the current folder no longer exists' "$tmp/err" &&
  echo "ok: $(cat "$tmp/err")" || fail "deleted current folder: exit $rc, $(cat "$tmp/err")"
# Spaces, a leading '-', '..' and a run folder behind a symbolic link: fine as written.
mkdir -p "$tmp/a b"
(cd "$tmp/a b" && "${S[@]}" --out -x.png && "${S[@]}" --out "../a b/./y z.png") &&
  [ -s "$tmp/a b/-x.png" ] && [ -s "$tmp/a b/y z.png" ] && echo "ok: spaces, '-x.png', '..'" ||
  fail "paths with spaces, '-' or '..'"
ln -s "$tmp/run" "$tmp/link"
run "$UVIT" train --out "$tmp/link" --resume --steps 2 --no-grid -q "${T[@]}"
[ -L "$tmp/link" ] && grep -q '"step":2' "$tmp/run/log.jsonl" && echo "ok: a symlinked run folder resumes" ||
  fail "symlinked run folder"
W=$tmp/run/nnet_ema.safetensors

# --- thread counts -------------------------------------------------------------------------------
# OMP_NUM_THREADS=100000 crashed (SIGSEGV: libgomp starts every thread asked for).
OMP_NUM_THREADS=100000 timeout 120 "${B[@]}" -q --out "$tmp/omp.png" 2>"$tmp/err"; rc=$?
[ $rc -eq 0 ] && [ -s "$tmp/omp.png" ] && grep -q '^uvit: warning: OMP_NUM_THREADS=100000 asks for 100000 threads, more than 4 for each of the' "$tmp/err" &&
  echo "ok: $(cat "$tmp/err")" || fail "OMP_NUM_THREADS=100000: exit $rc, $(cat "$tmp/err")"
# --- the variables the docs list, given garbage ---------------------------------------------------
# UVIT_CONV_IMPL=garbage (a typo in the convolution override) ran the default without a word.
inception_weights IW "${2:-}"
"$PY" -c "import numpy as np; np.save('$tmp/one.npy', np.zeros((1, 16, 16, 3), np.uint8))"
expect_error "^uvit: error: UVIT_CONV_IMPL=garbage: not a convolution kind (im2col, blocked, plain or winograd)" \
  env UVIT_CONV_IMPL=garbage "$UVIT" "${T[@]}" fid-features "$tmp/one.npy" --inception "$IW" --out "$tmp/f.npy" -q
[ ! -e "$tmp/f.npy" ] || fail "UVIT_CONV_IMPL=garbage wrote features"
# UVIT_CONFIG_DIR naming no folder (a typo) took the built-in preset instead of the user's copy.
run env UVIT_CONFIG_DIR="$tmp/nope" "$UVIT" info --config fmnist_uvit_tiny
grep -q "^uvit: warning: UVIT_CONFIG_DIR=$tmp/nope is not a folder" "$tmp/err" &&
  echo "ok: $(cat "$tmp/err")" || fail "UVIT_CONFIG_DIR missing: $(cat "$tmp/err")"
# bench's --json line on a full disk was lost without a word (fclose unchecked), exit 0.
if [ -w /dev/full ] && [ -w /dev ]; then
  expect_error "^uvit: error: /dev/full: write error: No space left on device" \
    "$UVIT" "${T[@]}" bench --config fmnist_uvit_tiny --iters 1 --warmup 0 --batch 2 -q --json /dev/full
fi

# --- files of an older uvit (docs/formats.md, "Across versions") ---------------------------------
# The uvit of 2026-11 (496a5f8) wrote log rows without "event" (tests/e2e/data/uvit_2026_11/log.jsonl
# is its `train --steps 4` log), a train_state without "optimizer", and eval manifests without
# precision and weights_sha256 and chunks without sFID features. Its weights files are today's.
O=$tmp/oldrun
cp -a "$tmp/run" "$O" && rm -rf "$O/ckpts"
cp tests/e2e/data/uvit_2026_11/log.jsonl "$O/log.jsonl"
"$PY" - "$O/train_state.safetensors" <<'PYEOF' || fail "writing an old train_state"
import json, struct, sys
p = sys.argv[1]
b = open(p, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"] = {k: v for k, v in h["__metadata__"].items()
                     if k in ("config", "loader_epoch", "loader_offset", "loader_seed", "num_params", "step")}
t = json.dumps(h, separators=(",", ":")).encode()
t += b" " * (-len(t) % 8)
open(p, "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PYEOF
# `info` said "row 1 has no "event": not a training run's log.jsonl" ...
run "$UVIT" info "$O/log.jsonl"
grep -q "a training run's log (2 rows, the last train row at step 4, loss 0.89" "$tmp/out" &&
  echo "ok: info reads an older uvit's log.jsonl" || fail "old log: $(cat "$tmp/out" "$tmp/err")"
# ... and "weights 2 tensors ... preset none" of its train_state.
run "$UVIT" info "$O/train_state.safetensors"
grep -q "^train_state   a training run's optimizer state (adamw, 1496346 parameters, step 2" "$tmp/out" &&
  echo "ok: info reads an older uvit's train_state" || fail "old train_state: $(cat "$tmp/out")"
# Resumed by today's uvit (kept: it worked).
run "$UVIT" train --out "$O" --resume --steps 3 --no-grid -q "${T[@]}"
grep -q "at step 3" "$tmp/out" && "$PY" -c "import json, sys; [json.loads(l) for l in open(sys.argv[1])]" "$O/log.jsonl" &&
  echo "ok: an older uvit's run resumes" || fail "old run resume: $(cat "$tmp/out" "$tmp/err")"
# eval's chunks: an older manifest was "chunks of a different run (precision (none) -> ...".
inception_weights I "${2:-}"
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 4 --steps 2 --class 1 -q --npy "$tmp/s.npy"
run "$UVIT" "${T[@]}" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=("$UVIT" "${T[@]}" eval --config fmnist_uvit_tiny --weights "$W" --n 2 --chunk 1 --steps 2 --sampler dpm-solver
  --seed 1 --ref "$tmp/ref.npz" --inception "$I" --metrics fid --out "$tmp/ev.npz" --json "$tmp/ev.json")
run "${E[@]}" -q
fid0=$("$PY" -c "import json, sys; print(json.load(open(sys.argv[1]))['fid'])" "$tmp/ev.json")
as_old_chunks() {  # the chunks as the uvit of 2026-11 left them, half done
  eval_parts_2026_11 "$tmp/ev.npz.parts" chunk_0.npz
  rm -f "$tmp/ev.npz.parts/chunk_1.npz"
}
as_old_chunks
run "$UVIT" info "$tmp/ev.npz.parts/manifest.json"
grep -q "^eval_chunks   uvit eval's finished chunks (1 of 2)" "$tmp/out" &&
  echo "ok: info reads an older uvit's eval manifest" || fail "old manifest: $(cat "$tmp/out" "$tmp/err")"
touch -d '1 hour ago' "$W"  # the weights unchanged since the manifest was written: its chunks are theirs
run "${E[@]}"
grep -q "manifest.json predates the record of precision \"fp32\", weights_sha256" "$tmp/err" &&
  grep -q "chunk_0.npz: made by an older uvit without the sFID features; the features of its chunks are computed again from their stored samples" "$tmp/err" &&
  "$PY" -c "import json, sys; assert json.load(open(sys.argv[1]))['fid'] == float(sys.argv[2])" "$tmp/ev.json" "$fid0" &&
  echo "ok: an older uvit's eval chunks resume" || fail "old chunks: $(cat "$tmp/err")"
as_old_chunks
touch "$W"  # changed after the manifest: its chunks may be of other weights
expect_error "^uvit: error: $tmp/ev.npz.parts: holds chunks made by an older uvit, whose $tmp/ev.npz.parts/manifest.json does not record precision, weights_sha256, so they cannot be checked against this run; give each model its own --out" \
  "${E[@]}" -q

exit $fails
