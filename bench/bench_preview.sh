#!/usr/bin/env bash
# The cost of `uvit sample --preview` (docs/samplers.md "Preview"): the tiny class U-ViT of the
# end-to-end tests (28x28, random weights), 16 samples in one mini-batch, DDIM with STEPS network
# evaluations, without a preview and with one every evaluation and every 5 (the default),
# alternating REPS times. Prints the sampling seconds `uvit sample` reports per run and the
# overhead per preview (the x0, the grid and the atomic PNG write).
#   bench/bench_preview.sh [UVIT] [REPS] [STEPS]
set -euo pipefail
UVIT=${1:-build/uvit} REPS=${2:-3} STEPS=${3:-200}
PY=${PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
"$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" --steps 0 -q
secs() {  # the "N samples in S s" line of a sample run with extra arguments $@
  "$UVIT" sample --config "$tmp/tiny.json" --weights "$tmp/run/nnet_ema.safetensors" \
    --classes all --n 16 --batch 16 --sampler ddim --steps "$STEPS" --seed 1 --npy "$tmp/s.npy" \
    "$@" 2>&1 | sed -n 's/.* samples in \([0-9.]*\) s .*/\1/p'
}
for r in $(seq "$REPS"); do
  a=$(secs) b=$(secs --preview "$tmp/p.png" --preview-interval 1)
  c=$(secs --preview "$tmp/p.png" --preview-interval 5)
  "$PY" -c "
a, b, c, n = $a, $b, $c, $STEPS
print(f'rep $r: none {a:.3f} s, every eval {b:.3f} s ({(b - a) / n * 1e3:.3f} ms per preview, '
      f'{a / n * 1e3:.3f} ms per evaluation), every 5 {c:.3f} s ({(c - a) / a * 100:+.1f} %)')"
done
