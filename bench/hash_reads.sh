#!/usr/bin/env bash
# The weights' SHA-256 checked against the file loaded (docs/evaluation.md, `uvit eval`, "The
# weights' SHA-256"; docs/benchmarks.md, "Hashing the weights loaded"): `uvit sample --n 1
# --steps 1` of a preset's random weights (default cifar10_uvit_small: 180 MB f32), by two builds
# alternated (OLD, NEW, NEW, OLD per pair): wall and CPU seconds (time_v), and, under strace, the
# bytes each build reads from the weights file (the load and the hash: twice its size, both builds).
# Usage: bench/hash_reads.sh OLD NEW [CONFIG] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?OLD binary} NEW=${2:?NEW binary} CFG=${3:-cifar10_uvit_small} PAIRS=${4:-2}
PY=/usr/bin/python3
export UVIT_CONFIG_DIR=$PWD/configs
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
"$PY" bench/random_weights.py "configs/$CFG.json" "$d/w.pth"
"$NEW" convert "$d/w.pth" "$d/w.safetensors" >/dev/null
W=$d/w.safetensors
echo "$(stat -c %s "$W") bytes of weights; $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
args=(sample --config "$CFG" --weights "$W" --n 1 --steps 1 --out "$d/s.png" -q)
for b in OLD NEW; do
  bin=$OLD; [ $b = NEW ] && bin=$NEW
  strace -f -y -e trace=read,pread64 -o "$d/trace" "$bin" "${args[@]}" >/dev/null
  # Each line: ... read(FD</path>, ...) = N or pread64(FD</path>, ...) = N
  awk -v w="$W" 'index($0, "<" w ">") && /= [0-9]+$/ { s += $NF } END { printf "%s\n", s }' \
    "$d/trace" | xargs printf "$b: %s bytes read from the weights file\n"
done
. bench/time_v.sh
one() { time_v "$1 sample --n 1 --steps 1" "$d/time" "$2" "${args[@]}"; }
alternate "$OLD" "$NEW" "$PAIRS"
