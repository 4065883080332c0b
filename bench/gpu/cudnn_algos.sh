#!/usr/bin/env bash
# The tf32 convolutions' algorithm choice (UVIT_CUDNN_ALGO=heuristic|precomp|find, see
# src/backend/cuda/cudnn_conv.cpp) on this GPU: SD kl-f8 decode and FID Inception features in each
# mode (steady rates: after the first batch), and the encoder GPU tests in each non-default mode.
# Usage: bench/gpu/cudnn_algos.sh UVIT CUDA_TESTS OUT_TXT   (PYTHON: python with torch)
set -u
UVIT=$1 TESTS=$2 OUTF=$3
PY=${PYTHON:-python3}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
exec >"$OUTF" 2>&1
"$PY" tests/reference/autoencoder_torch.py save --out "$tmp/sd.pth" --seed 0
"$PY" tests/reference/inception_torch.py --out "$tmp/net" --net-only >/dev/null
"$PY" -c "
import numpy as np
np.save('$tmp/z.npy', np.random.RandomState(1).randn(64, 4, 32, 32).astype(np.float32))
np.save('$tmp/imgs.npy', np.random.RandomState(0).randint(0, 256, (512, 32, 32, 3)).astype(np.uint8))"
for A in heuristic precomp find; do
  echo "== UVIT_CUDNN_ALGO=$A"
  UVIT_CUDNN_ALGO=$A "$UVIT" autoencoder decode --device cuda -w "$tmp/sd.pth" --in "$tmp/z.npy" \
    --out "$tmp/x_$A.npy" --batch 8 -q 2>&1 | tail -2
  UVIT_CUDNN_ALGO=$A "$UVIT" fid-features "$tmp/imgs.npy" --device cuda \
    --inception "$tmp/net/inception.pth" --out "$tmp/f_$A.npy" -q 2>&1 | tail -2
done
# The three modes' decodes and features against each other (all tf32: ~1e-3 apart).
"$PY" -c "
import numpy as np
for k in ('x', 'f'):
    a = np.load('$tmp/%s_heuristic.npy' % k)
    for m in ('precomp', 'find'):
        b = np.load('$tmp/%s_%s.npy' % (k, m))
        print(k, 'heuristic vs', m, 'max rel diff %.3g' % (np.abs(a - b).max() / np.abs(a).max()))"
for A in precomp find; do
  echo "== gtest with UVIT_CUDNN_ALGO=$A"
  UVIT_CUDNN_ALGO=$A "$TESTS" --gtest_filter='CudaTf32*:CudaEncoders*:CudaInception*:CudaConvnet*' \
    2>&1 | grep -E "tf32|^\[  (PASSED|FAILED) |tests? ran" | head -30
done
