#!/usr/bin/env bash
# ZeRO-0/1/2 memory on 2 CPU ranks (docs/benchmarks.md, "ZeRO-2"): a 195.6 M-parameter DiT
# (fmnist_dit_tiny widened: hidden 1152, depth 8, 16 heads; 783 MB a copy) trained 1 and 1 + EXTRA
# steps per level. Prints each rank's peak RSS (/usr/bin/time -v) of the 1-step run, and the minor
# page faults and seconds per step of the EXTRA more steps (the difference between the two runs;
# seconds from log.jsonl's elapsed_s, the mean over ranks' slowest: rank 0 logs after the step).
# Usage: bench/bench_zero_rss.sh [EXTRA (default 2)] [LEVELS (default "0 1 2")] [-- --set ...]
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA=${1:-2} LEVELS=${2:-"0 1 2"}
shift $(($# < 2 ? $# : 2)); [ "${1:-}" = "--" ] && shift
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
  OMPI_MCA_oob_tcp_if_include=lo
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
T=(train -c fmnist_dit_tiny --set nnet.hidden_size=1152 --set nnet.depth=8 --set nnet.num_heads=16
  --batch 2 --no-grid -q --set train.log_interval=1 "$@")
uv=$PWD/build/uvit
field() { sed -n "s/.*$2: \([0-9]*\).*/\1/p" "$1"; }
printf '| train.zero | peak RSS rank 0 / 1 MB | minor faults per step rank 0 / 1 | s per step |\n'
printf '|---|---:|---:|---:|\n'
for z in $LEVELS; do
  for s in 1 $((1 + EXTRA)); do
    mpirun -np 2 --bind-to none -x OMP_NUM_THREADS=1 bash -c \
      "/usr/bin/time -v -o $tmp/t$z.$s.\$OMPI_COMM_WORLD_RANK $uv $(printf '%q ' "${T[@]}") \
       --set train.zero=$z --steps $s --out $tmp/r$z.$s >/dev/null"
  done
  rss=() flt=()
  for r in 0 1; do
    rss+=($(($(field "$tmp/t$z.1.$r" "Maximum resident set size (kbytes)") / 1024)))
    a=$(field "$tmp/t$z.1.$r" "Minor (reclaiming a frame) page faults")
    b=$(field "$tmp/t$z.$((1 + EXTRA)).$r" "Minor (reclaiming a frame) page faults")
    flt+=($(((b - a) / EXTRA)))
  done
  sps=$(/usr/bin/python3 -c "
import json, sys
e = [r['elapsed_s'] for r in map(json.loads, open(sys.argv[1])) if r.get('event') == 'train']
print(f'{(e[-1] - e[0]) / (len(e) - 1):.2f}')" "$tmp/r$z.$((1 + EXTRA))/log.jsonl")
  printf '| %s | %s / %s | %s / %s | %s |\n' "$z" "${rss[0]}" "${rss[1]}" "${flt[0]}" "${flt[1]}" "$sps"
done
