#!/usr/bin/env bash
# Peak RSS and CPU seconds of the encoders' commands, dominated by loading their weights (docs/
# benchmarks.md, "Loading the encoders' weights in place"): clip-score of one image and one prompt
# with CLIP ViT-L/14 (both towers, f32), encode-text of one prompt (the same file: the text tower
# only), fid-features of 4 images with the FID Inception, autoencoder decode of one latent
# with the SD kl-f8, and (stvae, not in the default list) of one 16 x 2 x 16 x 16 clip latent with
# LaVin-DiT's ST-VAE (862 MB); random weights from the PyTorch twins. Two builds alternated (OLD, NEW, NEW,
# OLD per pair); each run prints wall and CPU seconds, peak RSS, minor faults and the load
# average before it (bench/time_v.sh).
# Usage: bench/load_peak.sh OLD NEW [PAIRS] [DIR] [COMMANDS]
#   DIR: a folder kept between runs for the weights (made there when missing: minutes).
#   COMMANDS: which to run, of "clip-score encode-text fid-features autoencoder stvae" (default
#   all but stvae);
#   only their weights are made.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?OLD binary} NEW=${2:?NEW binary} PAIRS=${3:-2} DIR=${4:-}
CMDS=" ${5:-clip-score encode-text fid-features autoencoder} "
want() { [[ $CMDS == *" $1 "* ]]; }
PY=/usr/bin/python3
if [ -n "$DIR" ]; then
  d=$DIR
  mkdir -p "$d"
else
  d=$(mktemp -d)
  trap 'rm -rf "$d"' EXIT
fi
files=()
if want clip-score || want encode-text; then
  [ -f "$d/clip.safetensors" ] ||
    "$PY" tests/reference/clip_vision_torch.py weights --size l14 --dtype f32 --out "$d/clip.safetensors"
  files+=("CLIP $d/clip.safetensors")
fi
if want fid-features; then
  [ -f "$d/inc/inception.pth" ] || "$PY" tests/reference/inception_torch.py --out "$d/inc" --net-only >/dev/null
  files+=("Inception $d/inc/inception.pth")
fi
if want autoencoder; then
  [ -f "$d/sd.pth" ] ||
    "$PY" tests/reference/autoencoder_torch.py save --config sd_kl_f8 --out "$d/sd.pth" --seed 0
  files+=("kl-f8 $d/sd.pth")
fi
if want stvae; then
  [ -f "$d/stvae.pt" ] ||
    "$PY" tests/reference/stvae_torch.py save --config lavin_stvae --out "$d/stvae.pt" --seed 0
  files+=("ST-VAE $d/stvae.pt")
fi
"$PY" -c "
import numpy as np
r = np.random.RandomState(0)
np.savez('$d/im.npz', arr_0=r.randint(0, 256, (1, 224, 224, 3)).astype(np.uint8))
np.save('$d/im32.npy', r.randint(0, 256, (4, 32, 32, 3)).astype(np.uint8))
np.save('$d/z.npy', r.randn(1, 4, 32, 32).astype(np.float32))
np.save('$d/zt.npy', r.randn(1, 16, 2, 16, 16).astype(np.float32))"
echo "a photo of a cat" >"$d/p.txt"
line="weights:"
for f in "${files[@]}"; do
  cat "${f#* }" >/dev/null  # in the page cache
  line+=" ${f%% *} $(du -h "${f#* }" | cut -f1)"
done
echo "$line"
echo "$(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs"
. bench/time_v.sh
measure() { time_v "$1" "$d/time" "${@:2}"; }  # label CMD...
one() {  # which BINARY
  local u=$2
  want clip-score && measure "$1 clip-score" "$u" --threads 2 clip-score --images "$d/im.npz" --prompts "$d/p.txt" \
    --clip "$d/clip.safetensors" --clip-config "$d/clip.json" -q
  want encode-text && measure "$1 encode-text" "$u" --threads 2 encode-text --clip "$d/clip.safetensors" \
    --clip-config "$d/clip.json" --out "$d/ctx.npy" -- "a photo of a cat"
  want fid-features && measure "$1 fid-features" "$u" --threads 2 fid-features "$d/im32.npy" \
    --inception "$d/inc/inception.pth" --out "$d/f.npy" -q
  want autoencoder && measure "$1 autoencoder decode" "$u" --threads 2 autoencoder decode -c sd_kl_f8 -w "$d/sd.pth" \
    --in "$d/z.npy" --out "$d/x.npy" -q
  want stvae && measure "$1 stvae decode" "$u" --threads 2 autoencoder decode -c lavin_stvae -w "$d/stvae.pt" \
    --in "$d/zt.npy" --out "$d/xt_$1.npy" -q
  return 0  # the last command left out is no failure
}
alternate "$OLD" "$NEW" "$PAIRS"
