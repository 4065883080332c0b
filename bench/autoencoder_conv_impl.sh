#!/usr/bin/env bash
# The autoencoder's convolution kind (UVIT_CONV_IMPL; "auto" leaves it unset: the binary's own
# choice): whether `uvit autoencoder encode` of a random 256 px image and `decode` of a random
# 32 x 32 latent give the same bytes at 1, 2, 3, 4, 5, 7 and 8 threads (THREADS overrides the
# list), and the CPU seconds (user + sys), wall seconds and peak RSS of each whole process at 1
# and 2 threads, the kinds alternated within each of R rounds (a shared machine drifts). Random
# SD kl-f8 weights (tests/reference/autoencoder_torch.py). The kind "before" is the binary BEFORE
# (another build, e.g. main's) with its own choice. docs/benchmarks.md, "The autoencoder's
# convolution kind".
#   [BEFORE=OLD_UVIT] bench/autoencoder_conv_impl.sh [UVIT] [R] [KINDS] [CONFIG] [OPS]
#   (KINDS: "auto plain blocked im2col before"; OPS: "encode decode")
set -euo pipefail
UVIT=$(realpath "${1:-build/uvit}") R=${2:-3} KINDS=${3:-"auto blocked im2col"} CFG=${4:-sd_kl_f8}
OPS=${5:-"encode decode"} THREADS=${THREADS:-"2 3 4 5 7 8"}
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" tests/reference/autoencoder_torch.py save --config "$CFG" --out "$tmp/ae.pth" --seed 0 >/dev/null
"$PY" -c "
import numpy as np
r = np.random.RandomState(0)
np.save('$tmp/x.npy', r.uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32))
np.save('$tmp/z.npy', r.randn(1, 4, 32, 32).astype(np.float32))"
run() {  # run KIND THREADS OP: one process, its times into $tmp/t
  local k=$1 t=$2 op=$3 envs=() uvit=$UVIT
  case $k in auto) ;; before) uvit=$(realpath "$BEFORE") ;; *) envs=("UVIT_CONV_IMPL=$k") ;; esac
  local in=x.npy; [ "$op" = decode ] && in=z.npy
  env -u UVIT_CONV_IMPL "${envs[@]}" /usr/bin/time -f "%U %S %e %M" -o "$tmp/t" "$uvit" --threads $t \
    autoencoder $op -c "$CFG" -w "$tmp/ae.pth" --in "$tmp/$in" --out "$tmp/${op}_${k}_$t.npy" -q
}
echo "uptime before: $(uptime)"
for k in $KINDS; do
  for op in $OPS; do
    for t in 1 $THREADS; do run $k $t $op; done
    same=""
    for t in $THREADS; do
      cmp -s "$tmp/${op}_${k}_1.npy" "$tmp/${op}_${k}_$t.npy" && same+=" $t" || same+=" $t:DIFFERS"
    done
    echo "$k $op: against 1 thread:$same"
  done
done
printf '| round | kind | op | threads | CPU s | wall s | peak RSS MB |\n|---|---|---|---|---|---|---|\n'
for r in $(seq "$R"); do
  for k in $KINDS; do
    for op in $OPS; do
      for t in 1 2; do
        run $k $t $op
        printf "| %s | %s | %s | %s | %s | %s | %s |\n" "$r" "$k" "$op" "$t" \
          $(awk '{print $1 + $2, $3, int($4 / 1024)}' "$tmp/t")
      done
    done
  done
done
echo "uptime after: $(uptime)"
