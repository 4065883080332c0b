#!/usr/bin/env bash
# The encoders on the GPU (issues 6, 7, 8): uvit against the PyTorch twins on the same card, in one
# run, random weights at the real sizes:
#   - SD kl-f8 decode: N latents 4x32x32 -> 256x256, batches of 8 (uvit: the batches after the
#     first, transfers included (the whole command's time is recorded too); torch: the best batch
#     after one warm-up batch);
#   - FID Inception features: 8N (GPU) 32x32 images resized to 299 (uvit: batches of 32 after the first;
#     torch: batches of 50 after one warm-up batch);
#   - CLIP ViT-L/14 text encoder: one prompt, median of 20 after warm-up.
# Usage: bench/gpu/encoders.sh UVIT OUT_JSONL [N]   (PYTHON: python with torch, default python3;
#        ENCODERS_DEVICE=cpu: a dry run without a GPU)
# Each part runs even if another fails; the exit status counts the failed parts. The records are
# appended to OUT_JSONL (scripts/gpu-check.sh empties it at its start). No -q on the uvit runs:
# quiet also drops the final "decoded ... / inception: ..." line these rates are read from.
set -u
set -o pipefail
UVIT=$1 OUTF=$2 N=${3:-64}
PY=${PYTHON:-python3}
DEV=${ENCODERS_DEVICE:-cuda}  # cpu: a dry run of this script on a machine without a GPU
# uvit runs in each precision (on cuda: tf32, the default, and exact fp32); the twins use PyTorch's
# defaults (TF32 convolutions, fp32 matmuls).
if [ "$DEV" = cuda ]; then PRECS="tf32 fp32"; else PRECS="fp32"; fi
# The FID images: 8N on a GPU (several batches after the first), N in a CPU dry run.
if [ "$DEV" = cuda ]; then NF=$((8 * N)); else NF=$N; fi
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
emit() { echo "$1" | tee -a "$OUTF"; }

# ---- autoencoder decode ----
if "$PY" tests/reference/autoencoder_torch.py save --out "$tmp/sd.pth" --seed 0 &&
  "$PY" -c "import numpy as np; np.save('$tmp/z.npy', np.random.RandomState(1).randn($N, 4, 32, 32).astype(np.float32))"; then
  for P in $PRECS; do
    if "$UVIT" autoencoder decode --device "$DEV" --precision "$P" -w "$tmp/sd.pth" --in "$tmp/z.npy" \
      --out "$tmp/x.npy" --batch 8 2>"$tmp/ae.err"; then
      s=$(sed -n 's/^decoded .* in \([0-9.]*\) s (.*$/\1/p' "$tmp/ae.err")
      st=$(sed -n 's/^decoded .*after the first batch: \([0-9.]*\) items.*$/\1/p' "$tmp/ae.err")
      st=${st:-0}
      emit "{\"what\": \"ae_decode\", \"impl\": \"uvit\", \"precision\": \"$P\", \"device\": \"$DEV\", \"images\": $N, \"batch\": 8, \"seconds\": $s, \"steady_per_s\": $st}"
    else
      tail -3 "$tmp/ae.err"
      fails=$((fails + 1))
    fi
  done
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
  "$PY" -c "import numpy as np; np.save('$tmp/imgs.npy', np.random.RandomState(0).randint(0, 256, ($NF, 32, 32, 3)).astype(np.uint8))"; then
  for P in $PRECS; do
    if "$UVIT" fid-features "$tmp/imgs.npy" --device "$DEV" --precision "$P" \
      --inception "$tmp/net/inception.pth" --out "$tmp/f.npy" 2>"$tmp/fid.err"; then
      emit "$(sed -n 's/^inception: \([0-9]*\) images in \([0-9.]*\) s (\([0-9.]*\) img\/s; after the first batch \([0-9.]*\))/{"what": "fid_features", "impl": "uvit", "precision": "'"$P"'", "device": "'"$DEV"'", "images": \1, "seconds": \2, "img_per_s": \3, "steady_per_s": \4}/p' "$tmp/fid.err")"
    else
      tail -3 "$tmp/fid.err"
      fails=$((fails + 1))
    fi
  done
  if t=$("$PY" tests/reference/inception_torch.py --bench "$NF" --device "$DEV" --batch 50 \
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
  for P in $PRECS; do
    if u=$("$UVIT" encode-text --device "$DEV" --precision "$P" --clip "$tmp/clip.safetensors" \
      --out "$tmp/ctx.npy" --repeat 20 -- "A green train is coming down the tracks." 2>"$tmp/clip.err"); then
      emit "{\"what\": \"clip_prompt\", \"precision\": \"$P\", \"device\": \"$DEV\", \"raw\": $u}"
    else
      tail -3 "$tmp/clip.err"
      fails=$((fails + 1))
    fi
  done
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
