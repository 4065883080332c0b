#!/usr/bin/env bash
# Decoding one latent to 256x256 (4x32x32 with the Stable Diffusion kl-f8 autoencoder, 32x16x16
# with the VA-VAE f16d32; random weights): `uvit autoencoder decode` against the PyTorch twin (tests/reference/autoencoder_torch.py
# bench, no_grad, torch.set_num_threads(T)) on the same threads, in one run, alternating REPS times.
# Reports the decode seconds (weight loading excluded from both), CPU seconds and peak RSS of each
# whole process (/usr/bin/time -v; includes loading the 335 MB of weights).
# lavin_stvae also decodes clips: FRAMES > 1 latent frames [1, 16, FRAMES, SIZE, SIZE] (SIZE default
# 32) to 1 + 4 (FRAMES - 1) frames.
#   bench/bench_autoencoder.sh [UVIT] [THREADS] [REPS] [sd_kl_f8|vavae_f16d32|lavin_stvae] [FRAMES] [SIZE]
#   (JSON lines)
set -euo pipefail
UVIT=${1:-build/uvit} T=${2:-2} REPS=${3:-1} CFG=${4:-sd_kl_f8} F=${5:-1}
TWIN=tests/reference/autoencoder_torch.py
case $CFG in
  sd_kl_f8) C=4 S=32 ;;
  vavae_f16d32) C=32 S=16 ;;
  lavin_stvae) C=16 S=${6:-32} TWIN=tests/reference/stvae_torch.py ;;  # LaVin-DiT's ST-VAE (docs/stvae.md)
  *) echo "unknown config $CFG" >&2; exit 2 ;;
esac
PY=${PYTHON:-/usr/bin/python3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
export OMP_NUM_THREADS=$T
"$PY" $TWIN save --config "$CFG" --out "$tmp/sd.pth" --seed 0
"$PY" -c "
import numpy as np
shape = (1, $C) + (($F,) if $F > 1 else ()) + ($S, $S)
np.save('$tmp/z.npy', np.random.RandomState(1).randn(*shape).astype(np.float32))"

# time -v fields -> {"cpu_s", "rss_mb"}
usage() {
  awk -F': ' '/User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {r=$2}
    END {printf "\"cpu_s\": %.2f, \"rss_mb\": %.0f", u + s, r / 1024}' "$1"
}
for ((i = 0; i < REPS; i++)); do
  /usr/bin/time -v "$UVIT" --threads "$T" autoencoder decode -c "$CFG" -w "$tmp/sd.pth" --in "$tmp/z.npy" \
    --out "$tmp/x.npy" 2>"$tmp/u.err"  # not -q: the decode time is read from stderr
  s=$(sed -n 's/^decoded .* in \([0-9.]*\) s.*$/\1/p' "$tmp/u.err")
  echo "{\"impl\": \"uvit\", \"threads\": $T, \"seconds\": $s, $(usage "$tmp/u.err")}"
  twin_frames=()
  [ "$F" -gt 1 ] && twin_frames=(--frames "$F")
  /usr/bin/time -v "$PY" $TWIN bench --threads "$T" --config "$CFG" \
    --latent "$S" "${twin_frames[@]}" >"$tmp/t.out" 2>"$tmp/t.err"
  s=$("$PY" -c "import json; print(json.load(open('$tmp/t.out'))['seconds'])")
  # the twin's own CPU seconds of the timed decode, where it reports them (stvae_torch.py)
  c=$("$PY" -c "import json; print(json.load(open('$tmp/t.out')).get('decode_cpu_s', 'null'))")
  echo "{\"impl\": \"pytorch\", \"threads\": $T, \"seconds\": $s, \"decode_cpu_s\": $c, $(usage "$tmp/t.err")}"
done
