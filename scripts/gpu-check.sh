#!/usr/bin/env bash
# The device run for the CUDA backend (issues 4, 5 and 17): on a fresh GPU machine, from the repo
# root, with .debs/ carried (scripts/fetch_gpu_debs.sh fills it here):
#   unpack the .debs into a private prefix (dpkg -x, never into /), configure and build with CUDA,
#   run the Cuda* gtests, profile one H/2 training step and forward pass (ours and the twin's),
#   time cuBLASLt at U-ViT's GEMM shapes, benchmark `uvit bench` (with and without GEMM
#   autotuning) and the PyTorch twin (bench/gpu/torch_twin.py) on the same card, time torch's
#   attention and SD-decoder anchors, log the clocks, and write a table + results.json under $OUT.
#   docs/gpu.md, "The device script", says what each stage measures and how to read it.
# It never stops at the first failure: each stage has its own timeout and a share of a global
# deadline, is logged, and is recorded as ok / FAIL / TIMEOUT / skipped.
#
# Files under $OUT (at most 8 come back from the device): gpu-check.log (all stages),
# gtest_cuda.log, profile.txt (UVIT_CUDA_OPTIME + torch.profiler tables, the cuBLASLt table),
# uvit_bench.jsonl, torch_twin.jsonl, anchors.jsonl (GEMM rows, attention / SD-decoder anchors,
# the encoders against their twins), results.json, summary.txt (8: keep it so; the gtest XML and
# the clock log stay in the work folder and reach results.json through the summary).
#
# Environment (all optional):
#   GPU_CHECK_STAGES    stages to run, comma list (default: all) of
#                       probe,unpack,configure,build,test,profile,gemm,bench,anchors,torch,
#                       encoders,summary
#                       (profile: UVIT_CUDA_OPTIME=1 `uvit bench` of GPU_CHECK_PROFILE_CASES and
#                       torch_twin.py --profile of the same, -> profile.txt;
#                       gemm: build/uvit_cublaslt_bench -> profile.txt + anchors.jsonl;
#                       anchors: bench/gpu/anchors.py attention + vae, and our decode at the same
#                       batch -> anchors.jsonl;
#                       encoders: the autoencoder, FID Inception and CLIP against their twins,
#                       bench/gpu/encoders.sh -> anchors.jsonl; GPU_CHECK_ENCODERS_N images)
#   GPU_CHECK_SKIP      stages to leave out, comma list (e.g. "torch")
#   GPU_CHECK_DEADLINE  seconds for the whole script (default 450: an 8-minute device call)
#   GPU_CHECK_CAP_<stage>  the most seconds that stage may take (defaults in CAP below)
#   GPU_CHECK_CUDA      UVIT_CUDA value (default ON; OFF = CPU-only dry run of the build steps)
#   GPU_CHECK_ARCHS     CMAKE_CUDA_ARCHITECTURES (default "80;90")
#   GPU_CHECK_BUILD     build dir (default build-gpu)    GPU_CHECK_PREFIX  (default /tmp/uvit-prefix)
#   GPU_CHECK_DEBS      .deb folder (default .debs)       GPU_CHECK_JOBS    ninja -j (default nproc)
#   GPU_CHECK_PYTHON    python with torch (default python3)
#   GPU_CHECK_UNPACK_ALL=1  unpack the runtime-only .debs even where the image has those libraries
#   GPU_CHECK_NO_DPKG=1     unpack with ar + tar instead of dpkg -x (the fallback for an image without dpkg)
#   GPU_CHECK_GTEST_FILTER  (default 'Cuda*')
#   GPU_CHECK_BENCH_CASES   our bench cases (default: fwd_h train_h train_s sample_h (issue 17's
#                           rows) fwd_h_cudnn train_h_cudnn train_s_cudnn fwd_h_tuned train_h_tuned
#                           train_s_tuned; also: fwd_s train_h_ckpt, fwd_s_fp32 fwd_h_fp32, and
#                           DiT-XL/2's fwd_dit_xl train_dit_xl; any case NAME_tuned is NAME with
#                           UVIT_CUBLASLT_AUTOTUNE=1, NAME_cudnn is NAME with UVIT_ATTENTION=cudnn)
#   GPU_CHECK_PROFILE_CASES cases of the profile stage (default: train_h fwd_h), 1 warm-up + 3 steps
#   GPU_CHECK_ANCHOR_ARGS   extra args for bench/gpu/anchors.py (a CPU dry run: "--device cpu --tiny")
#   GPU_CHECK_ANCHOR_N / GPU_CHECK_ANCHOR_BATCH   our decode in the anchors stage (default 150 / 50)
#   GPU_CHECK_BENCH_ARGS    extra args for every `uvit bench` (not --iters/--warmup/--batch: below)
#   GPU_CHECK_ITERS / GPU_CHECK_WARMUP   timed / untimed iterations, ours and twin (default 10 / 3)
#   GPU_CHECK_BATCH         batch of the forward and train cases, ours and twin (default 128)
#   GPU_CHECK_SAMPLE_N / GPU_CHECK_SAMPLE_BATCH   sampling case size (default 500 / 250)
#   GPU_CHECK_TWIN_ARGS     extra args for torch_twin.py (e.g. "--cases all")
#   GPU_CHECK_DEVICE        --device for uvit bench (default cuda)
#   UVIT_GPU_CHECK_DRYRUN=1 print the plan and run nothing: each enabled stage's start and time
#                           limit, assuming every stage before it takes its typical time (TYPICAL
#                           below; =worst: its whole limit), the command lines it would run, and
#                           what is missing (a binary, a bench case, a preset, a script, the
#                           .debs); exits non-zero when something is. Writes only
#                           $OUT/gpu-check.log; needs no GPU.
set -u
set -o pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO" || exit 1
START=$(date +%s)
DRYRUN=${UVIT_GPU_CHECK_DRYRUN:-}
[ "$DRYRUN" = 0 ] && DRYRUN=
export OUT=${OUT:-$REPO/out/gpu-check}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/uvit-gpu-check.XXXXXX)
LOG=$OUT/gpu-check.log
STAGES_TSV=$WORK/stages.tsv
: >"$LOG"
: >"$STAGES_TSV"
: >"$WORK/windows.tsv"
if [ -z "$DRYRUN" ]; then # a dry run leaves an earlier run's results alone
  : >"$OUT/anchors.jsonl"   # appended to by the gemm, anchors and encoders stages
  rm -f "$OUT/profile.txt" "$OUT/encoders.jsonl" "$OUT/gtest_cuda.xml" # older runs' files
fi

