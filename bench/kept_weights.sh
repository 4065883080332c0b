#!/usr/bin/env bash
# What the fp32 kept blocked weights cost and save in sampling (docs/kernels.md, "Kept blocked
# weights"; docs/benchmarks.md): one thread, fp32, two builds alternated (OLD NEW NEW OLD per pair).
# 1. `uvit bench --mode sample` of U-ViT-S/2 (bench/configs/uvit_s_2_latent.json) and DiT-S/2
#    (dit_s_2), 2 images with guidance (each call a forward at batch 4), STEPS steps: wall and CPU
#    seconds and peak RSS of the process (random weights; set-up included).
# 2. `uvit sample` of the end-to-end tests' tiny class U-ViT (28x28, random weights), 16 samples
#    in one mini-batch, DDIM with TINY_STEPS evaluations: the same, and the samples of the two
#    builds compared byte for byte.
# Usage: bench/kept_weights.sh OLD NEW [PAIRS]     CONFIGS (space-separated) narrows part 1;
#        STEPS (default 10), TINY_STEPS (default 100).
set -euo pipefail
OLD=${1:?usage: bench/kept_weights.sh OLD NEW [PAIRS]} NEW=${2:?usage} PAIRS=${3:-1}
STEPS=${STEPS:-10} TINY_STEPS=${TINY_STEPS:-100}
CONFIGS=${CONFIGS:-"bench/configs/uvit_s_2_latent.json dit_s_2"}
PY=${PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/.."
. bench/time_v.sh
export OMP_NUM_THREADS=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "$(lscpu | sed -n 's/^Model name: *//p'); $(uptime)"
for cfg in $CONFIGS; do
  echo "== $(basename "$cfg" .json): bench --mode sample, --n 2 --batch 2, $STEPS steps, fp32"
  one() {
    time_v "$1 $(basename "$cfg" .json)" "$tmp/t" "$2" --threads 1 bench --config "$cfg" \
      --mode sample --n 2 --batch 2 --steps "$STEPS" --precision fp32 -q
  }
  alternate "$OLD" "$NEW" "$PAIRS"
done
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
"$NEW" train --config "$tmp/tiny.json" --out "$tmp/run" --steps 0 -q
echo "== tiny class U-ViT: uvit sample --n 16 --batch 16, DDIM $TINY_STEPS steps, fp32"
one() {
  time_v "$1 tiny" "$tmp/t" "$2" --threads 1 sample --config "$tmp/tiny.json" \
    --weights "$tmp/run/nnet_ema.safetensors" --classes all --n 16 --batch 16 --sampler ddim \
    --steps "$TINY_STEPS" --seed 1 --precision fp32 --npy "$tmp/$1.npy" -q
}
alternate "$OLD" "$NEW" "$PAIRS"
cmp "$tmp/OLD.npy" "$tmp/NEW.npy" && echo "tiny: the two builds' samples are byte-identical"
