#!/usr/bin/env bash
# CPU seconds (user + sys) of `uvit fid-features` on N random 256x256 images (resized to 299 inside)
# per convolution kind (UVIT_CONV_IMPL; "auto" leaves it unset: the binary's own choice), at 1 and
# 2 threads, the kinds alternated within each of R rounds (a shared machine drifts). Random
# Inception weights in torchvision's layout (tests/reference/inception_torch.py). Whether the
# features keep the same bytes at 1 and 2 threads is printed per kind (docs/benchmarks.md).
#   [THREADS="1 2"] bench/inception_conv_impl.sh [UVIT] [N] [R] [KINDS]   (KINDS: "auto im2col blocked")
set -euo pipefail
UVIT=$(realpath "${1:-build/uvit}") N=${2:-32} R=${3:-3} KINDS=${4:-"auto im2col blocked"}
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" tests/reference/inception_torch.py --out "$tmp/net" --net-only >/dev/null
"$PY" -c "
import numpy as np
np.save('$tmp/imgs.npy', np.random.RandomState(0).randint(0, 256, ($N, 256, 256, 3)).astype(np.uint8))"
echo "uptime before: $(uptime)"
printf '| round | kind | threads | CPU s | wall s |\n|---|---|---|---|---|\n'
for r in $(seq "$R"); do
  for k in $KINDS; do
    for t in ${THREADS:-1 2}; do
      envs=(); [ "$k" = auto ] || envs=("UVIT_CONV_IMPL=$k")
      env -u UVIT_CONV_IMPL "${envs[@]}" /usr/bin/time -f "%U %S %e" -o "$tmp/t" "$UVIT" --threads $t fid-features "$tmp/imgs.npy" \
        --inception "$tmp/net/inception.pth" -o "$tmp/f_${k}_$t.npy" -q
      printf "| %s | %s | %s | %s | %s |\n" "$r" "$k" "$t" $(awk "{print \$1 + \$2, \$3}" "$tmp/t")
    done
  done
done
for k in $KINDS; do
  [ -e "$tmp/f_${k}_2.npy" ] || continue
  cmp -s "$tmp/f_${k}_1.npy" "$tmp/f_${k}_2.npy" && s="the same bytes" || s="differ"
  echo "$k: features at 1 and 2 threads: $s"
done
echo "uptime after: $(uptime)"