DEADLINE=${GPU_CHECK_DEADLINE:-450}
STAGES=${GPU_CHECK_STAGES:-probe,unpack,configure,build,test,profile,gemm,bench,anchors,torch,encoders,summary}
SKIP=${GPU_CHECK_SKIP:-}
CUDA=${GPU_CHECK_CUDA:-ON}
ARCHS=${GPU_CHECK_ARCHS:-80;90}
BUILD=${GPU_CHECK_BUILD:-build-gpu}
PREFIX=${GPU_CHECK_PREFIX:-/tmp/uvit-prefix}
DEBS=${GPU_CHECK_DEBS:-.debs}
JOBS=${GPU_CHECK_JOBS:-$(nproc)}
PY=${GPU_CHECK_PYTHON:-python3}
GTEST_FILTER=${GPU_CHECK_GTEST_FILTER:-Cuda*}
BENCH_CASES=${GPU_CHECK_BENCH_CASES:-fwd_h train_h train_s sample_h fwd_h_cudnn train_h_cudnn train_s_cudnn fwd_h_tuned train_h_tuned train_s_tuned}
PROFILE_CASES=${GPU_CHECK_PROFILE_CASES:-train_h fwd_h}
ANCHOR_ARGS=${GPU_CHECK_ANCHOR_ARGS:-}
ANCHOR_N=${GPU_CHECK_ANCHOR_N:-150}
ANCHOR_BATCH=${GPU_CHECK_ANCHOR_BATCH:-50}
BENCH_ARGS=${GPU_CHECK_BENCH_ARGS:-}
ITERS=${GPU_CHECK_ITERS:-10}
WARMUP=${GPU_CHECK_WARMUP:-3}
BATCH=${GPU_CHECK_BATCH:-128}
SAMPLE_N=${GPU_CHECK_SAMPLE_N:-500}
SAMPLE_BATCH=${GPU_CHECK_SAMPLE_BATCH:-250}
TWIN_ARGS=${GPU_CHECK_TWIN_ARGS:-}
BENCH_DEVICE=${GPU_CHECK_DEVICE:-cuda}
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu
ORDER="probe unpack configure build test profile gemm bench anchors torch encoders summary"
# Seconds: the most a stage may take, and what it keeps for itself out of the stages before it.
# Measured on an H200 (earlier runs): build 27, test 6, bench ~20 per case (sample_h ~35),
# torch ~190 with its compiled cases. The default deadline runs everything up to anchors in full;
# torch gets what is left (eager first, its --budget-s skips the rest) and encoders usually none:
# a second call with GPU_CHECK_STAGES=probe,unpack,torch,encoders,summary covers them
# (docs/gpu.md, "The device script").
# test: 180, not 120: the suite has grown (13 CudaModel configs x 4 precisions, the cuDNN graph
# builds) and never ran whole; a test stage cut off writes no gtest XML, which the bench and
# summary stages read.
declare -A CAP=([probe]=40 [unpack]=60 [configure]=120 [build]=300 [test]=180 [profile]=100 [gemm]=40
  [bench]=270 [anchors]=90 [torch]=190 [encoders]=120 [summary]=20)
declare -A RESERVE=([test]=20 [profile]=60 [gemm]=15 [bench]=150 [anchors]=50 [torch]=40
  [summary]=10)
# Typical seconds per stage on an H200 (the measured figures above and in docs/gpu.md), for the
# dry run's clock; torch and encoders take whatever they are given.
declare -A TYPICAL=([probe]=5 [unpack]=20 [configure]=20 [build]=60 [test]=60 [profile]=60 [gemm]=10
  [bench]=230 [anchors]=50 [torch]=190 [encoders]=120 [summary]=5)
declare -A STATUS=()
for s in $ORDER; do # GPU_CHECK_CAP_build=400 etc. override a stage's cap
  v=GPU_CHECK_CAP_$s
  [ -n "${!v:-}" ] && CAP[$s]=${!v}
done

# Runtime-only packages, unpacked only where the image lacks their soname, so a newer system
# library (libgomp from the image's gcc, say) is never shadowed by Debian 12's.
declare -A RUNTIME_IF_MISSING=([libgomp1]=libgomp.so.1 [libgfortran5]=libgfortran.so.5
  [libquadmath0]=libquadmath.so.0 [ocl-icd-libopencl1]=libOpenCL.so.1 [zlib1g]=libz.so.1
  [libssl3]=libcrypto.so.3)
# Shared libraries a binary may need on the device: the system's, the CUDA toolkit's, and the
# .debs'. A prebuilt binary needing another (libmpi.so.40, libnccl.so.2 and libcpp-httplib from a
# default build here) fails to start there: build it with GPU_BUILD_FLAGS.
DEVICE_LIBS_RE='^(libc|libm|libdl|libpthread|librt|libstdc\+\+|libgcc_s|ld-linux-x86-64|libcuda|libcudart|libcublas|libcublasLt|libcudnn|libnvrtc|libdnnl|libopenblas|libgomp|libgfortran|libquadmath|libOpenCL|libz|libcrypto)\.so'
GPU_BUILD_FLAGS="-DUVIT_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=90 -DUVIT_MPI=OFF -DUVIT_SERVE=OFF"

# The prefix is used by configure, build and everything that runs our binaries.
export CMAKE_PREFIX_PATH=$PREFIX/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}
export CMAKE_INCLUDE_PATH=$PREFIX/usr/include${CMAKE_INCLUDE_PATH:+:$CMAKE_INCLUDE_PATH}
export CMAKE_LIBRARY_PATH=$LIBDIR${CMAKE_LIBRARY_PATH:+:$CMAKE_LIBRARY_PATH}
export LD_LIBRARY_PATH=$LIBDIR:$LIBDIR/openblas-pthread:$PREFIX/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
  [ -x "$d/nvcc" ] && ! command -v nvcc >/dev/null 2>&1 && export PATH=$d:$PATH
done
export UVIT_CONFIG_DIR=$REPO/configs
# A prebuilt binary's compiled-in source path is not this checkout's: name the vocabulary here.
export UVIT_CLIP_VOCAB=${UVIT_CLIP_VOCAB:-$REPO/data/clip/bpe_simple_vocab_16e6.txt.gz}
export PYTHONUNBUFFERED=1

now() { date +%s; }
SIM_ELAPSED=0 # a dry run's clock: the sum of the limits of the stages planned so far
elapsed() { if [ -n "$DRYRUN" ]; then echo "$SIM_ELAPSED"; else echo $(($(now) - START)); fi; }
enabled() {
  [[ ",$STAGES," == *",$1,"* || ",$STAGES," == *",all,"* ]] && [[ ",$SKIP," != *",$1,"* ]]
}
reserve_after() { # seconds kept for the enabled stages after $1
  local s sum=0 after=0
  for s in $ORDER; do
    if [ $after = 1 ] && enabled "$s"; then sum=$((sum + ${RESERVE[$s]:-0})); fi
    [ "$s" = "$1" ] && after=1
  done
  echo $sum
}
say() { echo "[gpu-check $(printf '%3d' "$(elapsed)")s] $*" | tee -a "$LOG"; }
record() { # stage status rc seconds note
  STATUS[$1]=$2
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >>"$STAGES_TSV"
}

