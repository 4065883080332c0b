#!/usr/bin/env bash
# `uvit sample`, `uvit eval` and `uvit fid-features` on 2 ranks (docs/distributed.md): the work is
# shared, rank 0 writes the results, byte-identical to one process.
set -uo pipefail
source tests/mpi/lib.bash
fid_setup 3 40
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" --steps 2 --no-grid -q
NW=$tmp/run/nnet_ema.safetensors

# 10 samples in mini-batches of 4: rank 0 draws 0-3, rank 1 4-9.
S=(sample --config "$tmp/tiny.json" --weights "$NW" --n 10 --classes all -q)
run "$UVIT" "${S[@]}" --npy "$tmp/s1.npy" --out "$tmp/g1.png" --dir "$tmp/d1"
run mpi 2 "${S[@]}" --npy "$tmp/s2.npy" --out "$tmp/g2.png" --dir "$tmp/d2"
cmp -s "$tmp/s1.npy" "$tmp/s2.npy" && cmp -s "$tmp/g1.png" "$tmp/g2.png" &&
  diff -r "$tmp/d1" "$tmp/d2" >/dev/null && [ "$(ls "$tmp/d2" | wc -l)" -eq 10 ] &&
  echo "ok: sample on 2 ranks == 1 process (npy, grid, 10 PNGs)" || fail "sample: 2 ranks differ from 1"

# One mini-batch of 4, drawn by rank 1 alone: rank 0's report counts the busiest rank's work.
run mpi 2 sample --config "$tmp/tiny.json" --weights "$NW" --n 4 --classes all --npy "$tmp/s4.npy"
grep -q "^4 samples in [0-9.]* s (3 network evaluations)$" "$tmp/err" &&
  echo "ok: sample on 2 ranks reports the busy rank's 3 evaluations" ||
  fail "sample report on 2 ranks: $(tail -1 "$tmp/err")"

# --seed -1: one seed, rank 0's draw, on every rank: printed once, and the samples are one process's
# with that seed (before, each rank drew its own: rank 1's samples came from another seed than the
# one printed and recorded, and every rank printed its own).
run mpi 2 sample --config "$tmp/tiny.json" --weights "$NW" --n 8 --classes all --seed -1 --npy "$tmp/r2.npy"
seed=$(sed -n 's/^seed \([0-9]*\)$/\1/p' "$tmp/err")
if [ "$(grep -c '^seed ' "$tmp/err")" -eq 1 ] && [ -n "$seed" ]; then
  run "$UVIT" sample --config "$tmp/tiny.json" --weights "$NW" --n 8 --classes all --seed "$seed" \
    --npy "$tmp/r1.npy" -q
  cmp -s "$tmp/r1.npy" "$tmp/r2.npy" && echo "ok: --seed -1 on 2 ranks == 1 process with seed $seed" ||
    fail "--seed -1 on 2 ranks: the samples are not seed $seed's"
else
  fail "--seed -1 on 2 ranks: want one 'seed N' line: $(cat "$tmp/err")"
fi

# eval: 10 samples in 4 chunks of 3 (2 per rank), FID from rank 0.
E=(eval --config "$tmp/tiny.json" --weights "$NW" --n 10 --chunk 3 --ref "$tmp/st.npz" --inception "$W" -q)
run "$UVIT" "${E[@]}" --out "$tmp/e1.npz"
fid1=$(sed -n 's/^FID: \([^ ]*\).*/\1/p' "$tmp/out")
run mpi 2 "${E[@]}" --out "$tmp/e2.npz"
fid2=$(sed -n 's/^FID: \([^ ]*\).*/\1/p' "$tmp/out")
[ "$(grep -c '^FID' "$tmp/out")" -eq 1 ] || fail "eval on 2 ranks: expected one FID line: $(cat "$tmp/out")"
[ -n "$fid1" ] && [ "$fid1" = "$fid2" ] && cmp -s "$tmp/e1.npz" "$tmp/e2.npz" &&
  echo "ok: eval on 2 ranks == 1 process (FID $fid2, samples .npz)" || fail "eval: FID $fid2 vs $fid1 or samples differ"

# fid-features of 40 images: batches of 32, rank 0 the first, rank 1 the rest.
run "$UVIT" fid-features "$tmp/imgs.npy" --inception "$W" --out "$tmp/f1.npy" --logits "$tmp/l1.npy" -q
run mpi 2 fid-features "$tmp/imgs.npy" --inception "$W" --out "$tmp/f2.npy" --logits "$tmp/l2.npy" -q
cmp -s "$tmp/f1.npy" "$tmp/f2.npy" && cmp -s "$tmp/l1.npy" "$tmp/l2.npy" &&
  echo "ok: fid-features on 2 ranks == 1 process" || fail "fid-features: 2 ranks differ from 1"
exit $fails
