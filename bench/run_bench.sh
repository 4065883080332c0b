#!/usr/bin/env bash
# uvit.cpp against the PyTorch twin on the same threads, in one run: forward and a full training
# step (forward, backward, AdamW), each measured in its own process (for peak RSS).
# Usage: bench/run_bench.sh [THREADS] [ITERS] ["CONFIG BATCH" ...]   (after a build into build/)
# Without configs: the U-ViT set below. DiT: bench/run_bench.sh 2 3 "dit_s_2 8" "dit_xl_2 1".
# PRECISION=bf16 runs both sides in bf16 (ours: --precision bf16; the twin: torch.autocast for
# training, the network cast to bf16 for the forward: tests/reference/bench_torch.py).
# Prints a markdown table; raw JSON lines go to bench/results.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ITERS=${2:-5}
PRECISION=${PRECISION:-fp32}
UVIT=${UVIT:-build/uvit}  # another binary: UVIT=/path/uvit bench/run_bench.sh ...
PY=/usr/bin/python3
out=bench/results.jsonl
: >"$out"
export OMP_NUM_THREADS=$THREADS
printf '| config | batch | mode | uvit img/s | torch img/s | ratio | uvit GFLOP/s | uvit peak MB | torch peak MB |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
SPECS=("${@:3}")
[ ${#SPECS[@]} -gt 0 ] || SPECS=("fmnist_uvit_tiny 64" "bench/configs/uvit_128x7_p2_fmnist.json 64" "cifar10_uvit_small 8")
for spec in "${SPECS[@]}"; do
  set -- $spec
  cfg=$1 batch=$2
  for mode in forward train; do
    u=$("$UVIT" --threads "$THREADS" bench --config "$cfg" --batch "$batch" --mode "$mode" --iters "$ITERS" \
          --precision "$PRECISION")
    json=$cfg; [ -f "$json" ] || json=configs/$cfg.json
    t=$("$PY" tests/reference/bench_torch.py --config "$json" --batch "$batch" \
          --threads "$THREADS" --iters "$ITERS" --mode "$mode" --precision "$PRECISION")
    echo "$u" >>"$out"
    echo "$t" >>"$out"
    "$PY" - "$u" "$t" "$cfg" "$batch" "$mode" <<'PYEOF'
import json, sys
u, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
cfg, batch, mode = sys.argv[3:6]
ti, tm = t[mode + "_img_s"], t["peak_rss_mb_" + mode]
print(f"| {cfg} | {batch} | {mode} | {u['img_s']:.2f} | {ti:.2f} | {u['img_s']/ti:.2f}x | "
      f"{u['gflop_s']:.0f} | {u['peak_rss_mb']:.0f} | {tm:.0f} |")
PYEOF
  done
done