# run_stage NAME FUNCTION: runs FUNCTION under `timeout` (its output into the log), records it.
run_stage() {
  local name=$1 fn=$2 budget t0 rc st
  if ! enabled "$name"; then
    record "$name" skipped - 0 "not in GPU_CHECK_STAGES"
    STATUS[$name]=off # a stage left out on purpose does not block the ones after it
    return 0
  fi
  local need=${NEEDS[$name]:-}
  if [ -n "$need" ] && [ "${STATUS[$need]}" != ok ] && [ "${STATUS[$need]}" != off ]; then
    say "$name: skipped ($need: ${STATUS[$need]})"
    record "$name" skipped - 0 "needs $need"
    return 0
  fi
  budget=$((DEADLINE - $(elapsed) - $(reserve_after "$name")))
  [ "$budget" -gt "${CAP[$name]}" ] && budget=${CAP[$name]}
  if [ "$budget" -lt 5 ]; then
    say "$name: skipped (out of time: ${budget}s left for it)"
    record "$name" skipped - 0 "out of time"
    return 0
  fi
  if [ -n "$DRYRUN" ]; then
    say "$name: would start at ${SIM_ELAPSED}s (limit ${budget}s, cap ${CAP[$name]}s, $(reserve_after "$name")s kept for the stages after it)"
    plan_stage "$name" >"$WORK/plan.txt" # not in a pipe: PLAN_PROBLEMS counts here
    tee -a "$LOG" <"$WORK/plan.txt"
    local took=${TYPICAL[$name]:-$budget}
    [ "$DRYRUN" = worst ] || [ "$took" -gt "$budget" ] && took=$budget
    SIM_ELAPSED=$((SIM_ELAPSED + took))
    record "$name" planned - "$budget"
    STATUS[$name]=ok
    return 0
  fi
  say "$name: start (limit ${budget}s)"
  {
    echo
    echo "=================== stage $name (limit ${budget}s, at $(elapsed)s) ==================="
  } >>"$LOG"
  t0=$(now)
  # Straight into the log, so a run cut off from outside still leaves the stage's output in $OUT.
  local off
  off=$(stat -c %s "$LOG")
  # `timeout` runs the stage in a process group of its own; the trap below forwards an interrupt.
  STAGE_BUDGET=$budget timeout -k 10 "$budget" bash -c "$fn" >>"$LOG" 2>&1 &
  STAGE_PID=$!
  wait "$STAGE_PID"
  rc=$?
  STAGE_PID=
  local last
  last=$(tail -c +$((off + 1)) "$LOG" | tail -n 25)
  case $rc in
    0) st=ok ;;
    124 | 137) st=TIMEOUT ;;
    *) st=FAIL ;;
  esac
  record "$name" "$st" "$rc" "$(($(now) - t0))"
  printf '%s\t%s\t%s\n' "$name" "$t0" "$(now)" >>"$WORK/windows.tsv"
  say "$name: $st (rc $rc, $(($(now) - t0))s)"
  if [ "$st" != ok ]; then
    echo "----- last lines of $name -----"
    echo "$last"
    echo "-------------------------------"
  fi
}
declare -A NEEDS=([configure]=unpack [build]=configure [test]=build [profile]=build [gemm]=build
  [bench]=build [encoders]=build)
STAGE_PID=
on_signal() {
  [ -n "$STAGE_PID" ] && kill -TERM "$STAGE_PID" 2>/dev/null
  stop_clocks
  say "interrupted"
  rm -rf "$WORK"
  exit 130
}
trap on_signal INT TERM

# ---------------------------------------------------------------- stages (run under bash -c)
export REPO OUT WORK PREFIX LIBDIR DEBS BUILD CUDA ARCHS JOBS PY GTEST_FILTER BENCH_CASES BENCH_ARGS GPU_BUILD_FLAGS \
  ITERS WARMUP BATCH SAMPLE_N SAMPLE_BATCH TWIN_ARGS BENCH_DEVICE PROFILE_CASES ANCHOR_ARGS ANCHOR_N \
  ANCHOR_BATCH

