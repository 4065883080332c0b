#!/usr/bin/env bash
# CPU seconds per network call of `uvit sample`'s loop on one thread (docs/benchmarks.md, "AMX
# Xeon, 2026-12-06 (2)"): user + sys of a 30-step process minus a 10-step one, over 20, for 2
# images with classifier-free guidance (each call a forward at batch 4), U-ViT-S/2
# (bench/configs/uvit_s_2_latent.json) and DiT-S/2 (dit_s_2), fp32 and bf16; the binaries
# alternate per row (old and new). PRECS and CONFIGS (space-separated) narrow the rows.
# Usage: bench/sample_seconds.sh BINARY...
set -euo pipefail
cd "$(dirname "$0")/.."
PRECS=${PRECS:-"bf16 fp32"}
CONFIGS=${CONFIGS:-"bench/configs/uvit_s_2_latent.json dit_s_2"}
export OMP_NUM_THREADS=1
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cpu() {  # BIN CONFIG STEPS PREC: CPU seconds of one process
  /usr/bin/time -f "%U %S" -o "$tmp" "$1" --threads 1 bench --config "$2" --mode sample --n 2 \
    --batch 2 --steps "$3" --precision "$4" -q >/dev/null 2>&1
  awk '{print $1 + $2}' "$tmp"
}
printf '| config | precision | binary | CPU s / call |\n|---|---|---|---|\n'
for prec in $PRECS; do
  for cfg in $CONFIGS; do
    for bin in "$@"; do
      a=$(cpu "$bin" "$cfg" 30 "$prec")
      b=$(cpu "$bin" "$cfg" 10 "$prec")
      printf '| %s | %s | %s | %s |\n' "$(basename "$cfg" .json)" "$prec" "$bin" \
        "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.4f", (a - b) / 20}')"
    done
  done
done
