#!/usr/bin/env bash
# SVG end to end (docs/svg.md): `uvit info` on svg_xl (the official table), fmnist_svg_tiny trained
# a few steps and resumed, `uvit sample` with the preset's recipe (shifted Euler grid, all-channel
# guidance, cfg_star's zero first step) and --zero-init-steps, then a latent SVG preset sampled
# through the decoder: an official-layout network checkpoint (the twin's state_dict, .pth) and a
# DinoDecoder-style checkpoint with the features' dinov3_sp_stats.pt, against the twins.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
CFG=fmnist_svg_tiny

run "$UVIT" info --config svg_xl
grep -q "parameters    676437904 in 404 tensors" "$tmp/out" || fail "svg_xl table: $(cat "$tmp/out")"

train_resume $CFG svg
S=(--config "$tmp/run" --weights "$tmp/run/nnet_ema.safetensors" -q)
run "$UVIT" sample "${S[@]}" --n 4 --classes 0,7 --steps 6 --npy "$tmp/a.npy"
run "$UVIT" sample "${S[@]}" --n 4 --classes 0,7 --steps 6 --zero-init-steps 1 --npy "$tmp/b.npy"
run "$UVIT" sample "${S[@]}" --n 4 --classes 0,7 --steps 6 --zero-init-steps 0 --npy "$tmp/c.npy"
"$PY" - "$tmp" <<'PYEOF' || fail "samples"
import sys
import numpy as np
t = sys.argv[1]
a, b, c = (np.load("%s/%s.npy" % (t, n)) for n in "abc")
assert a.shape == (4, 28, 28, 1), a.shape
assert (a == b).all(), "the preset's zero_init_steps is 1"
assert (a != c).any(), "--zero-init-steps 0 changed nothing"
PYEOF
expect_error "config fmnist_svg_tiny sets sample.zero_init_steps 1 (cfg_star), which sampler dopri5 does not take: add --zero-init-steps 0" \
  "$UVIT" sample "${S[@]}" --n 1 --class 0 --sampler dopri5 --npy "$tmp/d.npy"
expect_error "zero-init steps 5 leave none of the 5 steps" \
  "$UVIT" sample "${S[@]}" --n 1 --class 0 --steps 6 --zero-init-steps 5 --npy "$tmp/d.npy"

# A latent SVG: 12-channel 4x4 features, the twin's network (official state_dict names, .pth) and
# its small decoder (z 12, f16) in a Lightning checkpoint beside DINOv3/loss tensors.
fx=$tmp/fx
run "$PY" tests/reference/autoencoder_torch.py svg-fixtures --out "$fx"
"$PY" - "$tmp" "$fx" <<'PYEOF' || fail "latent preset"
import json, sys
import torch
sys.path.insert(0, "tests/reference")
import svg_torch
t, fx = sys.argv[1:]
nnet = dict(name="svg", input_size=4, in_channels=12, hidden_size=64, depth=2, num_heads=4, num_classes=10)
torch.manual_seed(0)
net = svg_torch.build_from_config(nnet)
with torch.no_grad():
    for n, p in net.named_parameters():
        if n != "pos_embed":
            p.normal_(0, 0.05)
torch.save(net.state_dict(), t + "/svg.pth")
c = json.load(open("configs/svg_xl.json"))
c.update(name="svg_small", nnet=nnet, z_shape=[12, 4, 4])
c["autoencoder"] = {"config": fx + "/svg_decoder_small.json", "latent_stats": fx + "/svg_decoder_small_stats.pt"}
json.dump(c, open(t + "/svg_small.json", "w"))
PYEOF
run "$UVIT" sample --config "$tmp/svg_small.json" --weights "$tmp/svg.pth" \
  --autoencoder "$fx/svg_decoder_small.ckpt" --n 2 --classes 1,2 --steps 5 --npy "$tmp/img.npy" \
  --latents "$tmp/lat.npy"
grep -q "skipped 6 tensors outside the autoencoder: encoder.\* (2)" "$tmp/err" ||
  fail "no skipped-tensors line: $(cat "$tmp/err")"
"$PY" - "$tmp" "$fx" <<'PYEOF' || fail "decoded samples"
import sys
import numpy as np
import torch
sys.path.insert(0, "tests/reference")
import autoencoder_torch as at
t, fx = sys.argv[1:]
img, lat = np.load(t + "/img.npy"), np.load(t + "/lat.npy")
assert img.shape == (2, 64, 64, 3) and lat.shape == (2, 12, 4, 4), (img.shape, lat.shape)
# The latents are the sampler's normalised features: decode them as sample_svg.py does.
import json
dd = json.load(open(fx + "/svg_decoder_small.json"))["ddconfig"]
dec = at.SvgDecoder(dd)
sd = torch.load(fx + "/svg_decoder_small.ckpt")["state_dict"]
dec.load_state_dict({k: v for k, v in sd.items() if k.startswith("decoder.")})
st = torch.load(fx + "/svg_decoder_small_stats.pt")
m, s = (st["dinov3_sp_" + k][0, 0, :12].double().view(1, 12, 1, 1) for k in ("mean", "std"))
with torch.no_grad():
    x = dec.double().decode(torch.from_numpy(lat).double() * s + m)
want = np.clip(np.round((x.clamp(-1, 1).numpy() + 1) * 127.5), 0, 255).transpose(0, 2, 3, 1)
err = np.abs(img.astype(np.float64) - want).max()
assert err <= 1, err
print("ok: decoded samples match the twin to %g of 255" % err)
PYEOF
exit $fails
