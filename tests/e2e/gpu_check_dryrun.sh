#!/usr/bin/env bash
# scripts/gpu-check.sh's dry run (UVIT_GPU_CHECK_DRYRUN=1, docs/gpu.md "The device script"): the
# plan of the checklist's stages resolves every default bench and profile case to an existing
# preset and exits 0 when nothing is missing; it reports and exits non-zero on an unknown case,
# missing .debs, a prebuilt binary needing a library the device lacks; it finds binaries inside a
# gzipped build folder; it leaves an earlier run's results alone. No GPU needed.
set -uo pipefail
UVIT=$1
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() {
  echo "FAIL: $*"
  sed 's/^/  | /' "$T/plan.txt"
  exit 1
}

# Stand-in binaries that need only libc (what the device has).
mkdir -p "$T/bd/tests" "$T/debs" "$T/out"
for f in uvit tests/uvit_cuda_tests uvit_cublaslt_bench; do cp /bin/true "$T/bd/$f"; done
touch "$T/debs/libdnnl2.deb"
echo '{"earlier": "run"}' >"$T/out/anchors.jsonl"
plan() {
  OUT=$T/out UVIT_GPU_CHECK_DRYRUN=1 GPU_CHECK_DEBS=${DEBS:-$T/debs} GPU_CHECK_BUILD=$T/bd \
    GPU_CHECK_STAGES=probe,unpack,test,profile,gemm,bench,anchors,torch,summary \
    bash "$ROOT/scripts/gpu-check.sh" >"$T/plan.txt" 2>&1
}

# 1. The checklist's plan: nothing missing, every case resolved, OUT's results untouched.
plan || fail "a clean plan exits $?"
grep -q "0 problem(s)" "$T/plan.txt" || fail "no '0 problem(s)'"
[ "$(grep -c "UVIT_CUBLASLT_AUTOTUNE=.* bench --config" "$T/plan.txt")" -eq 10 ] ||
  fail "expected the 10 default bench cases"
[ "$(grep -c "UVIT_CUDA_OPTIME=1 .* bench --config imagenet256_uvit_huge" "$T/plan.txt")" -eq 2 ] ||
  fail "expected the 2 profile cases"
grep -q "UVIT_ATTENTION=cudnn .*--mode train" "$T/plan.txt" || fail "no cuDNN training case"
grep -q "what the device call carries" "$T/plan.txt" || fail "no carry size"
[ "$(cat "$T/out/anchors.jsonl")" = '{"earlier": "run"}' ] || fail "the dry run cleared anchors.jsonl"
[ ! -e "$T/out/results.json" ] || fail "the dry run wrote results.json"

# 2. An unknown case and no .debs: both named, non-zero exit.
mkdir -p "$T/nodebs"
GPU_CHECK_BENCH_CASES="fwd_h no_such_case" DEBS=$T/nodebs plan && fail "problems but exit 0"
grep -q "PROBLEM: unknown bench case 'no_such_case'" "$T/plan.txt" || fail "unknown case not named"
grep -q "PROBLEM: no .deb files" "$T/plan.txt" || fail "missing .debs not named"

# 3. The real binary: a problem exactly when it links a library the device lacks (a default
# build here links MPI, NCCL and cpp-httplib; -DUVIT_MPI=OFF -DUVIT_SERVE=OFF does not).
cp "$UVIT" "$T/bd/uvit"
if readelf -d "$UVIT" | grep -qE 'Shared library: \[(libmpi|libnccl|libcpp-httplib)'; then
  plan && fail "a binary linking MPI/NCCL/httplib passed"
  grep -q "PROBLEM: $T/bd/uvit needs lib" "$T/plan.txt" || fail "the library is not named"
  grep -q -- "-DUVIT_MPI=OFF -DUVIT_SERVE=OFF" "$T/plan.txt" || fail "no build flags given"
else
  plan || fail "a binary without MPI/NCCL/httplib was refused"
fi
cp /bin/true "$T/bd/uvit"

# 4. The binaries gzipped (the folder absent): found inside the archive.
(cd "$T" && tar -czf bd.tar.gz bd && rm -rf bd)
plan || fail "the gzipped folder's plan exits $?"
grep -q "0 problem(s)" "$T/plan.txt" || fail "binaries in bd.tar.gz not found"
[ -e "$T/bd" ] && fail "the dry run unpacked the archive in place"

# 5. The test stage's CudaLibs gate (run, not planned; stand-in test binaries): a library that
# cannot be opened stops the stage naming it; any other CudaLibs failure lets the suites run.
gate() { # $1: what the stand-in prints for CudaLibs
  rm -rf "$T/gate" && mkdir -p "$T/gate/tests" "$T/gate_out"
  cat >"$T/gate/tests/uvit_cuda_tests" <<EOF2
#!/bin/bash
case "\$*" in
  *CudaLibs.\**) echo '$1'; echo '[  FAILED  ] CudaLibs.OpenedBySoname'; exit 1 ;;
  *list_tests*) printf 'CudaLibs.\n  OpenedBySoname\nCudaKernels.\n  Fill\n' ;;
esac
exit 0
EOF2
  chmod +x "$T/gate/tests/uvit_cuda_tests"
  OUT=$T/gate_out GPU_CHECK_STAGES=test GPU_CHECK_BUILD=$T/gate GPU_CHECK_CUDA=OFF \
    bash "$ROOT/scripts/gpu-check.sh" >"$T/plan.txt" 2>&1
  cat "$T/gate_out/gpu-check.log" >>"$T/plan.txt"
}
gate 'C++ exception with description "cuda: cannot open libcublasLt.so.13 (no such file)" thrown'
grep -q "cuda: cannot open libcublasLt.so.13" "$T/plan.txt" || fail "a missing library not named"
grep -q "suite CudaKernels" "$T/plan.txt" && fail "suites ran without cuBLASLt"
gate 'Expected equality of these values: cublasGetStatusString(...)'
grep -q "suite CudaKernels: rc 0" "$T/plan.txt" || fail "a CudaLibs assertion stopped the suites"

bash -n "$ROOT/scripts/gpu-check.sh" || fail "bash -n"
echo "gpu-check dry run: ok"