stage_probe() {
  set -x
  uname -a
  (. /etc/os-release 2>/dev/null && echo "os: $PRETTY_NAME")
  nproc
  free -g | head -2
  nvidia-smi -L
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  command -v nvcc && nvcc --version | tail -2
  gcc --version | head -1
  g++ --version | head -1
  ldd --version | head -1
  cmake --version | head -1
  ninja --version
  "$PY" -c 'import sys, torch; print(sys.executable, torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else "-")'
  ls -d /usr/local/cuda* 2>/dev/null
  # Where cuDNN / cuBLASLt / NVRTC live (the CUDA backend's CMake must find them; the cuDNN
  # attention path (cudnn-frontend) links NVRTC).
  find /usr/include /usr/local/cuda*/include /usr/local/cuda*/targets/*/include -maxdepth 2 -name 'cudnn*.h' 2>/dev/null | head -3
  find /usr/lib/x86_64-linux-gnu /usr/local/cuda*/lib64 /usr/local/cuda*/targets/*/lib -maxdepth 1 \( -name 'libcudnn.so*' -o -name 'libcublasLt.so*' -o -name 'libnvrtc.so*' \) 2>/dev/null | head -9
  "$PY" -c 'import nvidia.cudnn, os; print("pip cudnn:", os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null
  ldconfig -p | grep -E 'libgomp|libgfortran|libOpenCL|libz\.so|libstdc\+\+' | head
  exit 0
}

have_soname() { # in the image's linker cache or the usual directories
  ldconfig -p 2>/dev/null | grep -q "[[:space:]]$1 (" ||
    ls /lib/x86_64-linux-gnu/"$1" /usr/lib/x86_64-linux-gnu/"$1" /usr/lib64/"$1" >/dev/null 2>&1
}
export -f have_soname

# Absolute .so links (zlib1g-dev: libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) point into /:
# repoint them to the prefix's copy, or, where that is absent and / has another version, to the
# image's library of that name (libz.so.1).
fix_links() {
  local l tgt base sys
  find "$PREFIX" -type l -name '*.so*' | while read -r l; do
    tgt=$(readlink "$l")
    if [ "${tgt#/}" != "$tgt" ] && [ -e "$PREFIX$tgt" ]; then
      ln -sf "$PREFIX$tgt" "$l"
    elif [ ! -e "$l" ]; then
      base=$(basename "$l")
      sys=$(ldconfig -p 2>/dev/null | grep -E "[[:space:]]${base//./\\.}\.[0-9]+ \(.*x86-64" | head -1 | sed 's/.*=> //')
      if [ -z "$sys" ]; then echo "WARNING: dangling $l -> $tgt"; continue; fi
      ln -sf "$sys" "$l"
    else
      continue
    fi
    echo "relinked $l -> $(readlink "$l")"
  done
}
export -f fix_links

stage_unpack() {
  set -e
  [ -d "$DEBS" ] || { echo "no $DEBS folder: run scripts/fetch_gpu_debs.sh here and carry $DEBS"; exit 1; }
  rm -rf "$PREFIX"
  mkdir -p "$PREFIX"
  n=0
  pids=()
  for f in "$DEBS"/*.deb; do
    pkg=$(dpkg-deb -f "$f" Package 2>/dev/null || basename "$f" .deb)  # fetch names them PACKAGE.deb
    so=${RUNTIME_IF_MISSING[$pkg]:-}
    if [ -n "$so" ] && [ -z "${GPU_CHECK_UNPACK_ALL:-}" ] && have_soname "$so"; then
      echo "skip $pkg: the image has $so"
      continue
    fi
    # In parallel: libdnnl2 and OpenBLAS are xz archives of ~40 MB each.
    if command -v dpkg >/dev/null 2>&1 && [ -z "${GPU_CHECK_NO_DPKG:-}" ]; then
      dpkg -x "$f" "$PREFIX" &
    else # no dpkg in the image: a .deb is an ar archive holding data.tar.*
      mkdir -p "$WORK/deb-$pkg"
      (cd "$WORK/deb-$pkg" && ar x "$(realpath "$REPO/$f" 2>/dev/null || realpath "$f")" &&
        tar -xf data.tar.* -C "$PREFIX") &
    fi
    pids+=("$!:$pkg")
    n=$((n + 1))
  done
  bad=0
  for p in "${pids[@]}"; do
    if wait "${p%%:*}"; then echo "unpacked ${p#*:}"; else echo "FAILED to unpack ${p#*:}"; bad=1; fi
  done
  [ "$bad" = 0 ]
  # Debian's update-alternatives links for OpenBLAS (no postinst here).
  if [ -e "$LIBDIR/openblas-pthread/libopenblas.so.0" ]; then
    ln -sf openblas-pthread/libopenblas.so.0 "$LIBDIR/libopenblas.so.0"
    ln -sf openblas-pthread/libopenblas.so "$LIBDIR/libopenblas.so"
  fi
  fix_links
  echo "$n packages unpacked into $PREFIX ($(du -sh "$PREFIX" | cut -f1))"
  ls -l "$LIBDIR"/libdnnl* "$LIBDIR"/libopenblas* "$LIBDIR"/libOpenCL* "$LIBDIR"/libgfortran* "$LIBDIR"/libz* 2>/dev/null || true
  ldd "$LIBDIR/libdnnl.so.2" "$LIBDIR/openblas-pthread/libopenblas.so.0" | grep -E 'not found|=>' || true
  ! ldd "$LIBDIR/libdnnl.so.2" "$LIBDIR/openblas-pthread/libopenblas.so.0" | grep -q 'not found'
}
export -f stage_unpack
# Associative arrays do not survive export: the unpack stage re-declares it from this.
RUNTIME_IF_MISSING_DECL=$(declare -p RUNTIME_IF_MISSING)

stage_configure() {
  set -x
  rm -rf "$BUILD"
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DUVIT_CUDA="$CUDA" -DUVIT_NATIVE=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" -DPython3_EXECUTABLE="$(command -v "$PY")" \
    -DCMAKE_PREFIX_PATH="$PREFIX/usr" || exit 1
  set +x
  echo "--- what CMake found (should be under $PREFIX):"
  grep -E '^(DNNL_|OPENBLAS_|CLI11_|STB_|nlohmann_json_DIR|GTest_DIR|ZLIB_(INCLUDE_DIR|LIBRARY)|CMAKE_CUDA_COMPILER:|CMAKE_CXX_COMPILER:|CUDAToolkit_|UVIT_CUDA|CUDNN|cudnn)' \
    "$BUILD/CMakeCache.txt"
}

stage_build() {
  local targets="uvit uvit_cuda_tests"
  [ "$CUDA" != OFF ] && targets="$targets uvit_cublaslt_bench"
  # shellcheck disable=SC2086
  ninja -C "$BUILD" -j"$JOBS" $targets || exit 1
  echo "--- libraries of the built binaries:"
  ldd "$BUILD/uvit" | grep -E 'dnnl|openblas|gfortran|OpenCL|cud|cublas|nvrtc|not found'
  ! ldd "$BUILD/uvit" "$BUILD/tests/uvit_cuda_tests" | grep 'not found'
}

# The libraries the dynamic loader cannot find for these binaries, one line each (none: silent).
missing_libs() {
  local f
  for f in "$@"; do
    [ -e "$f" ] || continue
    ldd "$f" 2>/dev/null | awk -v f="$f" '/not found/ {print "  " f " needs " $1 " (not found)"}'
  done
}
export -f missing_libs

stage_test() {
  local bin=$BUILD/tests/uvit_cuda_tests rc miss
  [ -x "$bin" ] || bin=$BUILD/tests/uvit_tests
  # A prebuilt binary linked against a library this image lacks would fail every stage after
  # this one with the loader's message; say which, and how to build it.
  miss=$(missing_libs "$bin" "$BUILD/uvit" "$BUILD/uvit_cublaslt_bench")
  if [ -n "$miss" ]; then
    echo "the binaries cannot start here:"
    echo "$miss"
    echo "build them with $GPU_BUILD_FLAGS (docs/gpu.md, checklist step 1)"
    exit 3
  fi
  # cuBLAS, cuBLASLt and NVRTC are opened on first use (docs/gpu.md, "Libraries opened on first
  # use"), so ldd does not see them: the CudaLibs tests open all three. Only a library that
  # cannot be opened stops the stage (every GEMM would fail alike); any other CudaLibs failure (a
  # status string worded differently by the device's cuBLAS, say) must not cost the device call
  # its GPU tests: the suite loop below runs CudaLibs again and reports it.
  if ! timeout -k 5 60 "$bin" --gtest_filter='CudaLibs.*' >"$WORK/cuda_libs.log" 2>&1 </dev/null; then
    if grep -qE 'cuda: cannot open|cuda: lib[^ ]* has no' "$WORK/cuda_libs.log"; then
      echo "cuBLAS, cuBLASLt or NVRTC cannot be opened here:"
      grep -oE 'cuda: (cannot open|lib[^ ]* has no) [^"]*' "$WORK/cuda_libs.log" | sort -u | head -n 5
      exit 3
    fi
    echo "CudaLibs failed, though every library opened (see gtest_cuda.log); the suites run:"
    grep -E '^\[  FAILED  \]|Failure' "$WORK/cuda_libs.log" | head -n 5
  fi
  # One process per test suite, each under its own time limit: a kernel that faults (a sticky
  # CUDA error poisons the process's context) or hangs takes down its own suite only. The
  # suites' XML files are merged into the one the bench and summary stages read; a suite that
  # wrote none (crashed, timed out) becomes a failed test case there, one the stage had no time
  # left to start a skipped one (the stage still fails): the bench stage switches to the unfused
  # attention or drops the cuDNN cases on a failed CudaAttention*/Cudnn test, which a suite that
  # never ran must not trigger.
  local list suite tests r per left names=() rcs=()
  export STAGE_T0
  STAGE_T0=$(date +%s)
  list=$("$bin" --gtest_filter="$GTEST_FILTER" --gtest_list_tests 2>&1) || {
    echo "$list" | tail -n 20
    exit 1
  }
  mkdir -p "$WORK/gtest"
  : >"$OUT/gtest_cuda.log"
  rc=0
  while IFS= read -r suite; do
    tests=$(echo "$list" | awk -v s="$suite" '/^[^ ]/ {cur = $1} /^  / && cur == s {printf "%s%s%s", sep, s, $1; sep = ":"}')
    left=$(stage_left 15) # keep time for the merge
    per=120
    [ "$left" -lt "$per" ] && per=$left
    if [ "$per" -lt 5 ]; then
      echo "suite ${suite%.}: not run (stage out of time)"
      names+=("${suite%.}") rcs+=(notrun)
      rc=1
      continue
    fi
    timeout -k 5 "$per" "$bin" --gtest_filter="$tests" \
      --gtest_output=xml:"$WORK/gtest/$(echo "${suite%.}" | tr / _).xml" >>"$OUT/gtest_cuda.log" 2>&1 </dev/null
    r=$?
    names+=("${suite%.}") rcs+=("$r")
    echo "suite ${suite%.}: rc $r$([ "$r" = 124 ] && echo " (timed out after ${per}s)")"
    [ "$r" -ne 0 ] && rc=1
  done < <(echo "$list" | grep -E '^[^ ].*\.$' | grep -v '^Running main')
  local i args=()
  for i in "${!names[@]}"; do args+=("${names[$i]}=${rcs[$i]}"); done
  "$PY" - "$WORK/gtest" "$WORK/gtest_cuda.xml" "${args[@]}" <<'PYEOF' || rc=1
import os, sys, xml.etree.ElementTree as ET
parts, out = sys.argv[1], sys.argv[2]
root = ET.Element("testsuites", name="AllTests")
tot = dict(tests=0, failures=0, errors=0, disabled=0)
notrun = []
for arg in sys.argv[3:]:
    suite, rc = arg.rsplit("=", 1)
    f = os.path.join(parts, suite.replace("/", "_") + ".xml")
    if rc == "notrun":
        ts = ET.SubElement(root, "testsuite", name=suite, tests="1", failures="0", errors="0",
                           disabled="0", skipped="1")
        tc = ET.SubElement(ts, "testcase", name="(not run)", classname=suite)
        ET.SubElement(tc, "skipped", message="not run: the test stage ran out of time")
        tot["tests"] += 1
        notrun.append(suite)
        continue
    try:
        r = ET.parse(f).getroot()
    except (OSError, ET.ParseError):
        ts = ET.SubElement(root, "testsuite", name=suite, tests="1", failures="1", errors="0",
                           disabled="0")
        tc = ET.SubElement(ts, "testcase", name="(no results)", classname=suite)
        ET.SubElement(tc, "failure", message=f"the suite's process ended with rc {rc} "
                      "(crash or timeout) before writing its results; see gtest_cuda.log")
        tot["tests"] += 1
        tot["failures"] += 1
        continue
    for k in tot:
        tot[k] += int(r.get(k, 0))
    root.extend(r.findall("testsuite"))
for k, v in tot.items():
    root.set(k, str(v))
ET.ElementTree(root).write(out)
print(f"{tot['tests']} tests, {tot['failures']} failed, in {len(sys.argv) - 3} suites"
      + (f"; not run (out of time): {', '.join(notrun)}" if notrun else ""))
PYEOF
  grep -E '^\[  FAILED  \] [A-Za-z]' "$OUT/gtest_cuda.log" | sort -u | head -40
  [ "$rc" -ne 0 ] && tail -n 40 "$OUT/gtest_cuda.log"
  exit "$rc"
}

