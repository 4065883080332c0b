#!/usr/bin/env bash
# The CPU's kept blocked weights from the command line (docs/kernels.md, "Kept blocked weights"):
# samples of official-layout U-ViT and DiT fixtures are byte-identical with the copies kept (the
# default) and with none (UVIT_KEPT_WEIGHTS_MB=0, every weight reordered per call), in fp32 and,
# where the CPU has bf16 units, bf16; a bad UVIT_KEPT_WEIGHTS_MB is one line naming it.
set -euo pipefail
UVIT=$1 FX=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
precs=fp32
if DNNL_MAX_CPU_ISA=ALL "$UVIT" bench -c "$FX/cond_p2.json" --batch 1 --iters 1 --precision bf16 \
     2>/dev/null | grep -q '"precision": "bf16"'; then
  precs="fp32 bf16"
fi
for c in cond_p2 dit_p2; do
  for p in $precs; do
    # 5 solver steps: each weight is used 5 times at one batch size. 100 samples in one batch
    # (16-18 tokens each: products of more than 1536 rows) keep no fp32 copy (the row limit).
    for n in 4 100; do
      run() {
        "$UVIT" sample -c "$FX/$c.json" -w "$FX/$c.pth" --n $n --batch $n --classes all --steps 5 \
          --seed 3 --precision "$p" --npy "$tmp/$1.npy" -q
      }
      run kept
      UVIT_KEPT_WEIGHTS_MB=0 run none
      cmp -s "$tmp/kept.npy" "$tmp/none.npy" ||
        { echo "FAIL: $c $p n=$n: the samples differ with and without kept blocked weights"
          exit 1; }
      echo "$c $p n=$n: kept and per-call reordered weights give the same bytes"
    done
  done
done
for v in abc -1 12x; do
  if UVIT_KEPT_WEIGHTS_MB=$v "$UVIT" sample -c "$FX/cond_p2.json" -w "$FX/cond_p2.pth" --n 1 \
       --classes all --npy "$tmp/x.npy" -q 2>"$tmp/err"; then
    echo "FAIL: UVIT_KEPT_WEIGHTS_MB=$v was accepted"
    exit 1
  fi
  [ "$(wc -l <"$tmp/err")" = 1 ] &&
    grep -q "UVIT_KEPT_WEIGHTS_MB=$v: not a whole number" "$tmp/err" ||
    { echo "FAIL: UVIT_KEPT_WEIGHTS_MB=$v: want one line naming it: $(cat "$tmp/err")"; exit 1; }
done
echo "kept_weights: ok"
