#!/usr/bin/env bash
# Regressions from the thirteenth new-user audit (docs/ux_audit.md, "round 13"): each fix's check
# failed before it; the others keep what the audit found fine (a run folder moved, copied or
# linked; commands reading a run while `uvit train` writes it; long inputs).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
T=(--threads 1)
tiny_run  # $tmp/run at step 1, $W its EMA weights

# --- a run folder that moves -------------------------------------------------------------------
# `uvit eval --out RUN/ev.npz` half done, then `mv RUN RUN2`: the same eval on RUN2's weights was
# refused as "holds chunks of a different run (weights "/.../RUN/..." -> "/.../RUN2/...")", though
# the manifest's SHA-256 says they are the same file; so was `--weights ./RUN/w` for `RUN/w`.
inception_weights I "${2:-}"
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 4 --steps 2 --class 1 -q \
  --npy "$tmp/s.npy"
run "$UVIT" "${T[@]}" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=("$UVIT" "${T[@]}" eval --config fmnist_uvit_tiny --n 2 --chunk 1 --steps 2 --sampler dpm-solver
  --seed 1 --ref "$tmp/ref.npz" --inception "$I" --metrics fid)
run "${E[@]}" --weights "$W" --out "$tmp/run/ev.npz" --max-chunks 1 -q
mv "$tmp/run" "$tmp/moved"
W=$tmp/moved/nnet_ema.safetensors
run "${E[@]}" --weights "$W" --out "$tmp/moved/ev.npz" --json "$tmp/ev.json"
grep -q "its chunks are of the same file at another path (weights \"$tmp/run/nnet_ema.safetensors\" is now \"$W\"" "$tmp/err" &&
  "$PY" -c "import json, sys; j = json.load(open(sys.argv[1])); assert j['resumed_chunks'] == 1, j" "$tmp/ev.json" &&
  echo "ok: eval resumes the chunks of a run folder moved: $(grep 'same file' "$tmp/err")" ||
  fail "eval after mv RUN RUN2: $(cat "$tmp/err")"
(cd "$tmp" && run "${E[@]}" --weights ./moved/../moved/nnet_ema.safetensors --out moved/ev.npz -q)
[ -s "$tmp/moved/ev.npz" ] && grep -q "\"weights\": \"$W\"" "$tmp/moved/ev.npz.parts/manifest.json" &&
  echo "ok: eval with ./RUN/../RUN/w for RUN/w (the path recorded normalised)" ||
  fail "eval with ./moved/../moved/w: $(cat "$tmp/err")"
# Other weights at the same path stay refused.
cp "$W" "$tmp/other.safetensors"
"$PY" -c "
import sys
b = bytearray(open(sys.argv[1], 'rb').read()); b[-4:] = b'\x00\x00\x80\x3f'
open(sys.argv[1], 'wb').write(b)" "$tmp/other.safetensors"
expect_error "holds chunks of a different run (weights \"$W\" -> \"$tmp/other.safetensors\", weights_sha256 " \
  "${E[@]}" --weights "$tmp/other.safetensors" --out "$tmp/moved/ev.npz" -q

# Kept (checked and fine): the moved run resumes, from itself and from a snapshot; a copy (`cp -a`)
# and a symbolic link to it resume as runs of their own names; `info` and `sample` read it.
run "$UVIT" train --out "$tmp/moved" --resume --steps 2 --set train.save_interval=1 --no-grid -q "${T[@]}"
grep -q "at step 2" "$tmp/out" || fail "resume of the moved run: $(cat "$tmp/out" "$tmp/err")"
cp -a "$tmp/moved" "$tmp/copy"
ln -s moved "$tmp/link"
run "$UVIT" train --resume "$tmp/copy/ckpts/2" --out "$tmp/copy" --steps 3 --no-grid -q "${T[@]}"
run "$UVIT" train --out "$tmp/link" --resume --steps 3 --no-grid -q "${T[@]}"
[ -L "$tmp/link" ] && grep -q '"step":3' "$tmp/moved/log.jsonl" && grep -q '"step":3' "$tmp/copy/log.jsonl" &&
  ! cmp -s "$tmp/moved/log.jsonl" "$tmp/copy/log.jsonl" &&
  echo "ok: a moved run, its copy and a link to it resume" || fail "copy/link resume"
run "$UVIT" "${T[@]}" sample --config "$tmp/copy" --weights "$tmp/copy/nnet_ema.safetensors" --class 1 \
  --n 1 --steps 2 -q --out "$tmp/copy.png"
run "$UVIT" info "$tmp/copy/train_state.safetensors"
grep -q "step 3, config fmnist_uvit_tiny" "$tmp/out" || fail "info of the copy: $(cat "$tmp/out")"

# --- reading a run while `uvit train` writes it -------------------------------------------------
# Kept: `sample` and `info` on the run's files while a training saves them every step (each file
# is replaced by a rename: a reader has the old file or the new one, whole); two `sample` with the
# same --out at once each write a whole file (the later rename wins).
"$UVIT" train --out "$tmp/moved" --resume --steps 40 --set train.save_interval=1 --no-grid -q "${T[@]}" \
  >/dev/null 2>"$tmp/busy.err" &
