#!/usr/bin/env bash
# Whole-process start-up: `uvit predict` (load + one forward) against `uvit bench` (the forward
# alone) and the PyTorch twin's in-process forward, each with its peak RSS (/usr/bin/time -v).
# Usage: bench/startup.sh [CONFIG] [BATCH] [THREADS] [UVIT]   (default cifar10_uvit_small = U-ViT-S/2,
# batch 16, 2 threads, build/uvit). Weights: the twin's random init, as .pth and .safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=${1:-cifar10_uvit_small} B=${2:-16} T=${3:-2} UVIT=${4:-build/uvit}
PY=/usr/bin/python3
json=$CFG; [ -f "$json" ] || json=configs/$CFG.json
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
"$PY" bench/random_weights.py "$json" "$d/w.pth"
"$UVIT" convert "$d/w.pth" "$d/w.safetensors" >/dev/null
"$PY" - "$json" "$B" "$d" <<'PYEOF'
import json, sys, numpy as np
cfg, B, d = json.load(open(sys.argv[1]))["nnet"], int(sys.argv[2]), sys.argv[3]
r = np.random.default_rng(0)
S, C = cfg.get("img_size", cfg.get("input_size")), cfg.get("in_chans", cfg.get("in_channels", 4))
np.save(d + "/x.npy", r.standard_normal((B, C, S, S)).astype(np.float32))
np.save(d + "/t.npy", (r.random(B) * 999).astype(np.float32))
np.save(d + "/y.npy", r.integers(0, max(1, cfg.get("num_classes", 1) - 1), B).astype(np.int64))
PYEOF
y=() cls=() prompt=''
grep -q '"num_classes": *[1-9]' "$json" && y=(--y "$d/y.npy") cls=(--classes all) prompt='"prompt": "0", '
measure() {  # label CMD...: wall seconds and peak RSS of the whole process
  /usr/bin/time -v "${@:2}" >"$d/out" 2>"$d/time" || { cat "$d/time"; exit 1; }
  local wall rss cpu
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$d/time")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$d/time" | awk -F: '{print $(NF-1)*60+$NF}')
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$d/time")
  printf '| %s | %.2f | %.2f | %.0f |\n' "$1" "$wall" "$cpu" "$((rss / 1024))"
}
printf '| %s batch %s, %s threads | wall s | CPU s (user+sys) | peak RSS MB |\n|---|---|---|---|\n' \
  "$CFG" "$B" "$T"
for w in safetensors pth; do
  measure "uvit predict ($w)" "$UVIT" --threads "$T" predict -c "$json" -w "$d/w.$w" \
    --x "$d/x.npy" --t "$d/t.npy" "${y[@]}" -o "$d/eps.npy"
done
# The forward alone: the timed iteration after one warm-up, in-process, as each tool reports it.
measure "uvit bench (whole process: warm-up + 1 forward)" "$UVIT" --threads "$T" bench -c "$json" \
  --batch "$B" --mode forward --warmup 1 --iters 1
sed -n 's/.*"median_s": *\([0-9.]*\).*/| uvit forward alone (in-process) | \1 | | |/p' "$d/out"
measure "PyTorch twin (whole process: import, build, warm-up + 1 forward)" "$PY" \
  tests/reference/bench_torch.py --child --config "$json" --batch "$B" --threads "$T" --iters 1 \
  --warmup 1 --mode forward
sed -n 's/.*"median_s": *\([0-9.]*\).*/| PyTorch forward alone (in-process) | \1 | | |/p' "$d/out"
# sample: one image, one step (start-up + one network evaluation + PNG/npy writing).
measure "uvit sample --n 1 --steps 1" "$UVIT" --threads "$T" sample -c "$json" -w "$d/w.safetensors" \
  --n 1 --steps 1 "${cls[@]}" --npy "$d/s.npy" -q
# serve: launch to /health answering, and to the first txt2img (one image, one step) answered.
port=$((20000 + RANDOM % 20000))
t0=$(date +%s.%N)
"$UVIT" --threads "$T" serve -c "$json" -w "$d/w.safetensors" --port "$port" -q &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$d"' EXIT  # never leave the server behind
until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
  kill -0 $pid 2>/dev/null || { echo "serve exited"; exit 1; }
  sleep 0.05
done
t1=$(date +%s.%N)
curl -sf -X POST "http://127.0.0.1:$port/sdapi/v1/txt2img" -H 'Content-Type: application/json' \
  -d "{$prompt\"steps\": 1, \"batch_size\": 1, \"seed\": 1}" >/dev/null
t2=$(date +%s.%N)
rss=$(awk '/VmHWM/ {print int($2 / 1024)}' /proc/$pid/status)
kill $pid; wait $pid 2>/dev/null || true
printf '| uvit serve: launch to /health answering | %.2f | | |\n' "$(echo "$t1 - $t0" | bc)"
printf '| uvit serve: launch to first txt2img answered (1 image, 1 step) | %.2f | | %s |\n' \
  "$(echo "$t2 - $t0" | bc)" "$rss"
