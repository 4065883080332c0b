#!/usr/bin/env bash
# Regressions from the twelfth new-user audit (docs/ux_audit.md, "round 12"): each fix's check
# failed before it; the others keep what the audit found fine (the docs pages' commands as
# written; SIGKILL at any moment: nothing that existed is lost, the rerun ends as a straight run).
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3} T=(--threads 1)
source tests/e2e/data/lib.sh
tiny_run  # $tmp/run at step 1, $W its EMA weights
S=("$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 2 --steps 2 -q "${T[@]}")

# --- the autoencoder options on a pixel preset -------------------------------------------------
# docs/autoencoder.md's --autoencoder autoencoder_kl.pth given to a Fashion-MNIST preset was dropped
# without a word, a file that does not exist included (the samples drawn, exit 0).
expect_error "^uvit: error: --autoencoder $tmp/nothere.pth: config fmnist_uvit_tiny is a pixel model" \
  "${S[@]}" --autoencoder "$tmp/nothere.pth" --out "$tmp/g.png"
expect_error "^uvit: error: --latent-stats $tmp/s.pt: config fmnist_uvit_tiny is a pixel model" \
  "${S[@]}" --latent-stats "$tmp/s.pt" --out "$tmp/g.png"
expect_error "^uvit: error: --autoencoder-config sd_kl_f8: config fmnist_uvit_tiny is a pixel model" \
  "${S[@]}" --autoencoder-config sd_kl_f8 --out "$tmp/g.png"
[ -e "$tmp/g.png" ] && fail "a refused sample wrote $tmp/g.png"
# eval dropped it the same way (the FID printed, exit 0).
expect_error "^uvit: error: --autoencoder $tmp/nothere.pth: config fmnist_uvit_tiny is a pixel model" \
  "$UVIT" eval --config fmnist_uvit_tiny --weights "$W" --n 2 --steps 2 -q "${T[@]}" \
  --autoencoder "$tmp/nothere.pth" --ref "$tmp/ref.npz" --out "$tmp/e.npz"

# --- a log.jsonl row cut short (an append stopped by a power cut or a full disk) -----------------
# `uvit info` refused the whole log ("line 4 is not JSON"); the rows around it stand.
cp -a "$tmp/run" "$tmp/cut"
printf '{"event":"train","step":3,"lo' >>"$tmp/cut/log.jsonl"
run "$UVIT" info "$tmp/cut/log.jsonl" --json
"$PY" -c "
import json, sys
j = json.load(open(sys.argv[1]))
assert j['kind'] == 'log' and j['rows_cut_short'] == 1 and j['step'] == 1, j
" "$tmp/out" && echo "ok: info on a log with a row cut short: $(cat "$tmp/out")" ||
  fail "info on a log with a row cut short: $(cat "$tmp/out" "$tmp/err")"
# The next call's rows were appended onto the cut one (`..."lo{"event":"start"...`): the resume
# ends it first, so its own rows stay whole.
cp -a "$tmp/cut" "$tmp/cut2"
run "$UVIT" train --out "$tmp/cut2" --resume --steps 2 --batch 2 --no-grid -q
"$PY" -c "
import json, sys
rows = [l for l in open(sys.argv[1]).read().split(chr(10)) if l]
bad = [l for l in rows if not l.endswith('}')]
ev = [json.loads(l)['event'] for l in rows if l.endswith('}')]
assert bad == ['{\"event\":\"train\",\"step\":3,\"lo'] and ev.count('start') == 2 and ev[-1] == 'train', (bad, ev)
" "$tmp/cut2/log.jsonl" && echo "ok: a resume after a row cut short keeps its own rows whole" ||
  fail "resume after a cut row: $(cat "$tmp/cut2/log.jsonl")"
# Text another program wrote into the log is still refused.
printf '\nhello\n' >>"$tmp/cut/log.jsonl"
expect_error "is not JSON ('hello')" "$UVIT" info "$tmp/cut/log.jsonl"

# --- docs/fit.md's training commands as written --------------------------------------------------
# `uvit train -c fitv1_xl_2 --set dataset.name=npy_folder --set dataset.path=lat --set
# dataset.random_flip=true ...` was refused: `unknown key dataset.random_flip` (the FiT presets'
# dataset has none), though the page's flips need it; here at a toy width on four latents.
"$PY" -c "
import numpy as np, sys
for i, n in enumerate(['n01_a', 'n01_b', 'n02_c', 'n02_d']):
    np.save(f'{sys.argv[1]}/{n}.npy', np.random.RandomState(i).randn(4, 8, 8).astype('float32'))
" "$(mkdir -p "$tmp/lat" && echo "$tmp/lat")"
run "$UVIT" train -c fitv1_xl_2 --set dataset.name=npy_folder --set "dataset.path=$tmp/lat" \
  --set dataset.random_flip=true --set 'nnet.input_size=[64,64]' --out "$tmp/fit" --set nnet.num_heads=1 \
  --set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.adaln_lora_dim=8 --set nnet.patch_size=2 \
  --set nnet.context_size=256 --steps 1 --batch 2 --no-grid -q "${T[@]}"
grep -q '"random_flip": *true' "$tmp/fit/config.json" 2>/dev/null &&
  echo "ok: docs/fit.md's train command with dataset.random_flip=true on fitv1_xl_2" ||
  fail "fitv1_xl_2 with dataset.random_flip=true: $(cat "$tmp/err")"
expect_error "dataset.random_flip: expected true or false" "$UVIT" train -c fitv2_xl_2 \
  --set dataset.random_flip=maybe --out "$tmp/fit2"

# --- SIGKILL inside a write (UVIT_TEST_WRITE_PAUSE_MS holds it before its rename) ---------------
# kill9_in_write PATTERN CMD...: CMD in the background, SIGKILL once a temporary file matching
# PATTERN (a glob under $tmp) exists, i.e. inside that write (each write waits 2 s before its
# rename); fails if none appears in 60 s.
kill9_in_write() {
  local pattern=$1 end=$((SECONDS + 60)); shift
  UVIT_TEST_WRITE_PAUSE_MS=2000 "$@" >/dev/null 2>&1 &
  local p=$!
  while ((SECONDS < end)) && kill -0 $p 2>/dev/null; do
    compgen -G "$tmp/$pattern" >/dev/null && break
    sleep 0.05
  done
  compgen -G "$tmp/$pattern" >/dev/null || fail "no $pattern appeared: $*"
  kill -KILL $p 2>/dev/null; wait $p 2>/dev/null
}
# sample: the outputs that existed stay whole; the leftover temporary file does not block the rerun.
run "${S[@]}" --out "$tmp/ref.png" --npy "$tmp/ref.npy"
echo old >"$tmp/s.npy"
kill9_in_write 's.npy.tmp.*' "${S[@]}" --npy "$tmp/s.npy"
[ "$(cat "$tmp/s.npy")" = old ] && echo "ok: SIGKILL inside the .npy write: the old file whole" ||
  fail "SIGKILL inside the .npy write: $tmp/s.npy changed"
run "${S[@]}" --npy "$tmp/s.npy"
cmp -s "$tmp/s.npy" "$tmp/ref.npy" && echo "ok: sample rerun after SIGKILL: identical" ||
  fail "sample rerun after SIGKILL differs"
# train: killed inside the run's first checkpoint (the same command again starts it over), then
# inside a resumed call's checkpoint (the step-4 files stay whole); each ends as a straight run.
TR=(--config fmnist_uvit_tiny --steps 4 --batch 2 --no-grid -q "${T[@]}" --set train.save_interval=2)
run "$UVIT" train "${TR[@]}" --out "$tmp/straight"
kill9_in_write 'k/.saving/*.tmp.*' "$UVIT" train "${TR[@]}" --out "$tmp/k"
[ -e "$tmp/k/train_state.safetensors" ] && fail "a checkpoint under its final name after SIGKILL"
run "$UVIT" train "${TR[@]}" --out "$tmp/k"
same_files "$tmp/straight" "$tmp/k" "SIGKILL in the first checkpoint, the command again"
cp -a "$tmp/k" "$tmp/k4"
kill9_in_write 'k/.saving/*.tmp.*' "$UVIT" train --out "$tmp/k" --resume --steps 6 --no-grid -q "${T[@]}"
same_files "$tmp/k4" "$tmp/k" "SIGKILL in a resumed call's checkpoint: the step-4 files"
run "$UVIT" train --out "$tmp/k" --resume --steps 6 --no-grid -q "${T[@]}"
run "$UVIT" train --out "$tmp/k4" --resume --steps 6 --no-grid -q "${T[@]}"
same_files "$tmp/k4" "$tmp/k" "SIGKILL in a checkpoint, then --resume"
run "$UVIT" info "$tmp/k/log.jsonl"
exit $fails