# name | config | mode | ckpt | arguments (NAME_tuned, NAME_cudnn: NAME's; stage_bench sets the
# autotuning and the attention path)
bench_case() {
  local base=${1%_tuned}
  case ${base%_cudnn} in
    fwd_s) echo "cifar10_uvit_small forward 0 --mode forward --precision bf16 --batch $BATCH" ;;
    fwd_h) echo "imagenet256_uvit_huge forward 0 --mode forward --precision bf16 --batch $BATCH" ;;
    fwd_s_fp32) echo "cifar10_uvit_small forward 0 --mode forward --precision fp32 --batch $BATCH" ;;
    fwd_h_fp32) echo "imagenet256_uvit_huge forward 0 --mode forward --precision fp32 --batch $BATCH" ;;
    train_s) echo "cifar10_uvit_small train 0 --mode train --precision bf16 --batch $BATCH --set nnet.use_checkpoint=false" ;;
    train_h) echo "imagenet256_uvit_huge train 0 --mode train --precision bf16 --batch $BATCH --set nnet.use_checkpoint=false" ;;
    train_h_ckpt) echo "imagenet256_uvit_huge train 1 --mode train --precision bf16 --batch $BATCH --set nnet.use_checkpoint=true" ;;
    fwd_dit_xl) echo "dit_xl_2 forward 0 --mode forward --precision bf16 --batch $BATCH" ;;
    train_dit_xl) echo "dit_xl_2 train 0 --mode train --precision bf16 --batch $BATCH" ;;
    sample_h) echo "imagenet256_uvit_huge sample 0 --mode sample --precision bf16 --n $SAMPLE_N --batch $SAMPLE_BATCH --sampler dpm-solver++ --steps 50 --cfg-scale 0.4" ;;
    *) return 1 ;;
  esac
}
export -f bench_case

