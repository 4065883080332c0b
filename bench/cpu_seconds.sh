#!/usr/bin/env bash
# CPU seconds per iteration on one thread, robust to a shared machine (docs/benchmarks.md, "Zen 5,
# 2026-12-06: non-GEMM costs"): user + sys of an I-iteration process minus a 1-iteration one,
# over I - 1 (both after one warm-up iteration), for U-ViT-S/2 (bench/configs/uvit_s_2_latent.json)
# and DiT-S/2 (dit_s_2), batch 8, forward (I = 4) and training step (I = 3), fp32 and bf16.
# Usage: bench/cpu_seconds.sh BINARY...     uvit binaries, alternated per row (old and new)
#        bench/cpu_seconds.sh torch         the PyTorch 1.13 twin (tests/reference/bench_torch.py)
# MODES, PRECS and CONFIGS (space-separated) narrow the rows; ITERS_FORWARD and ITERS_TRAIN (I)
# lengthen the runs where rounds disagree; BATCH (default 8) sets the batch.
set -euo pipefail
cd "$(dirname "$0")/.."
MODES=${MODES:-"forward train"}
PRECS=${PRECS:-"fp32 bf16"}
CONFIGS=${CONFIGS:-"dit_s_2 bench/configs/uvit_s_2_latent.json"}
export OMP_NUM_THREADS=1
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cpu() {  # BIN CONFIG MODE ITERS PREC: CPU seconds of one process
  local json=$2
  [ -f "$json" ] || json=configs/$2.json
  if [ "$1" = torch ]; then
    /usr/bin/time -f "%U %S" -o "$tmp" /usr/bin/python3 tests/reference/bench_torch.py --child \
      --config "$json" --batch "${BATCH:-8}" --threads 1 --warmup 1 --iters "$4" --mode "$3" \
      --precision "$5" >/dev/null 2>&1
  else
    /usr/bin/time -f "%U %S" -o "$tmp" "$1" --threads 1 bench --config "$2" --batch "${BATCH:-8}" \
      --mode "$3" --iters "$4" --warmup 1 --precision "$5" >/dev/null 2>&1
  fi
  awk '{print $1 + $2}' "$tmp"
}
printf '| config | mode | precision | binary | CPU s / iter |\n|---|---|---|---|---|\n'
for prec in $PRECS; do
  for cfg in $CONFIGS; do
    for mode in $MODES; do
      iters=${ITERS_FORWARD:-4}
      [ "$mode" = train ] && iters=${ITERS_TRAIN:-3}
      for bin in "$@"; do
        a=$(cpu "$bin" "$cfg" "$mode" "$iters" "$prec")
        b=$(cpu "$bin" "$cfg" "$mode" 1 "$prec")
        printf '| %s | %s | %s | %s | %s |\n' "$(basename "$cfg" .json)" "$mode" "$prec" "$bin" \
          "$(awk -v a="$a" -v b="$b" -v i="$iters" 'BEGIN {printf "%.3f", (a - b) / (i - 1)}')"
      done
    done
  done
done
