#!/usr/bin/env bash
# `uvit tokenize` wall time: one word of N random letters (CLIP's BPE cost grows with a word's
# length) and many ordinary prompts, for an old and a new binary, best of REPS runs each. The
# empty prompt's time (vocabulary load) is reported too; subtract it for the BPE's share.
# Usage: OLD=path/to/old/uvit bench/bench_tokenize.sh [REPS] [LENGTHS...]
#        (UVIT=path/to/new/uvit, default build/uvit; LENGTHS default 10000 40000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${1:-3}
shift || true
LENGTHS=("${@:-10000 40000 100000}")
read -r -a LENGTHS <<<"${LENGTHS[*]}"
UVIT=${UVIT:-build/uvit}
OLD=${OLD:?set OLD to the uvit binary to compare against}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

best() {  # best wall seconds of REPS runs of "$@", output to $tmp/out
  local b=""
  for ((r = 0; r < REPS; r++)); do
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$tmp/out"
    t1=$(date +%s.%N)
    b=$(python3 -c "import sys; a=float(sys.argv[1]); b=sys.argv[2]; print(min(a, float(b)) if b else a)" \
      "$(python3 -c "print($t1 - $t0)")" "$b")
  done
  printf '%.3f' "$b"
}

echo "| prompt | old s | new s | same ids |"
echo "|---|---|---|---|"
row() {  # label, prompts...
  local label=$1
  shift
  local o n
  o=$(best "$OLD" tokenize -- "$@")
  cp "$tmp/out" "$tmp/old"
  n=$(best "$UVIT" tokenize -- "$@")
  echo "| $label | $o | $n | $(cmp -s "$tmp/old" "$tmp/out" && echo yes || echo NO) |"
}
row "empty (vocabulary load)" ""
prompts=()
for ((i = 0; i < 1000; i++)); do prompts+=("A green train number $i is coming down the tracks, photographed at dusk."); done
row "1000 ordinary prompts" "${prompts[@]}"
for n in "${LENGTHS[@]}"; do
  w=$(python3 -c "import random, sys; r = random.Random(int(sys.argv[1]));
print(''.join(r.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(int(sys.argv[1]))))" "$n")
  row "one word of $n letters" "$w"
done