stage_bench() {
  local uvit=$BUILD/uvit fails=0 name spec cfg mode ckpt args prec t0 rc left per tuned note attn
  local attn_default=${UVIT_ATTENTION:-} cudnn_bad=
  : >"$OUT/uvit_bench.jsonl"
  local n=0
  for name in $BENCH_CASES; do n=$((n + 1)); done
  local stage_t0
  stage_t0=$(date +%s)
  # If an attention test failed, benchmark on the attention path that passed (the batched one).
  if [ -f "$WORK/gtest_cuda.xml" ] && "$PY" - "$WORK/gtest_cuda.xml" <<'PYEOF'; then
import sys, xml.etree.ElementTree as ET
bad = [c for c in ET.parse(sys.argv[1]).iter("testcase")
       if c.get("classname", "").startswith("CudaAttention") and "Cudnn" not in c.get("name", "")
       and c.find("failure") is not None]
sys.exit(0 if bad else 1)
PYEOF
    attn_default=unfused
    echo "an attention test of our kernels failed: benchmarking with UVIT_ATTENTION=unfused"
  fi
  # A failed cuDNN attention test skips the *_cudnn cases (their speed would mean nothing).
  if [ -f "$WORK/gtest_cuda.xml" ] && "$PY" - "$WORK/gtest_cuda.xml" <<'PYEOF'; then
import sys, xml.etree.ElementTree as ET
bad = [c for c in ET.parse(sys.argv[1]).iter("testcase")
       if "Cudnn" in c.get("classname", "") + c.get("name", "") and c.find("failure") is not None]
sys.exit(0 if bad else 1)
PYEOF
    cudnn_bad=1
    echo "a cuDNN attention test failed: the *_cudnn cases are skipped"
  fi
  for name in $BENCH_CASES; do
    if ! spec=$(bench_case "$name"); then
      echo "unknown bench case $name"
      fails=$((fails + 1))
      continue
    fi
    read -r cfg mode ckpt args <<<"$spec"
    tuned=0
    [ "$name" != "${name%_tuned}" ] && tuned=1
    attn=$attn_default
    case $name in *_cudnn | *_cudnn_tuned) attn=cudnn ;; esac
    prec=bf16
    [[ " $args " == *" --precision fp32 "* ]] && prec=fp32
    # Each case gets at most 90 s and never more than what is left of the stage.
    left=$((STAGE_BUDGET - ($(date +%s) - stage_t0) - 5))
    per=90
    [ "$left" -lt "$per" ] && per=$left
    if [ "$per" -lt 5 ]; then
      echo "$name: skipped (stage out of time)"
      "$PY" bench/gpu/summarize.py record --case "$name" --config "$cfg" --mode "$mode" --ckpt "$ckpt" \
        --precision "$prec" --autotune "$tuned" --attention "${attn:-default}" --rc 124 --seconds 0 \
        >>"$OUT/uvit_bench.jsonl"
      fails=$((fails + 1))
      continue
    fi
    if [ "$attn" = cudnn ] && [ -n "$cudnn_bad" ]; then
      echo "$name: skipped (a cuDNN attention test failed)"
      "$PY" bench/gpu/summarize.py record --case "$name" --config "$cfg" --mode "$mode" --ckpt "$ckpt" \
        --precision "$prec" --autotune "$tuned" --attention cudnn --rc 1 --seconds 0 >>"$OUT/uvit_bench.jsonl"
      continue
    fi
    note=
    [ "$tuned" = 1 ] && note=", UVIT_CUBLASLT_AUTOTUNE=1"
    [ -n "$attn" ] && note="$note, UVIT_ATTENTION=$attn"
    echo "--- $name: uvit bench --config $cfg --device $BENCH_DEVICE $args $BENCH_ARGS (limit ${per}s$note)"
    rm -f "$WORK/$name.json"
    t0=$(date +%s)
    # --foreground: stays in the stage's process group, so the stage's timeout reaches it too.
    # Sample mode times one sampling run: `uvit bench` refuses --warmup/--iters there.
    timed="--warmup $WARMUP --iters $ITERS"
    [ "$mode" = sample ] && timed=
    # shellcheck disable=SC2086
    UVIT_CUBLASLT_AUTOTUNE=$tuned UVIT_ATTENTION=$attn timeout --foreground -k 5 "$per" "$uvit" bench --config "$cfg" \
      --device "$BENCH_DEVICE" $args $timed $BENCH_ARGS --json "$WORK/$name.json" >"$WORK/$name.stdout" 2>&1
    rc=$?
    tail -n 20 "$WORK/$name.stdout"
    # A tuned case's stderr ends with the autotuner's choice per GEMM (longer than the tail).
    [ "$tuned" = 1 ] && sed -n '/^uvit cublaslt autotune/,$p' "$WORK/$name.stdout" | head -n 80
    "$PY" bench/gpu/summarize.py record --case "$name" --config "$cfg" --mode "$mode" --ckpt "$ckpt" \
      --precision "$prec" --autotune "$tuned" --attention "${attn:-default}" --rc "$rc" --seconds "$(($(date +%s) - t0))" --json "$WORK/$name.json" \
      --stdout "$WORK/$name.stdout" | tee -a "$OUT/uvit_bench.jsonl"
    [ "$rc" -ne 0 ] && fails=$((fails + 1))
  done
  echo "$fails of $n bench cases failed"
  [ "$fails" -eq 0 ]
}

stage_torch() {
  : >"$OUT/torch_twin.jsonl"
  # shellcheck disable=SC2086
  "$PY" bench/gpu/torch_twin.py --device cuda --batch "$BATCH" --iters "$ITERS" --warmup "$WARMUP" \
    --out "$OUT/torch_twin.jsonl" \
    --budget-s $((STAGE_BUDGET - 15)) $TWIN_ARGS
}

stage_encoders() {
  PYTHON=$PY bench/gpu/encoders.sh "$BUILD/uvit" "$OUT/anchors.jsonl" "${GPU_CHECK_ENCODERS_N:-64}"
}

# Seconds left of this stage (STAGE_BUDGET, set by run_stage), less a margin.
stage_left() { echo $((STAGE_BUDGET - ($(date +%s) - STAGE_T0) - ${1:-5})); }
export -f stage_left

stage_profile() {
  local uvit=$BUILD/uvit f=$OUT/profile.txt name spec cfg mode ckpt args left twin_cases=""
  export STAGE_T0
  STAGE_T0=$(date +%s)
  for name in $PROFILE_CASES; do
    spec=$(bench_case "$name") || { echo "unknown profile case $name"; continue; }
    read -r cfg mode ckpt args <<<"$spec"
    left=$(stage_left 35) # keep time for the twin's profile
    [ "$left" -lt 10 ] && { echo "$name: out of time" | tee -a "$f"; continue; }
    echo "== uvit bench $name (--config $cfg $args), UVIT_CUDA_OPTIME=1, 1 warm-up + 3 steps" | tee -a "$f"
    # shellcheck disable=SC2086
    UVIT_CUDA_OPTIME=1 timeout --foreground -k 5 "$left" "$uvit" bench --config "$cfg" \
      --device "$BENCH_DEVICE" $args --warmup 1 --iters 3 >>"$f" 2>&1
    echo "(rc $?)" >>"$f"
    twin_cases="$twin_cases${twin_cases:+,}$mode:$cfg:eager$([ "$mode" = train ] && echo ":$([ "$ckpt" = 1 ] && echo ckpt || echo nockpt)")"
  done
  left=$(stage_left 5)
  echo "== torch twin, torch.profiler: $twin_cases" | tee -a "$f"
  [ "$left" -lt 10 ] && { echo "out of time" | tee -a "$f"; exit 1; }
  # shellcheck disable=SC2086
  timeout --foreground -k 5 "$left" "$PY" bench/gpu/torch_twin.py --device cuda --batch "$BATCH" \
    --iters 2 --warmup 2 --cases "$twin_cases" --profile --profile-steps 2 --budget-s 0 \
    --out "$WORK/twin_profile.jsonl" $TWIN_ARGS >>"$f" 2>&1
  local rc=$?
  grep -E '^uvit cuda op profile|^  wall |^== ' "$f"
  exit "$rc"
}

stage_gemm() {
  echo "== uvit_cublaslt_bench --batch $BATCH" >>"$OUT/profile.txt"
  "$BUILD/uvit_cublaslt_bench" --batch "$BATCH" --json "$OUT/anchors.jsonl" >>"$OUT/profile.txt" 2>&1
  local rc=$?
  if [ "$rc" -eq 0 ]; then grep -E '^all rows|^cuBLASLt' "$OUT/profile.txt"; else tail -n 5 "$OUT/profile.txt"; fi
  exit "$rc"
}

