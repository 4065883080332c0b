#!/usr/bin/env bash
# The cost of `uvit sample --dir` drawing its samples one mini-batch per call, each written as it is
# drawn (docs/cli.md "--dir"), against binaries that drew them all in one call: the tiny class U-ViT
# of the end-to-end tests (28x28, random weights), N samples in mini-batches of BATCH (small, so the
# per-call cost shows), STEPS DDIM steps, one thread. Per binary, alternated REPS times: the CPU
# seconds (user + sys, robust to a shared machine) and the peak RSS of the whole process.
#   bench/sample_dir_units.sh OLD NEW [REPS] [N] [BATCH] [STEPS]
set -euo pipefail
OLD=$1 NEW=$2 REPS=${3:-3} N=${4:-512} BATCH=${5:-4} STEPS=${6:-2}
PY=${PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
"$NEW" train --config "$tmp/tiny.json" --out "$tmp/run" --steps 0 -q
one() {  # BIN: "CPU-seconds peak-MiB" of one run into a fresh folder
  rm -rf "$tmp/d"
  /usr/bin/time -f "%U %S %M" -o "$tmp/t" "$1" --threads 1 sample --config "$tmp/tiny.json" \
    --weights "$tmp/run/nnet_ema.safetensors" --classes all --n "$N" --batch "$BATCH" \
    --sampler ddim --steps "$STEPS" --seed 1 --dir "$tmp/d" -q
  awk '{printf "%.2f s %.0f MiB", $1 + $2, $3 / 1024}' "$tmp/t"
}
for r in $(seq "$REPS"); do
  echo "rep $r: old $(one "$OLD"), new $(one "$NEW")"
done
