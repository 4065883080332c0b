#!/usr/bin/env bash
# Where the kept blocked weights pay (docs/kernels.md, "Kept blocked weights"; docs/benchmarks.md):
# one-thread forward CPU seconds per iteration of one binary with its copies off
# (UVIT_KEPT_WEIGHTS_MB=0) and on (the default), alternated off, on, on, off per row, through
# bench/cpu_seconds.sh (an I-iteration process minus a 1-iteration one). I is chosen per row so
# that the difference is about SIGNAL (default 2) CPU seconds: I = 1 + SIGNAL / (T1 * batch),
# T1 a rough one-image forward time (fp32 or bf16) per config below.
# Usage: bench/kept_default.sh BINARY     CONFIGS, PRECS, BATCHES (space-separated) narrow it.
set -euo pipefail
BIN=$(realpath "${1:?usage: bench/kept_default.sh BINARY}")
CONFIGS=${CONFIGS:-"dit_s_2 bench/configs/uvit_s_2_latent.json"}
PRECS=${PRECS:-"fp32 bf16"} BATCHES=${BATCHES:-"1 2 4 8 16"} SIGNAL=${SIGNAL:-2}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nUVIT_KEPT_WEIGHTS_MB=0 exec %s "$@"\n' "$BIN" >"$tmp/off"
cp "$tmp/off" "$tmp/on" && sed -i 's/UVIT_KEPT_WEIGHTS_MB=0 //' "$tmp/on"
chmod +x "$tmp/off" "$tmp/on"
t1() {  # CONFIG PREC: rough one-image forward CPU seconds on the AMX Xeon
  case "$(basename "$1" .json)-$2" in
    dit_s_2-fp32) echo 0.1 ;; dit_s_2-bf16) echo 0.05 ;;
    uvit_s_2_latent-fp32) echo 0.18 ;; uvit_s_2_latent-bf16) echo 0.08 ;;
    dit_l_2-fp32) echo 1.5 ;; dit_l_2-bf16) echo 0.6 ;;
    *) echo 1 ;;
  esac
}
echo "$(lscpu | sed -n 's/^Model name: *//p'); $(uptime)"
for prec in $PRECS; do
  for cfg in $CONFIGS; do
    for b in $BATCHES; do
      i=$(awk -v s="$SIGNAL" -v t="$(t1 "$cfg" "$prec")" -v b="$b" \
        'BEGIN { i = 1 + int(s / (t * b) + 0.5); print (i < 3 ? 3 : i) }')
      echo "batch $b, I = $i, $(cut -d' ' -f1-3 /proc/loadavg)"
      BATCH=$b PRECS=$prec CONFIGS=$cfg MODES=forward ITERS_FORWARD=$i \
        bench/cpu_seconds.sh "$tmp/off" "$tmp/on" "$tmp/on" "$tmp/off" | tail -n +3 |
        sed "s|$tmp/||"
    done
  done
done
