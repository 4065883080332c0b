#!/usr/bin/env bash
# Runs every libFuzzer driver of a -DUVIT_FUZZ=ON build (docs/fuzzing.md):
#   tests/fuzz/run.sh BUILD_DIR SECONDS_PER_TARGET [TARGET ...]
# Corpora grow in BUILD_DIR/fuzz/corpus/NAME (seeded from uvit_fuzz_seeds, the PyTorch .pth files
# and configs/); crashes land in BUILD_DIR/fuzz/crash/NAME/. SECONDS 0 runs each over its seeds once.
set -uo pipefail
B=$(cd "$1" && pwd) S=$2
shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors pth npy image config clip_vocab serve idx cifar feature_npy latent_stats capi)
root=$(cd "$(dirname "$0")/../.." && pwd)
seeds=$B/fuzz/seeds
if [ ! -d "$seeds" ]; then
  "$B/tests/fuzz/uvit_fuzz_seeds" "$seeds" || exit 1
  mkdir -p "$seeds/pth" "$seeds/config"
  /usr/bin/python3 "$root/tests/unit/make_torch_files.py" "$seeds/pth" >/dev/null || exit 1
  /usr/bin/python3 "$root/tests/fuzz/make_pth_seeds.py" "$seeds/pth" || exit 1
  /usr/bin/python3 "$root/tests/fuzz/make_reader_seeds.py" "$seeds" || exit 1
  cp "$root"/configs/*.json "$root"/tests/configs/*.json "$seeds/config/"
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1 UVIT_CONFIG_DIR=$root/configs
fails=0
for t in "${targets[@]}"; do
  exe=$B/tests/fuzz/fuzz_$t
  [ -x "$exe" ] || { echo "fuzz_$t: not built"; fails=$((fails + 1)); continue; }
  corpus=$B/fuzz/corpus/$t crash=$B/fuzz/crash/$t
  mkdir -p "$corpus" "$crash"
  # 64 KB inputs at most, 2 GB RSS and 1 GB per allocation: more from a small file is a bomb.
  opts=(-max_len=65536 -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=120
        -artifact_prefix="$crash/" -print_final_stats=1)
  if [ "$S" = 0 ]; then
    "$exe" "${opts[@]}" -runs=0 "$corpus" "$seeds/$t" || fails=$((fails + 1))
  else
    "$exe" "${opts[@]}" -max_total_time="$S" "$corpus" "$seeds/$t" 2>&1 | tail -25 ||
      fails=$((fails + 1))
    [ -z "$(ls -A "$crash")" ] || { echo "fuzz_$t: findings in $crash"; fails=$((fails + 1)); }
  fi
done
exit $fails