# torch's attention backends and SD decoder at our shapes, and our decoder at the same batch.
stage_anchors() {
  local fails=0 tmp=$WORK/anchors n=$ANCHOR_N s st
  mkdir -p "$tmp"
  # shellcheck disable=SC2086
  "$PY" bench/gpu/anchors.py attention --device cuda --out "$OUT/anchors.jsonl" $ANCHOR_ARGS || fails=$((fails + 1))
  # shellcheck disable=SC2086
  "$PY" bench/gpu/anchors.py vae --device cuda --batch 50 --out "$OUT/anchors.jsonl" $ANCHOR_ARGS || fails=$((fails + 1))
  if [ -x "$BUILD/uvit" ] && "$PY" tests/reference/autoencoder_torch.py save --out "$tmp/sd.pth" --seed 0 &&
    "$PY" -c "import numpy as np; np.save('$tmp/z.npy', np.random.RandomState(1).randn($n, 4, 32, 32).astype(np.float32))"; then
    # tf32: the exact path's default precision on a GPU (uvit has no fp16 decoder yet)
    local prec=tf32
    [ "$BENCH_DEVICE" = cpu ] && prec=fp32 # a CPU dry run
    if "$BUILD/uvit" autoencoder decode --device "$BENCH_DEVICE" --precision "$prec" -w "$tmp/sd.pth" \
      --in "$tmp/z.npy" --out "$tmp/x.npy" --batch "$ANCHOR_BATCH" 2>"$tmp/ae.err"; then
      st=$(sed -n 's/^decoded .*after the first batch: \([0-9.]*\) items.*$/\1/p' "$tmp/ae.err")
      s=$(sed -n 's/^decoded .* in \([0-9.]*\) s (.*$/\1/p' "$tmp/ae.err")
      echo "{\"what\": \"vae_anchor\", \"impl\": \"uvit\", \"variant\": \"${prec}_nchw\", \"batch\": $ANCHOR_BATCH, \"images\": $n, \"seconds\": ${s:-0}, \"img_s\": ${st:-0}}" |
        tee -a "$OUT/anchors.jsonl"
    else
      tail -3 "$tmp/ae.err"
      fails=$((fails + 1))
    fi
  else
    echo "no uvit binary or no weights: our decode skipped"
    fails=$((fails + 1))
  fi
  exit "$fails"
}

# The GPU's clocks, power and temperature every 250 ms from the profile stage to the summary
# (summarize.py reports them per stage: an MFU is only comparable at the same clocks).
CLOCKS_PID=
start_clocks() {
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu \
    --format=csv,noheader,nounits -lms 250 >"$WORK/clocks.csv" 2>/dev/null &
  CLOCKS_PID=$!
}
stop_clocks() {
  [ -n "$CLOCKS_PID" ] && kill "$CLOCKS_PID" 2>/dev/null
  CLOCKS_PID=
}

stage_summary() {
  local dev
  dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
  "$PY" bench/gpu/summarize.py table --ours "$OUT/uvit_bench.jsonl" --twin "$OUT/torch_twin.jsonl" \
    --stages "$WORK/stages.tsv" --gtest-xml "$WORK/gtest_cuda.xml" --device-name "$dev" \
    --anchors "$OUT/anchors.jsonl" --gtest-log "$OUT/gtest_cuda.log" --profile "$OUT/profile.txt" \
    --clocks "$WORK/clocks.csv" --windows "$WORK/windows.tsv" \
    --out "$OUT/results.json" | tee "$OUT/summary.txt"
}
export -f stage_probe stage_configure stage_build stage_test stage_bench stage_torch stage_encoders stage_summary \
  stage_profile stage_gemm stage_anchors

# ---------------------------------------------------------------- the dry run's plan
# UVIT_GPU_CHECK_DRYRUN=1: what each stage would run, with the same variables as the stages, and
# what it would find missing. PLAN_PROBLEMS counts the missing things.
PLAN_PROBLEMS=0
plan_bad() {
  echo "    PROBLEM: $*"
  PLAN_PROBLEMS=$((PLAN_PROBLEMS + 1))
}
# A file the stage needs: present now, or made by an enabled stage before it. A prebuilt ELF
# binary must not need a library the device lacks (DEVICE_LIBS_RE).
plan_need() { # path, made-by-stage (optional)
  local lib
  if [ -e "$1" ]; then
    if [ -z "${2:-}" ] || ! enabled "$2"; then
      for lib in $(readelf -d "$1" 2>/dev/null | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        [[ $lib =~ $DEVICE_LIBS_RE ]] ||
          plan_bad "$1 needs $lib, which the device image and the .debs do not provide: build with $GPU_BUILD_FLAGS"
      done
    fi
    return 0
  fi
  if [ -n "${2:-}" ] && enabled "$2"; then
    echo "    ($1: made by the $2 stage)"
    return 0
  fi
  plan_bad "$1 is missing${2:+ (and the $2 stage is not enabled)}"
}
plan_case() { # stage-kind name: the uvit bench command of one case
  local name=$2 spec cfg mode ckpt args tuned=0 attn timed
  if ! spec=$(bench_case "$name"); then
    plan_bad "unknown $1 case '$name'"
    return
  fi
  read -r cfg mode ckpt args <<<"$spec"
  [ -e "$REPO/configs/$cfg.json" ] || plan_bad "case $name: preset configs/$cfg.json is missing"
  [ "$name" != "${name%_tuned}" ] && tuned=1
  attn=${UVIT_ATTENTION:-}
  case $name in *_cudnn | *_cudnn_tuned) attn=cudnn ;; esac
  timed="--warmup $WARMUP --iters $ITERS"
  [ "$1" = profile ] && timed="--warmup 1 --iters 3"
  [ "$mode" = sample ] && timed=
  if [ "$1" = profile ]; then
    echo "    UVIT_CUDA_OPTIME=1 $BUILD/uvit bench --config $cfg --device $BENCH_DEVICE $args $timed"
  else
    echo "    UVIT_CUBLASLT_AUTOTUNE=$tuned UVIT_ATTENTION=$attn $BUILD/uvit bench --config $cfg" \
      "--device $BENCH_DEVICE $args $timed $BENCH_ARGS --json WORK/$name.json"
  fi
}
plan_stage() {
  local n f
  case $1 in
    probe) echo "    nvidia-smi, nvcc/gcc/cmake/ninja versions, $PY + torch, cuDNN/cuBLASLt/NVRTC locations" ;;
    unpack)
      n=$(find "$DEBS" -maxdepth 1 -name '*.deb' 2>/dev/null | wc -l)
      if [ "$n" -eq 0 ]; then
        plan_bad "no .deb files in $DEBS (run scripts/fetch_gpu_debs.sh here and carry $DEBS)"
      else
        echo "    dpkg -x (or ar + tar) of $n packages from $DEBS into $PREFIX"
      fi
      ;;
    configure)
      echo "    cmake -S . -B $BUILD -G Ninja -DCMAKE_BUILD_TYPE=Release -DUVIT_CUDA=$CUDA -DUVIT_NATIVE=OFF" \
        "-DCMAKE_CUDA_ARCHITECTURES='$ARCHS' -DCMAKE_PREFIX_PATH=$PREFIX/usr"
      ;;
    build)
      echo "    ninja -C $BUILD -j$JOBS uvit uvit_cuda_tests$([ "$CUDA" != OFF ] && echo " uvit_cublaslt_bench")"
      ;;
    test)
      f=$BUILD/tests/uvit_cuda_tests
      if [ ! -e "$f" ] && ! enabled build && [ -e "$BUILD/tests/uvit_tests" ]; then
        f=$BUILD/tests/uvit_tests # the stage's own fallback
      fi
      plan_need "$f" build
      echo "    $f --gtest_filter='CudaLibs.*' (cuBLAS, cuBLASLt, NVRTC open: else the stage stops)"
      # They need no GPU: a prebuilt binary runs them here, against this machine's toolkit.
      if [ -x "$f" ] && ! enabled build && [[ $f == */uvit_cuda_tests ]]; then
        if timeout -k 5 60 "$f" --gtest_filter='CudaLibs.*' >"$WORK/plan_cuda_libs.log" 2>&1 </dev/null; then
          echo "      (run here: $(grep -cE '^\[       OK \]' "$WORK/plan_cuda_libs.log") passed)"
        else
          plan_bad "$f --gtest_filter='CudaLibs.*' fails here: $(grep -m1 -oE 'cuda: [^"]*|Failure.*' "$WORK/plan_cuda_libs.log")"
        fi
      fi
      echo "    $f --gtest_filter='$GTEST_FILTER' --gtest_output=xml:WORK/gtest_cuda.xml > OUT/gtest_cuda.log"
      ;;
    profile)
      plan_need "$BUILD/uvit" build
      for n in $PROFILE_CASES; do plan_case profile "$n"; done
      plan_need "$REPO/bench/gpu/torch_twin.py"
      echo "    $PY bench/gpu/torch_twin.py --device cuda --batch $BATCH --profile --profile-steps 2 $TWIN_ARGS"
      ;;
    gemm)
      plan_need "$BUILD/uvit_cublaslt_bench" build
      echo "    $BUILD/uvit_cublaslt_bench --batch $BATCH --json OUT/anchors.jsonl >> OUT/profile.txt"
      ;;
    bench)
      plan_need "$BUILD/uvit" build
      for n in $BENCH_CASES; do plan_case bench "$n"; done
      echo "    (each case at most 90 s and what is left of the stage; *_cudnn cases skipped if a cuDNN test fails)"
      ;;
    anchors)
      plan_need "$REPO/bench/gpu/anchors.py"
      plan_need "$REPO/tests/reference/autoencoder_torch.py"
      echo "    $PY bench/gpu/anchors.py attention|vae --device cuda $ANCHOR_ARGS"
      echo "    $BUILD/uvit autoencoder decode --device $BENCH_DEVICE --precision tf32 ($ANCHOR_N latents, batch $ANCHOR_BATCH)"
      ;;
    torch)
      plan_need "$REPO/bench/gpu/torch_twin.py"
      echo "    $PY bench/gpu/torch_twin.py --device cuda --batch $BATCH --iters $ITERS --warmup $WARMUP --out OUT/torch_twin.jsonl $TWIN_ARGS"
      ;;
    encoders)
      plan_need "$REPO/bench/gpu/encoders.sh"
      echo "    bench/gpu/encoders.sh $BUILD/uvit OUT/anchors.jsonl ${GPU_CHECK_ENCODERS_N:-64}"
      ;;
    summary)
      plan_need "$REPO/bench/gpu/summarize.py"
      echo "    $PY bench/gpu/summarize.py table ... --out OUT/results.json | tee OUT/summary.txt"
      ;;
  esac
}

