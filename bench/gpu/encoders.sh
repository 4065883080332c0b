#!/usr/bin/env bash
# The encoders on the GPU (issues 6, 7, 8): uvit against the PyTorch twins on the same card, in one
# run, random weights at the real sizes:
#   - SD kl-f8 decode: N latents 4x32x32 -> 256x256, batches of 8 (uvit: whole command incl.
#     transfers, weight loading excluded; torch: after one warm-up batch);
#   - FID Inception features: N 32x32 images resized to 299, batches of 50;
#   - CLIP ViT-L/14 text encoder: one prompt, median of 20 after warm-up.
# Usage: bench/gpu/encoders.sh UVIT OUT_JSONL [N]   (PYTHON: python with torch, default python3;
#        ENCODERS_DEVICE=cpu: a dry run without a GPU)
# Each part runs even if another fails; the exit status counts the failed parts.
set -u
set -o pipefail
UVIT=$1 OUTF=$2 N=${3:-64}
PY=${PYTHON:-python3}
DEV=${ENCODERS_DEVICE:-cuda}  # cpu: a dry run of this script on a machine without a GPU
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$OUTF"
fails=0
emit() { echo "$1" | tee -a "$OUTF"; }

# ---- autoencoder decode ----
if "$PY" tests/reference/autoencoder_torch.py save --out "$tmp/sd.pth" --seed 0 &&
  "$PY" -c "import numpy as np; np.save('$tmp/z.npy', np.random.RandomState(1).randn($N, 4, 32, 32).astype(np.float32))"; then
  if "$UVIT" autoencoder decode --device "$DEV" -w "$tmp/sd.pth" --in "$tmp/z.npy" --out "$tmp/x.npy" \
    --batch 8 -q 2>"$tmp/ae.err"; then
    s=$(sed -n 's/^decoded .* in \([0-9.]*\) s$/\1/p' "$tmp/ae.err")
    emit "{\"what\": \"ae_decode\", \"impl\": \"uvit\", \"device\": \"$DEV\", \"images\": $N, \"batch\": 8, \"seconds\": $s}"
  else
    tail -3 "$tmp/ae.err"
    fails=$((fails + 1))
  fi
  # The twin decodes batches of 8 N/8 times (reps), best batch reported: scale to N images.
  if t=$("$PY" tests/reference/autoencoder_torch.py bench --device "$DEV" --batch 8 --reps $((N / 8)) 2>&1 | tail -1); then
    emit "{\"what\": \"ae_decode\", \"impl\": \"torch\", \"device\": \"$DEV\", \"raw\": $t}"
  else
    echo "$t"
    fails=$((fails + 1))
  fi
else
  fails=$((fails + 1))
fi

# ---- FID Inception features ----
if "$PY" tests/reference/inception_torch.py --out "$tmp/net" --net-only >/dev/null &&
  "$PY" -c "import numpy as np; np.save('$tmp/imgs.npy', np.random.RandomState(0).randint(0, 256, ($N, 32, 32, 3)).astype(np.uint8))"; then
  if "$UVIT" fid-features "$tmp/imgs.npy" --device "$DEV" --inception "$tmp/net/inception.pth" \
    --out "$tmp/f.npy" -q 2>"$tmp/fid.err"; then
    emit "$(sed -n 's/^inception: \([0-9]*\) images in \([0-9.]*\) s (\([0-9.]*\) img\/s)/{"what": "fid_features", "impl": "uvit", "device": "'"$DEV"'", "images": \1, "seconds": \2, "img_per_s": \3}/p' "$tmp/fid.err")"
  else
    tail -3 "$tmp/fid.err"
    fails=$((fails + 1))
  fi
  if t=$("$PY" tests/reference/inception_torch.py --bench "$N" --device "$DEV" --batch 50 \
    --weights "$tmp/net/inception.pth" 2>&1 | tail -1); then
    emit "{\"what\": \"fid_features\", \"raw\": $t}"
  else
    echo "$t"
    fails=$((fails + 1))
  fi
else
  fails=$((fails + 1))
fi

# ---- CLIP prompt encoding ----
if "$PY" tests/reference/clip_torch.py weights --out "$tmp/clip.safetensors" --seed 0; then
  if u=$("$UVIT" encode-text --device "$DEV" --clip "$tmp/clip.safetensors" --out "$tmp/ctx.npy" \
    --repeat 20 -- "A green train is coming down the tracks." 2>"$tmp/clip.err"); then
    emit "{\"what\": \"clip_prompt\", \"device\": \"$DEV\", \"raw\": $u}"
  else
    tail -3 "$tmp/clip.err"
    fails=$((fails + 1))
  fi
  if t=$("$PY" tests/reference/clip_torch.py bench --device "$DEV" --iters 20 --warmup 3 2>&1 | tail -1); then
    emit "{\"what\": \"clip_prompt\", \"device\": \"$DEV\", \"raw\": $t}"
  else
    echo "$t"
    fails=$((fails + 1))
  fi
else
  fails=$((fails + 1))
fi
echo "encoders: $fails part(s) failed"
exit "$fails"
