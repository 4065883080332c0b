#!/usr/bin/env bash
# Running out of memory is one line, not the OOM killer (docs/memory.md): a --batch whose buffers
# exceed the memory the process can have (UVIT_TEST_MEM_LIMIT in place of the machine's) is
# refused up front, before any initialisation, step or sample, naming both sizes and the option;
# a run that fits a generous limit still works. The need named is the whole need: the same run
# under a limit 0.1 MiB above it goes through, so nothing is allocated after the check.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

small=$((256 << 20)) big=$((4 << 30))
need="the buffers need [0-9.]* [MG]iB, this machine has 256.0 MiB (UVIT_TEST_MEM_LIMIT)"

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

# The whole need, up front: refused under 16 MiB naming N MiB; under N + 0.1 MiB the run goes
# through, under N - 0.2 MiB it is refused again (the message rounds to 0.1 MiB, and a buffer not
# allocated is counted without the allocator's few bytes of slack). A check made buffer by buffer
# (before the plan) names only "at least" the buffers allocated so far.
whole_need() {  # whole_need NAME CMD... (a train's --out is $tmp/whole, emptied before each run)
  local name=$1; shift
  rm -rf "$tmp/whole"
  UVIT_TEST_MEM_LIMIT=$((16 << 20)) "$@" >"$tmp/out" 2>"$tmp/err"
  local n; n=$(sed -n 's/^uvit: error: out of memory: the buffers need \([0-9.]*\) MiB, this machine has 16.0 MiB (UVIT_TEST_MEM_LIMIT); with .*: give smaller values$/\1/p' "$tmp/err")
  if [ -z "$n" ]; then
    fail "$name under 16 MiB: want the whole need in MiB, got: $(cat "$tmp/err")"
    return
  fi
  rm -rf "$tmp/whole"
  UVIT_TEST_MEM_LIMIT=$("$PY" -c "print(int(($n + 0.1) * 2**20))") "$@" >"$tmp/out" 2>"$tmp/err" ||
    fail "$name under $n + 0.1 MiB (the need it named): $(cat "$tmp/err")"
  rm -rf "$tmp/whole"
  UVIT_TEST_MEM_LIMIT=$("$PY" -c "print(int(($n - 0.2) * 2**20))") "$@" >"$tmp/out" 2>"$tmp/err" &&
    fail "$name under $n - 0.2 MiB ran"
  grep -q "out of memory: the buffers need [0-9.]* MiB" "$tmp/err" ||
    fail "$name under $n - 0.2 MiB: $(cat "$tmp/err")"
  echo "ok: $name needs $n MiB, named up front"
}
whole_need "train fmnist_uvit_tiny --batch 64" "$UVIT" train --config fmnist_uvit_tiny \
  --out "$tmp/whole" --steps 2 --batch 64 --no-grid -q
whole_need "train fmnist_dit_tiny --batch 16" "$UVIT" train --config fmnist_dit_tiny \
  --out "$tmp/whole" --steps 2 --batch 16 --no-grid -q
whole_need "sample --batch 64" "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 \
  --n 64 --batch 64 --steps 2 --out "$tmp/whole.png" -q
"$UVIT" train --config fmnist_skip_dit_tiny --out "$tmp/skip" --steps 1 --batch 2 --no-grid -q >/dev/null ||
  fail "train fmnist_skip_dit_tiny"
whole_need "sample --skip-cache 2" "$UVIT" sample --config fmnist_skip_dit_tiny \
  --weights "$tmp/skip/nnet_ema.safetensors" --class 1 --n 64 --batch 64 --steps 4 --skip-cache 2 \
  --out "$tmp/whole.png" -q
whole_need "bench --mode train" "$UVIT" bench --config fmnist_dit_tiny --mode train --batch 16 \
  --iters 1 --warmup 0
whole_need "bench --mode sample" "$UVIT" bench --config fmnist_uvit_tiny --mode sample --batch 64 \
  --n 64 --steps 2 -q

# The ranks of an MPI job on one node share its memory: 2 ranks of a --batch 1024 (512 each:
# 1.7 GiB of buffers, which one process under 3 GiB holds) are refused at 1.5 GiB each.
if command -v mpirun >/dev/null; then
  UVIT_TEST_MEM_LIMIT=$((3 << 30)) OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo \
    OMP_NUM_THREADS=1 timeout 300 mpirun --bind-to none --timeout 280 -np 2 "$UVIT" train \
    --config fmnist_uvit_tiny --out "$tmp/mpi" --steps 1 --batch 1024 --no-grid -q \
    >"$tmp/out" 2>"$tmp/err"
  rc=$?
  if grep -q "built without MPI" "$tmp/err"; then
    echo "skip: mpirun check (built without MPI)"
  elif [ $rc = 0 ] || ! grep -q "^uvit: error: \(rank [01]: \)\?out of memory: the buffers need [0-9.]* GiB, each of the 2 ranks on this machine has 1.5 GiB (3.0 GiB, UVIT_TEST_MEM_LIMIT, shared); with --batch 1024: give smaller values$" "$tmp/err"; then
    fail "mpirun -np 2 train --batch 1024 under 3 GiB: exit $rc: $(cat "$tmp/err")"
  else
    echo "ok: mpirun -np 2: $(grep -m1 'out of memory' "$tmp/err")"
  fi
else
  echo "skip: mpirun check (no mpirun)"
fi

exit $fails
