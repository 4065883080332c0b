#!/usr/bin/env bash
# Data parallelism in one process (docs/distributed.md; the MPI runs are in tests/mpi/):
# train.dp_virtual=2 equals train.accum=2 bit for bit (both add the same two micro-batch gradients
# left to right), resumes bit-identically, and a Slurm job whose tasks MPI does not see is refused.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.log_interval=1
T=(train --config "$tmp/tiny.json" --batch 8 --no-grid -q)
run "$UVIT" "${T[@]}" --out "$tmp/v" --steps 4 --set train.dp_virtual=2
run "$UVIT" "${T[@]}" --out "$tmp/a" --steps 4 --set train.accum=2
same_weights "$tmp/v" "$tmp/a" "dp_virtual=2 vs accum=2"
run "$UVIT" "${T[@]}" --out "$tmp/p" --steps 4
cmp -s "$tmp/v/nnet.safetensors" "$tmp/p/nnet.safetensors" &&
  fail "dp_virtual=2 gave the bits of the unsplit batch (the split did nothing?)"
run "$UVIT" "${T[@]}" --out "$tmp/h" --steps 2 --set train.dp_virtual=2
run "$UVIT" train --out "$tmp/h" --resume --steps 4 -q --no-grid
same_files "$tmp/h" "$tmp/v" "dp_virtual=2 resumed vs straight"
[ $fails -eq 0 ] && echo "ok: dp_virtual=2 == accum=2, resumes bit-identically"
SLURM_NTASKS=4 expect_error "SLURM_NTASKS" "$UVIT" "${T[@]}" --out "$tmp/s" --steps 1
[ -e "$tmp/s" ] && fail "the refused Slurm run left $tmp/s"
exit $fails
