#!/usr/bin/env bash
# A missing official file (one the docs name as released) says, in its one "cannot open" line,
# what it is and which docs page and section say where to get it (src/io/official_files.cpp); a
# file a preset names says the setting too; any other missing file keeps the plain line
# (docs/formats.md; docs/ux_audit.md, "Found in round 12").
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
cd "$tmp" || exit 1
"$PY" -c "
import numpy as n
n.save('z.npy', n.zeros((1, 4, 4, 4), n.float32))
n.save('z16.npy', n.zeros((1, 16, 4, 4), n.float32))" || fail "the latents"
missing=": cannot open: No such file or directory"
expect_error "^uvit: error: autoencoder_kl.pth$missing (U-ViT's Stable Diffusion autoencoder: docs/autoencoder.md, \"Weights and config\")$" \
  "$UVIT" autoencoder decode --weights autoencoder_kl.pth --in z.npy --out x.npy
expect_error "^uvit: error: mdt_xl2_v2_ckpt.pt$missing (MDTv2-XL/2's released checkpoint: docs/mdt.md, \"Presets\")$" \
  "$UVIT" convert mdt_xl2_v2_ckpt.pt out.safetensors --config mdt_xl_2
expect_error "^uvit: error: stvae.pt$missing (LaVin-DiT's ST-VAE: docs/stvae.md, \"Commands\")$" \
  "$UVIT" autoencoder decode --config lavin_stvae --weights stvae.pt --in z16.npy --out x.npy
# In a folder: the file name decides.
expect_error "^uvit: error: w/vavae-imagenet256-f16d32-dinov2.pt$missing (LightningDiT's VA-VAE: docs/autoencoder.md, \"VA-VAE f16d32 (LightningDiT's tokenizer)\")$" \
  "$UVIT" autoencoder decode --config vavae_f16d32 --weights w/vavae-imagenet256-f16d32-dinov2.pt \
  --in z.npy --out x.npy
# svg_xl's own setting (no assets/ here): checked before the weights and the decoder.
expect_error "^uvit: error: svg_xl's autoencoder.latent_stats: assets/svg/dinov3_sp_stats.pt$missing (SVG's DINOv3 feature statistics: docs/svg.md, \"Recipes\")$" \
  "$UVIT" sample --config svg_xl --weights svg_xl.safetensors --autoencoder ae.ckpt --classes 1 --out x.png
# Any other name: no guess.
expect_error "^uvit: error: mine.pth$missing$" \
  "$UVIT" autoencoder decode --weights mine.pth --in z.npy --out x.npy
[ ! -e x.npy ] && [ ! -e x.png ] && [ ! -e out.safetensors ] || fail "a refused command wrote"
exit $fails
