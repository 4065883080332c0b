#!/usr/bin/env bash
# Where one thread's CPU time goes in a `uvit bench` run, oneDNN's JIT kernels named: perf record
# with ONEDNN_JIT_PROFILE=2 (oneDNN writes /tmp/perf-PID.map, so its generated code is reported as
# jit_brgemm_kernel_t, jit_brgemm_matmul_copy_b_f32_t, ... instead of one anonymous [JIT] row),
# then the samples summed per symbol (docs/benchmarks.md, "AMX Xeon, 2026-12-06 (3)").
# Usage: bench/profile_step.sh BINARY [CONFIG [MODE [PRECISION [ITERS]]]]
#        defaults: bench/configs/uvit_s_2_latent.json train fp32 4; batch 8 (BATCH=N: another),
#        one warm-up.
# Per process, so set-up (random weights: init_random, libm's log/cos/sin) is in the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:?usage: bench/profile_step.sh BINARY [CONFIG [MODE [PRECISION [ITERS]]]]}
cfg=${2:-bench/configs/uvit_s_2_latent.json}
mode=${3:-train}
prec=${4:-fp32}
iters=${5:-4}
command -v perf >/dev/null || { echo "profile_step.sh: perf not found" >&2; exit 1; }
data=$(mktemp)
before=$(ls /tmp/perf-*.map 2>/dev/null || true)
cleanup() {  # the map oneDNN wrote for this run (none existed before it)
  rm -f "$data"
  for m in /tmp/perf-*.map; do
    [ -e "$m" ] && ! grep -qxF "$m" <<<"$before" && rm -f "$m"
  done
  return 0
}
trap cleanup EXIT
OMP_NUM_THREADS=1 ONEDNN_JIT_PROFILE=2 perf record -q -F 499 -o "$data" "$bin" --threads 1 bench \
  --config "$cfg" --batch "${BATCH:-8}" --mode "$mode" --iters "$iters" --warmup 1 \
  --precision "$prec" \
  >/dev/null 2>&1
perf report -i "$data" --stdio --header-only 2>/dev/null | grep -m1 "sample_freq" || true
echo "samples: $(perf report -i "$data" --stdio 2>/dev/null | awk '/^# Samples:/ {print $3; exit}')"
perf report -i "$data" --no-children --sort sym 2>/dev/null | awk '
  /^#/ || !/%/ || / --/ { next }
  { p = $1; sub("%", "", p); $1 = ""; $2 = ""; k = $0; gsub(/^ +/, "", k); s[substr(k, 1, 100)] += p }
  END { for (k in s) printf "%6.2f %s\n", s[k], k }' | sort -rn | head -"${TOP:-30}"
