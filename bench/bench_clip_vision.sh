#!/usr/bin/env bash
# CLIP image-tower throughput (CLIPScore's cost per image): `uvit clip-score --repeat` against the
# PyTorch twin (tests/reference/clip_vision_torch.py bench) on the same threads, in one run.
# Random CLIPModel weights (stored f16, computed fp32); 224 x 224 images, so preprocessing is the
# normalisation only (uvit's timing includes it, the twin's starts from normalised pixels).
# Usage: bench/bench_clip_vision.sh [THREADS] [ITERS] [BATCH] [l14|b16]  (UVIT=path/to/uvit)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
ITERS=${2:-3}
BATCH=${3:-8}
SIZE=${4:-l14}
UVIT=${UVIT:-build/uvit}
PY=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$THREADS
"$PY" tests/reference/clip_vision_torch.py weights --size "$SIZE" --out "$tmp/clip.safetensors"
"$PY" -c "import numpy as np, sys; np.savez(sys.argv[1], arr_0=np.random.default_rng(0).integers(0, 256, (int(sys.argv[2]), 224, 224, 3), dtype=np.uint8))" \
  "$tmp/im.npz" "$BATCH"
echo "a photo of a cat" >"$tmp/p.txt"
u=$("$UVIT" --threads "$THREADS" clip-score --images "$tmp/im.npz" --prompts "$tmp/p.txt" \
  --clip "$tmp/clip.safetensors" --clip-config "$tmp/clip.json" --batch "$BATCH" --repeat "$ITERS" -q | tail -1)
t=$("$PY" tests/reference/clip_vision_torch.py bench --size "$SIZE" --threads "$THREADS" --iters "$ITERS" --batch "$BATCH")
echo "$u"
echo "$t"
"$PY" - "$u" "$t" <<'PYEOF'
import json, sys
u, t = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("| tower | batch | threads | uvit img/s | torch img/s | speed-up |")
print("|---|---|---|---|---|---|")
print("| %s | %d | %d | %.2f | %.2f | %.2fx |" % (t["size"], u["batch"], t["threads"], u["img_per_s"], t["img_per_s"],
                                             u["img_per_s"] / t["img_per_s"]))
PYEOF
