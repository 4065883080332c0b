#!/usr/bin/env bash
# FID Inception feature extraction (img/s) of uvit against the PyTorch twin in the same run, both on
# the same thread count, random weights in the pytorch-fid layout, 32x32 inputs (CIFAR-sized,
# upsampled to 299 as pytorch-fid does); and the Frechet distance on 2048-d statistics.
#   bench/bench_fid.sh [UVIT] [N_IMAGES] [THREADS]      (prints JSON lines)
set -euo pipefail
UVIT=${1:-build/uvit} N=${2:-40} T=${3:-2}
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$PY" tests/reference/inception_torch.py --out "$tmp/net" --net-only >/dev/null
"$PY" -c "
import numpy as np
r = np.random.RandomState(0)
np.save('$tmp/imgs.npy', r.randint(0, 256, ($N, 32, 32, 3)).astype(np.uint8))
d = 2048
for i, (n, s) in enumerate(((4000, 0.3), (3000, 0.35))):
    x = r.randn(n, d) * s + 0.01 * i
    np.savez('$tmp/s%d.npz' % i, mu=x.mean(0), sigma=np.cov(x, rowvar=False))
"
export OMP_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T
# The twin: same images (as float in [0,1]; its input pipeline is timed too), batches of 10.
"$PY" tests/reference/inception_torch.py --bench "$N" --threads "$T" --weights "$tmp/net/inception.pth"
"$UVIT" --threads "$T" fid-features "$tmp/imgs.npy" --inception "$tmp/net/inception.pth" \
  --out "$tmp/f.npy" -q 2>"$tmp/err"
sed -n 's/^inception: \([0-9]*\) images in \([0-9.]*\) s (\([0-9.]*\) img\/s.*/{"impl": "uvit", "threads": '"$T"', "images": \1, "seconds": \2, "img_per_s": \3}/p' "$tmp/err"
t0=$(date +%s.%N)
"$UVIT" --threads "$T" fid "$tmp/s0.npz" "$tmp/s1.npz" >/dev/null
t1=$(date +%s.%N)
echo "{\"impl\": \"uvit\", \"what\": \"frechet_2048d_incl_npz_load\", \"threads\": $T, \"seconds\": $(echo "$t1 - $t0" | bc)}"
