#!/usr/bin/env bash
# `uvit eval` of N samples alone, then two of the same eval at once on one --out (they split the
# chunks: docs/evaluation.md, "Two evals on one work folder"), each process on THREADS threads:
# wall seconds of each (JSON lines). The tiny fmnist preset trained one step, random Inception
# weights, --metrics fid against the statistics of 8 of its own samples.
#   bench/eval_shared.sh [UVIT] [N] [CHUNK] [THREADS] [STEPS]
set -euo pipefail
UVIT=${1:-build/uvit} N=${2:-24} CHUNK=${3:-2} T=${4:-1} STEPS=${5:-20}
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 1 --batch 2 --no-grid -q >/dev/null
W=$tmp/run/nnet_ema.safetensors
"$PY" tests/reference/inception_torch.py --out "$tmp/net" --net-only >/dev/null
I=$tmp/net/inception.pth
"$UVIT" --threads "$T" sample --config fmnist_uvit_tiny --weights "$W" --n 8 --steps 2 --class 1 -q --npy "$tmp/s.npy"
"$UVIT" --threads "$T" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=("$UVIT" --threads "$T" eval --config fmnist_uvit_tiny --weights "$W" --n "$N" --chunk "$CHUNK"
  --steps "$STEPS" --ref "$tmp/ref.npz" --inception "$I" --metrics fid -q)
now() { date +%s.%N; }
t0=$(now); "${E[@]}" --out "$tmp/one.npz" >/dev/null; t1=$(now)
echo "{\"what\": \"one eval\", \"n\": $N, \"chunk\": $CHUNK, \"threads\": $T, \"seconds\": $(echo "$t1 - $t0" | bc)}"
t0=$(now)
"${E[@]}" --out "$tmp/two.npz" --json "$tmp/a.json" >/dev/null & a=$!
"${E[@]}" --out "$tmp/two.npz" --json "$tmp/b.json" >/dev/null & b=$!
wait $a; ta=$(now); wait $b; tb=$(now)
ra=$("$PY" -c "import json; print(json.load(open('$tmp/a.json'))['resumed_chunks'])")
rb=$("$PY" -c "import json; print(json.load(open('$tmp/b.json'))['resumed_chunks'])")
echo "{\"what\": \"two evals at once, one --out\", \"n\": $N, \"chunk\": $CHUNK, \"threads\": $T, \"seconds_first\": $(echo "$ta - $t0" | bc), \"seconds_second\": $(echo "$tb - $t0" | bc), \"resumed_chunks\": [$ra, $rb]}"
cmp -s "$tmp/one.npz" "$tmp/two.npz" || echo "the samples differ" >&2
