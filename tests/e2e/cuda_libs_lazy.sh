#!/usr/bin/env bash
# cuBLAS, cuBLASLt and NVRTC are opened on first use by the cuda backend (docs/gpu.md, "Libraries
# opened on first use"): a CPU run of a CUDA build loads none of them (linked, they cost every
# process ~245 MB and 0.1 s), and its binary does not name them. The forwarders themselves:
# the CudaLibs unit tests.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
source tests/e2e/data/lib.sh
if ! readelf -d "$UVIT" | grep -q 'NEEDED.*libcudart'; then
  echo "SKIP: a build without the cuda backend"
  exit 0
fi
needed=$(readelf -d "$UVIT" | grep NEEDED)
if grep -E 'libcublas|libnvrtc' <<<"$needed"; then
  fail "the binary links them"
else
  echo "ok: the binary does not link cuBLAS, cuBLASLt or NVRTC"
fi
# The libraries a CPU training step and a sample load (LD_DEBUG lists every one).
LD_DEBUG=files "$UVIT" bench -c fmnist_uvit_tiny --mode train --batch 2 --iters 1 --warmup 0 \
  --threads 1 > "$tmp/out.txt" 2> "$tmp/ld.txt" || fail "bench: $(tail -3 "$tmp/ld.txt")"
grep -q 'file=libcudart' "$tmp/ld.txt" || fail "LD_DEBUG listed no libcudart: $(head -3 "$tmp/ld.txt")"
if grep -E 'file=[^ ]*(libcublas|libnvrtc)' "$tmp/ld.txt"; then
  fail "a CPU run loaded them"
else
  echo "ok: a CPU training step loads none of them"
fi
exit $fails
