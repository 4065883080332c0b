#!/usr/bin/env bash
# Follow-ups of the eighth new-user audit (docs/ux_audit.md, "round 8 (follow-up)"): each check
# failed before its fix (another family's weights named by their preset, train's "starting from"
# line naming the file as typed, --preview on latent presets decided by the config alone, README's
# `uvit info` row).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
F=$tmp/ft
mkdir -p "$F"

# --- another family's weights: the strict load's error says whose file it is ------------------
# A DiT state_dict as torch.save writes it (the twin), given to a U-ViT config: the error named the
# first tensor that differs but not the preset `uvit info off.pt` names. Typed relative to $F.
"$PY" - "$F/off.pt" <<'PYEOF' || fail "writing the DiT state_dict"
import json, sys, torch
sys.path.insert(0, "tests/reference")
import dit_torch
torch.manual_seed(0)
net = dit_torch.build_from_config(json.load(open("configs/fmnist_dit_tiny.json"))["nnet"])
sd = net.state_dict()
torch.save(sd, sys.argv[1])
del sd["final_layer.linear.bias"]
torch.save(sd, sys.argv[1].replace("off.pt", "missing.pt"))
PYEOF
hint="; the file holds preset fmnist_dit_tiny's weights (every tensor's name and shape): --config fmnist_dit_tiny takes it"
cd "$F" || exit 1
expect_error "^uvit: error: off.pt: tensor 'pos_embed' has shape \[1, 49, 128\], the config expects \[1, 51, 128\]$hint$" \
  "$UVIT" train --config fmnist_uvit_tiny --init off.pt --out x --steps 1 --batch 2 --no-grid
expect_error "^uvit: error: off.pt: tensor 'pos_embed' has shape \[1, 49, 128\], the config expects \[1, 51, 128\]$hint$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights off.pt --class 1 --steps 2 --out x.png
# A file no preset has exactly (a tensor missing) keeps the loader's words alone.
expect_error "^uvit: error: missing.pt: missing tensor 'final_layer.linear.bias' \[32\] (71 of 72 tensors present)$" \
  "$UVIT" train --config fmnist_dit_tiny --init missing.pt --out x --steps 1 --batch 2 --no-grid
[ ! -e x ] && [ ! -e x.png ] || fail "a refused load left a file"

# --- train --init names the file as typed; the run records its absolute path ----------------------
# It printed "starting from /abs/path/off.pt" where its errors say "off.pt".
run "$UVIT" train --config fmnist_dit_tiny --init off.pt --out run --steps 1 --batch 2 --no-grid
sha=$(sha256sum off.pt | cut -d' ' -f1)
grep -qx "starting from off.pt (sha256 $sha)" "$tmp/err" ||
  fail "train --init off.pt said: $(grep starting "$tmp/err")"
"$PY" - "$F" "$sha" <<'PYEOF' || fail "the run's record of its --init file"
import json, sys
d, sha = sys.argv[1:3]
t = json.load(open(d + "/run/config.json"))["train"]
assert t["init_weights"] == d + "/off.pt" and t["init_weights_sha256"] == sha, t
row = [json.loads(l) for l in open(d + "/run/log.jsonl") if '"init"' in l][0]
assert row["path"] == d + "/off.pt" and row["sha256"] == sha, row
PYEOF
cd - >/dev/null || exit 1

# --- --preview on latent presets: the config decides, the autoencoder's weights are not needed ---
# Two tiny latent presets (U-ViT on z [C, 8, 8]): C 4 with a kl-f8-layout autoencoder config (the
# cheap map), C 8 (none, as VA-VAE's 32 channels and SVG's 392).
L=$tmp/lat
mkdir -p "$L"
tiny_kl_f8 "$L/sd.json" 0.18215
sed 's/"z_channels": 4/"z_channels": 8/; s/"embed_dim": 4/"embed_dim": 8/' "$L/sd.json" >"$L/d8.json"
run "$PY" tests/reference/autoencoder_torch.py save --config "$L/sd.json" --out "$L/sd.pth" --seed 3
"$PY" - "$L" <<'PYEOF' || fail "the tiny latent presets"
import json, sys, torch
sys.path.insert(0, "tests/reference")
import uvit_torch
d = sys.argv[1]
p = json.load(open("configs/imagenet256_uvit_large.json"))
for ch, ae in ((8, "d8"), (4, "sd")):
    p.update(z_shape=[ch, 8, 8], autoencoder={"config": "%s/%s.json" % (d, ae)})
    p["nnet"].update(img_size=8, in_chans=ch, embed_dim=32, depth=2, num_heads=2, use_checkpoint=False)
    json.dump(p, open("%s/%s_preset.json" % (d, ae), "w"))
torch.manual_seed(0)
torch.save(uvit_torch.build_from_config(p["nnet"]).state_dict(), d + "/sd_net.pth")
PYEOF
head -c 4096 /dev/urandom >"$L/junk.safetensors"
S=(--class 1 --n 2 --steps 2 -q)
# --latents alone wrote no image, so no autoencoder was loaded, and the preview was refused as "no
# autoencoder is loaded to tell what its latents mean" (--autoencoder did not help): the map needs
# the autoencoder's config, not its weights. Its grid is the one a run decoding images draws.
run "$UVIT" sample -c "$L/sd_preset.json" -w "$L/sd_net.pth" "${S[@]}" --latents "$L/z.npy" \
  --preview "$L/p_latents.png"
run "$UVIT" sample -c "$L/sd_preset.json" -w "$L/sd_net.pth" "${S[@]}" --autoencoder "$L/sd.pth" \
  --out "$L/s.png" --preview "$L/p_images.png"
"$PY" -c "
import sys; from PIL import Image
assert Image.open(sys.argv[1]).size == (22, 12), Image.open(sys.argv[1]).size  # 2 latents 8x8
" "$L/p_latents.png" || fail "the --latents preview is not a grid of two 8x8 latents"
cmp -s "$L/p_latents.png" "$L/p_images.png" || fail "the --latents preview differs from the decoding run's"
# The 8-channel refusal came after the network and the autoencoder loaded (seconds for svg_xl): now
# before, so unreadable weights are never opened; with --latents alone it names the channels too.
d8="^uvit: error: --preview: config d8_preset: its autoencoder (8 latent channels) has no cheap latent-to-RGB map"
expect_error "$d8" "$UVIT" sample -c "$L/d8_preset.json" -w "$L/junk.safetensors" \
  --autoencoder "$L/junk.safetensors" "${S[@]}" --preview "$L/p8.png" --out "$L/s8.png"
expect_error "$d8" "$UVIT" sample -c "$L/d8_preset.json" -w "$L/junk.safetensors" "${S[@]}" \
  --preview "$L/p8.png" --latents "$L/z8.npy"
[ ! -e "$L/p8.png" ] && [ ! -e "$L/s8.png" ] && [ ! -e "$L/z8.npy" ] || fail "a refused --preview wrote a file"

# --- README.md's `uvit info` row names the kinds of file round 8 added ---------------------------
row=$(grep '^| `uvit info FILE' README.md)
for k in train_state log.jsonl npy_folder extract-features "FiT's latent" "uvit eval" \
  "autoencoder config" quantised; do
  case "$row" in *"$k"*) ;; *) fail "README's uvit info row does not name $k: $row" ;; esac
done
exit $fails
