#!/usr/bin/env bash
# A damaged image found mid-training on 2 ranks (docs/formats.md, "Training runs"): every rank
# learns of the failing rank's batch before the step's collectives, all write the checkpoint of
# the last completed step and exit 1, rank 0 printing the failing rank's line; with the file
# replaced, --resume on 2 ranks gives the weights of a straight 2-rank run.
set -uo pipefail
source tests/mpi/lib.bash

"$PY" tests/e2e/data/damaged_folder.py "$tmp" || fail "writing the images and the config"
T=(train --config "$tmp/folder.json" --no-grid --batch 2 -q)
cp -r "$tmp/good" "$tmp/bad" && cp "$tmp/cut.png" "$tmp/bad/1.png"
# One image per rank and step: the permutation puts 1.png 8th, rank 1's in step 4.
failing mpi 2 "${T[@]}" --data "$tmp/bad" --out "$tmp/r" --steps 8 >"$tmp/out" 2>"$tmp/err"
rc=$?
line=$(grep '^uvit: error:' "$tmp/err")
[ $rc -eq 1 ] && [ "$(grep -c '^uvit: error:' "$tmp/err")" -eq 1 ] &&
  grep -q "^uvit: error: rank 1: .*bad/1.png: .*; checkpoint written at step 3 (continue with --resume" <<<"$line" \
  && echo "ok: exit 1, rank 0 prints: $line" || { fail "2 ranks, data error: rc $rc"; cat "$tmp/err"; }
grep -q '"event":"checkpoint",.*"step":3,' "$tmp/r/log.jsonl" && echo "ok: checkpoint of step 3" ||
  fail "no checkpoint row of step 3: $(cat "$tmp/r/log.jsonl")"
cp "$tmp/good/1.png" "$tmp/bad/1.png"
run mpi 2 "${T[@]}" --data "$tmp/bad" --out "$tmp/r" --resume --steps 8
run mpi 2 "${T[@]}" --data "$tmp/good" --out "$tmp/straight" --steps 8
same_files "$tmp/r" "$tmp/straight" "2 ranks resumed after the data error vs a straight 2-rank run"
exit $fails
