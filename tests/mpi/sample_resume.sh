#!/usr/bin/env bash
# `uvit sample --dir D` resumed on 2 ranks (docs/cli.md "--dir", docs/distributed.md): rank 0 reads
# what D holds and every rank draws its share of the missing mini-batches only; the folder ends as
# one process's straight run, byte for byte, and a folder of other settings is refused in one line.
set -uo pipefail
source tests/mpi/lib.bash
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" sample.sample_steps=3 sample.mini_batch_size=2
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" --steps 2 --no-grid -q
S=(sample --config "$tmp/tiny.json" --weights "$tmp/run/nnet_ema.safetensors" --classes all)
run "$UVIT" "${S[@]}" --n 11 --dir "$tmp/one" --npy "$tmp/one.npy" -q

# 3 of 11 in D (one process), then 2 ranks: the unit of 2..3 again (sample 2 kept), and 4..10.
run "$UVIT" "${S[@]}" --n 3 --dir "$tmp/two" -q
run mpi 2 "${S[@]}" --n 11 --dir "$tmp/two" --npy "$tmp/two.npy" -q
diff -r "$tmp/one" "$tmp/two" >/dev/null && cmp -s "$tmp/one.npy" "$tmp/two.npy" &&
  echo "ok: 3 PNGs, then 2 ranks for the rest == one straight process (11 PNGs, .npy)" ||
  fail "resumed on 2 ranks differs from one process"
# Resumed on 2 ranks again with the last two missing: only their unit is drawn.
rm "$tmp/two/000009.png" "$tmp/two/000010.png"
mpi 2 "${S[@]}" --n 11 --dir "$tmp/two" >"$tmp/out" 2>"$tmp/err" || fail "rerun: $(cat "$tmp/err")"
grep -q "^$tmp/two: 9 of 11 samples already there; drawing the 2 missing (3 samples in whole mini-batches of 2)$" \
  "$tmp/err" && grep -q "^3 samples in" "$tmp/err" && diff -r "$tmp/one" "$tmp/two" >/dev/null &&
  echo "ok: $(grep 'already there' "$tmp/err")" || fail "2-rank rerun: $(cat "$tmp/err")"
one_error_line ".*two/000000.png was drawn with other settings (--seed 0 there, 5 in this run)" \
  "$UVIT" "${S[@]}" --n 11 --dir "$tmp/two" --seed 5 -q
exit $fails
