#!/usr/bin/env bash
# Loading weights (docs/formats.md, "Loading weights"; docs/benchmarks.md, "Loading weights into
# uninitialised arrays"): `uvit convert W OUT` of a big model's random weights (default dit_xl_2:
# 2.7 GB f32) from .safetensors and from .pth, by two builds alternated (OLD, NEW, NEW, OLD per
# pair). OUT goes to /dev/shm (tmpfs), so that the load, not the disk's writing, is most of the
# time; also to the weights' folder (the disk), as a user's convert writes. Each run: wall and CPU
# seconds (user + system), peak RSS, minor page faults, and the load average before it.
# Usage: bench/load_weights.sh OLD NEW [CONFIG] [PAIRS] [DIR]
#   (default dit_xl_2, 3 pairs; DIR: a folder that holds w.pth and a.safetensors made by an
#   earlier run, kept; without it they are made in a temporary folder, which takes minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?OLD binary} NEW=${2:?NEW binary} CFG=${3:-dit_xl_2} PAIRS=${4:-3} DIR=${5:-}
PY=/usr/bin/python3
json=$CFG; [ -f "$json" ] || json=configs/$CFG.json
shm=$(mktemp -d /dev/shm/uvit_load.XXXXXX)
if [ -n "$DIR" ]; then
  d=$DIR
  trap 'rm -rf "$shm"' EXIT
else
  d=$(mktemp -d)
  trap 'rm -rf "$d" "$shm"' EXIT
fi
[ -f "$d/w.pth" ] || "$PY" bench/random_weights.py "$json" "$d/w.pth"
[ -f "$d/a.safetensors" ] || "$NEW" convert "$d/w.pth" "$d/a.safetensors" >/dev/null
cat "$d/w.pth" "$d/a.safetensors" >/dev/null  # both in the page cache, as for every run after
echo "$(du -h "$d/a.safetensors" | cut -f1) of weights; $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
. bench/time_v.sh
measure() {  # label OUT CMD...
  rm -f "$2"
  time_v "$1" "$shm/time" "${@:3}"
  rm -f "$2"
}
one() {  # which BINARY
  measure "$1 A.safetensors -> shm.safetensors" "$shm/c.safetensors" "$2" convert "$d/a.safetensors" "$shm/c.safetensors"
  measure "$1 W.pth -> shm.safetensors" "$shm/c.safetensors" "$2" convert "$d/w.pth" "$shm/c.safetensors"
  measure "$1 A.safetensors -> disk B.pth" "$d/b.pth" "$2" convert "$d/a.safetensors" "$d/b.pth"
}
alternate "$OLD" "$NEW" "$PAIRS"
