#!/usr/bin/env bash
# DINOv3 ViT-S+/16 forward (x_norm_patchtokens) and SVG's whole encoder per 256-px image: uvit's
# CPU backend (build/svg_encoder_bench) against the PyTorch twin (tests/reference/dinov3_torch.py
# bench, float32, no_grad) on the same threads, in one run; random weights, loading excluded.
# Usage: bench/bench_svg_encoder.sh [THREADS] [ITERS] [BATCH]  (BENCH=path/to/svg_encoder_bench)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-1}
ITERS=${2:-5}
BATCH=${3:-1}
BENCH=${BENCH:-build/svg_encoder_bench}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$THREADS
"$PY" tests/reference/dinov3_torch.py weights --out "$tmp/dinov3.safetensors"
"$PY" tests/reference/svg_encoder_torch.py weights --size official --out "$tmp"
"$BENCH" "$tmp/dinov3.safetensors" "$tmp/svg_official.safetensors" "$ITERS" "$BATCH"
"$PY" tests/reference/dinov3_torch.py bench --threads "$THREADS" --iters "$ITERS"
