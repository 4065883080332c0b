#!/usr/bin/env bash
# Prompt-encoding latency of the CLIP ViT-L/14 text encoder (random weights, 77 tokens, 12 layers,
# width 768): `uvit encode-text` against the PyTorch twin (tests/reference/clip_torch.py) on the
# same threads, in one run. Weight loading and tokenizer setup are excluded from both timings.
# Usage: bench/bench_clip.sh [THREADS] [ITERS] [BATCH]   (UVIT=path/to/uvit, default build/uvit)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ITERS=${2:-10}
BATCH=${3:-1}
UVIT=${UVIT:-build/uvit}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$THREADS
"$PY" tests/reference/clip_torch.py weights --out "$tmp/clip_l14.safetensors" --seed 0
prompts=()
for ((i = 0; i < BATCH; i++)); do prompts+=("A green train is coming down the tracks number $i."); done
u=$("$UVIT" --threads "$THREADS" encode-text --clip "$tmp/clip_l14.safetensors" \
  --out "$tmp/ctx.npy" --repeat "$ITERS" -- "${prompts[@]}" 2>/dev/null)
t=$("$PY" tests/reference/clip_torch.py bench --threads "$THREADS" --iters "$ITERS" --batch "$BATCH")
echo "$u"
echo "$t"
"$PY" - "$u" "$t" <<'PYEOF'
import json, sys
u, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("| batch | threads | uvit median ms | torch median ms | speed-up |")
print("|---|---|---|---|---|")
print("| %d | %d | %.1f | %.1f | %.2fx |" % (u["batch"], t["threads"], 1e3 * u["median_s"], 1e3 * t["median_s"],
                                        t["median_s"] / u["median_s"]))
PYEOF
