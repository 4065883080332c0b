#!/usr/bin/env bash
# train.overlap on the CPU (docs/benchmarks.md, "Data parallelism"): fmnist_uvit_tiny trained by
# 2 ranks x 1 thread with the gradient exchange after backward (train.overlap=false) and
# overlapped with it, alternated REPS times (the machine is shared: compare within a pair).
# Prints img/s (log.jsonl) and the exposed exchange: the seconds the steps spent in the exchange
# after backward (waiting for the communication thread, gathers), and their share of the run.
# Usage: bench/bench_overlap.sh [STEPS (default 60)] [REPS (default 2)] [CONFIG]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-60} REPS=${2:-2} CONFIG=${3:-fmnist_uvit_tiny}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_oob_tcp_if_include=lo
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
T=(train --config "$CONFIG" --steps "$STEPS" --no-grid --set train.log_interval="$STEPS")
img_s() { sed -n 's/.*"img_s":\([0-9.e+-]*\).*/\1/p' "$1/log.jsonl" | tail -1; }
printf '| run | train.overlap | img/s | exposed exchange | run time |\n|---|---|---|---|---|\n'
for r in $(seq "$REPS"); do
  for ov in false true; do
    mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 build/uvit "${T[@]}" \
      --set train.overlap=$ov --out "$tmp/$ov$r" 2>"$tmp/err"
    ex=$(sed -n 's/.*data parallel: \([0-9.]*\) s of \([0-9.]*\) s in the gradient exchange (\(.*\)).*/\1 s (\3)|\2 s/p' "$tmp/err")
    printf '| %d | %s | %s | %s |\n' "$r" "$ov" "$(img_s "$tmp/$ov$r")" "$ex"
  done
done
