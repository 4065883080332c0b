#!/usr/bin/env bash
# Data parallelism on the CPU (docs/benchmarks.md, "Data parallelism"): fmnist_uvit_tiny trained
# by 2 ranks x 1 thread and by 1 process x 2 threads, alternated REPS times (the machine is
# shared: compare within a pair), then the gradient exchange alone at U-ViT-S/2's 177 MB.
# Usage: bench/bench_dp.sh [STEPS (default 60)] [REPS (default 3)]   (after a build into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-60} REPS=${2:-3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_oob_tcp_if_include=lo
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
T=(train --config fmnist_uvit_tiny --steps "$STEPS" --no-grid --set train.log_interval="$STEPS")
img_s() { sed -n 's/.*"img_s":\([0-9.e+-]*\).*/\1/p' "$1/log.jsonl" | tail -1; }
printf '| run | 2 ranks x 1 thread img/s | exchange share | 1 rank x 2 threads img/s |\n|---|---|---|---|\n'
for r in $(seq "$REPS"); do
  mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 build/uvit "${T[@]}" --out "$tmp/m$r" 2>"$tmp/err"
  share=$(sed -n 's/.*exchange (\(.*\)).*/\1/p' "$tmp/err")
  OMP_NUM_THREADS=2 build/uvit "${T[@]}" --out "$tmp/s$r" -q >/dev/null
  printf '| %d | %s | %s | %s |\n' "$r" "$(img_s "$tmp/m$r")" "$share" "$(img_s "$tmp/s$r")"
done
for np in 2 3 4; do
  mpirun -np $np --oversubscribe --bind-to none build/tests/uvit_dist_bench 44260000 3
done