p=$!
reads=0
while kill -0 $p 2>/dev/null && [ $reads -lt 6 ]; do
  # A sample whose weights were replaced between its load and their hash is refused (hash_once.sh):
  # a whole result or that one line, never a mixed record.
  if ! "$UVIT" "${T[@]}" sample --config "$tmp/moved" --weights "$tmp/moved/nnet_ema.safetensors" \
    --class 1 --n 1 --steps 2 -q --out "$tmp/busy.png" >"$tmp/out" 2>"$tmp/err"; then
    [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "changed while it was read (a training run saving it?); run again" "$tmp/err" ||
      fail "sample while train saves: $(cat "$tmp/err")"
  fi
  run "$UVIT" info "$tmp/moved/train_state.safetensors" --json
  run "$UVIT" info "$tmp/moved/log.jsonl" --json
  reads=$((reads + 1))
done
wait $p || fail "train while read: $(cat "$tmp/busy.err")"
echo "ok: $reads rounds of sample/info while train saved every step"
S=("$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 2 --steps 2 -q --out "$tmp/same.png" --npy "$tmp/same.npy")
"${S[@]}" 2>"$tmp/a.err" & a=$!
"${S[@]}" --seed 7 2>"$tmp/b.err" & b=$!
wait $a && wait $b && run "$UVIT" info "$tmp/same.png" && "$PY" -c "import numpy as np, sys; assert np.load(sys.argv[1]).shape == (2, 28, 28, 1)" "$tmp/same.npy" &&
  [ -z "$(ls "$tmp" | grep '\.tmp\.')" ] && echo "ok: two samples onto one --out" || fail "two samples: $(cat "$tmp/a.err" "$tmp/b.err")"

# --- a run folder moved while it trains ----------------------------------------------------------
# `mv RUN RUN2` during `uvit train --out RUN`: the run wrote its later checkpoints into a new RUN/
# (no config.json, no log.jsonl: its log stream stayed open on RUN2/log.jsonl, which logged them
# as saved) and exited 0: two halves of one run, neither resumable as it was. It now stops at the
# next write, naming the folder's new place; RUN2 resumes from its last snapshot.
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/mv" --steps 1 --batch 2 --no-grid -q "${T[@]}"
"$UVIT" train --out "$tmp/mv" --resume --steps 300 --set train.save_interval=10 --no-grid -q "${T[@]}" \
  >/dev/null 2>"$tmp/mv.err" &
p=$!
for _ in $(seq 600); do [ -e "$tmp/mv/ckpts/10/train_state.safetensors" ] && break; sleep 0.05; done
mv "$tmp/mv" "$tmp/mv2"
wait $p; rc=$?
[ $rc -eq 1 ] && [ ! -e "$tmp/mv" ] &&
  grep -q "^uvit: error: $tmp/mv: the run folder was moved to $tmp/mv2 while training; nothing more is written" "$tmp/mv.err" &&
  echo "ok: $(cat "$tmp/mv.err")" ||
  fail "train with its folder moved: exit $rc, $(ls "$tmp/mv" 2>&1 | tr '\n' ' '), $(cat "$tmp/mv.err")"
run "$UVIT" train --out "$tmp/mv2" --resume --steps 40 --no-grid -q "${T[@]}"
grep -q "at step 40" "$tmp/out" && echo "ok: the moved run resumes" || fail "resume of the moved run: $(cat "$tmp/err")"

# --- long values quoted in error lines ---------------------------------------------------------
# A 100 KB value was quoted whole (`override 'optimizer.lr=xxx...'`, sample.algorithm, dataset.name,
# nnet.name, --class, a number option): one line, but a terminal's worth of x. Each quote now keeps
# the key and the value's first 57 characters and "..." (include/uvit/quote.hpp).
X=$(head -c 100000 /dev/zero | tr '\0' x)
x57=$(head -c 57 /dev/zero | tr '\0' x)
short_error() {  # short_error NEEDLE CMD...: expect_error, and the line under 1000 bytes
  expect_error "$@"
  [ "$(wc -c <"$tmp/err")" -lt 1000 ] || fail "a $(wc -c <"$tmp/err")-byte error line: ${*:2:4}"
}
S=("$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 1 --steps 2 -q --npy "$tmp/l.npy")
short_error "override 'optimizer.lr=$x57...': optimizer.lr expects a number, got \"xxx" \
  "${S[@]}" --set "optimizer.lr=$X"
short_error "sample.algorithm '$x57...' is not an official sampler" "${S[@]}" --class 1 \
  --set "sample.algorithm=$X"
short_error "nnet.name \"$x57...\" is not a known network" "${S[@]}" --set "nnet.name=$X"
short_error "override '$x57...=1': unknown section" "${S[@]}" --set "$X.a=1"
short_error "--class '$x57...' is not a class of fmnist_uvit_tiny" "${S[@]}" --class "$X"
short_error "--steps must be a number, got '$x57...'" "${S[@]}" --steps "$X"
short_error "unknown dataset '$x57...'" "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny \
  --out "$tmp/long" --steps 1 --batch 2 -q --no-grid --set "dataset.name=$X"

exit $fails
