#!/usr/bin/env bash
# Running out of memory is one line, not the OOM killer (docs/memory.md): a --batch whose buffers
# exceed the memory the process can have (UVIT_TEST_MEM_LIMIT in place of the machine's) is
# refused when allocated, before any step or sample, naming both sizes and the option; a run that
# fits a generous limit still works.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
source tests/e2e/data/lib.sh

small=$((256 << 20)) big=$((4 << 30))
need="the buffers need at least [0-9.]* [MG]iB, this machine has 256.0 MiB (UVIT_TEST_MEM_LIMIT)"

UVIT_TEST_MEM_LIMIT=$big run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 1 \
  --batch 2 --no-grid -q
W=$tmp/run/nnet_ema.safetensors
[ -s "$W" ] || fail "train under a 4 GiB limit wrote no weights"
UVIT_TEST_MEM_LIMIT=$big run "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 4 \
  --steps 2 --out "$tmp/ok.png" -q
[ -s "$tmp/ok.png" ] || fail "sample under a 4 GiB limit wrote no image"

UVIT_TEST_MEM_LIMIT=$small expect_error \
  "^uvit: error: out of memory: $need; with --batch 4096: give smaller values$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/big" --steps 1 --batch 4096 --no-grid -q
ls "$tmp"/big/*.safetensors >/dev/null 2>&1 && fail "a refused train wrote a checkpoint"
grep -qs '"loss"' "$tmp/big/log.jsonl" && fail "a refused train logged a step"

UVIT_TEST_MEM_LIMIT=$small expect_error \
  "^uvit: error: out of memory: $need; with --batch 4096 --n 4096: give smaller values$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 4096 --batch 4096 --steps 2 \
  --out "$tmp/big.png" -q
[ ! -e "$tmp/big.png" ] || fail "a refused sample wrote an image"

exit $fails
