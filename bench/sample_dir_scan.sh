#!/usr/bin/env bash
# Resuming `uvit sample --dir D` (docs/cli.md "--dir"; docs/benchmarks.md "Resuming --dir: the
# scan"): the scan of a folder already holding all N samples, by two builds. The folder is N
# PNGs of ~150 KB (IHDR 256x256, an IDAT of incompressible bytes, the tiny model's uvit-params
# record with each file's index), so that `--n N --dir D` draws nothing: its wall time is the load
# and the scan. Warm page cache (the second of two runs) and, where COLD=1 (root: drop_caches),
# cold. Usage: [COLD=1] bench/sample_dir_scan.sh OLD NEW [N] [WORK_DIR]
# (N x 150 KB of disk: 50000 is ~7.5 GB; the folder is deleted at the end.)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?OLD binary} NEW=${2:?NEW binary} N=${3:-5000} WORK=${4:-/tmp}
PY=/usr/bin/python3
export UVIT_CONFIG_DIR=$PWD/configs
d=$(mktemp -d -p "$WORK")
trap 'rm -rf "$d"' EXIT
"$NEW" train --config fmnist_uvit_tiny --out "$d/run" --steps 2 --batch 2 --no-grid -q
args=(sample --config fmnist_uvit_tiny --weights "$d/run/nnet_ema.safetensors" --class 0
      --steps 4 -q)
# The template record: OLD's (the NEW build resumes a folder of records without its new keys).
"$OLD" "${args[@]}" --n 1 --dir "$d/one"
"$PY" bench/sample_dir_folder.py "$d/one/000000.png" "$d/dir" "$N"
echo "$N PNGs, $(du -sh "$d/dir" | cut -f1); $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; load $(uptime | sed 's/.*average: //')"
wall() {  # wall seconds of one resume that finds every sample there
  local t0 t1
  t0=$(date +%s.%N)
  "$1" "${args[@]}" --n "$N" --dir "$d/dir" 2>"$d/err"
  t1=$(date +%s.%N)
  grep -q "nothing to draw" "$d/err" 2>/dev/null || ! grep -q . "$d/err" || { cat "$d/err"; exit 1; }
  echo "$t1 - $t0" | bc
}
for b in OLD NEW NEW OLD; do
  bin=$OLD; [ $b = NEW ] && bin=$NEW
  if [ "${COLD:-0}" = 1 ]; then
    sync; echo 3 >/proc/sys/vm/drop_caches
    echo "$b cold: $(wall "$bin") s"
  fi
  wall "$bin" >/dev/null
  echo "$b warm: $(wall "$bin") s"
done
# The load alone: --n 1 of the same folder.
echo "NEW --n 1 (the load, one file): $(N=1 wall "$NEW") s"