# ---------------------------------------------------------------- main
# One function, called on the last line: bash has read the whole file before anything runs, so
# editing the script during a run cannot derail it.
main() {
  say "repo $REPO, OUT $OUT, stages $STAGES${SKIP:+ (skip $SKIP)}, deadline ${DEADLINE}s, UVIT_CUDA=$CUDA"
  # Prebuilt binaries may travel gzipped ($BUILD.tar.gz, made by `tar -czf build-dev.tar.gz
  # build-dev`: a third of the size), since a device call carries at most 64 MiB in all.
  local tgz=$BUILD.tar.gz
  if [ ! -d "$BUILD" ] && [ -f "$tgz" ]; then
    if [ -n "$DRYRUN" ]; then # unpacked into the work folder, only to check the binaries
      mkdir -p "$WORK/prebuilt" && tar -xzf "$tgz" -C "$WORK/prebuilt" &&
        BUILD=$WORK/prebuilt/$(basename "$BUILD")
    else # the archive holds the folder itself (made beside it)
      say "unpacking $tgz"
      tar -xzf "$tgz" -C "$(dirname "$BUILD")" || say "could not unpack $tgz"
    fi
  fi
  run_stage probe stage_probe
  run_stage unpack "$RUNTIME_IF_MISSING_DECL; stage_unpack"
  run_stage configure stage_configure
  run_stage build stage_build
  run_stage test stage_test
  [ "$CUDA" != OFF ] && [ -z "$DRYRUN" ] && start_clocks
  run_stage profile stage_profile
  run_stage gemm stage_gemm
  run_stage bench stage_bench
  run_stage anchors stage_anchors
  run_stage torch stage_torch
  run_stage encoders stage_encoders
  stop_clocks
  # The summary's stage list is written before it runs; its own status is in the table below.
  run_stage summary stage_summary

  echo
  echo "| stage | status | rc | seconds | note |"
  echo "|---|---|---|---|---|"
  while IFS=$'\t' read -r s st rc sec note; do
    echo "| $s | $st | $rc | $sec | $note |"
  done <"$STAGES_TSV"
  if [ -n "$DRYRUN" ]; then
    local carry=0 p
    p=$BUILD # the binaries travel as the gzipped folder, else as the folder (unless built there)
    [ -f "$tgz" ] && p=$tgz
    [ -f "$tgz" ] || ! enabled build || p=
    for p in "$DEBS" $p; do [ -e "$p" ] && carry=$((carry + $(du -sbL "$p" | cut -f1))); done
    carry=$(((carry + 1048575) / 1048576))
    say "what the device call carries ($DEBS and the prebuilt binaries): ${carry} MiB of at most 64"
    [ "$carry" -gt 64 ] && plan_bad "over the 64 MiB a device call carries: carry $BUILD.tar.gz instead of $BUILD (tar -czf)"
    say "dry run ($([ "$DRYRUN" = worst ] && echo "every stage takes its whole limit" || echo "typical stage times")):" \
      "done at ${SIM_ELAPSED}s of the ${DEADLINE}s deadline; $PLAN_PROBLEMS problem(s)"
    rm -rf "$WORK"
    [ "$PLAN_PROBLEMS" -eq 0 ]
    return
  fi
  say "done in $(elapsed)s; files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
  # Non-zero when any stage that ran did not succeed.
  local rc=0
  grep -qP '\t(FAIL|TIMEOUT)\t' "$STAGES_TSV" && rc=1
  rm -rf "$WORK"
  return $rc
}
main "$@"; exit $?
