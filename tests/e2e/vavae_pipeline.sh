#!/usr/bin/env bash
# The VA-VAE path end to end with a small member of the f16d32 family (5 levels, attention at a
# middle level, z 8; random weights in a Lightning-style checkpoint with loss/DINOv2 tensors, the
# PyTorch twin as reference): autoencoder encode/decode with latent stats, extract-features with
# --write-latent-stats and --latent-stats (normalised moments), train a shrunk latent preset on
# them, sample through the decoder with the preset's autoencoder.config/latent_stats; errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/autoencoder_torch.py
source tests/e2e/data/lib.sh
fx=$tmp/fx
run "$PY" $TWIN vavae-fixtures --out "$fx"
AE=(-c "$fx/vavae_small.json" -w "$fx/vavae_small.pt")
skipped="skipped 6 tensors outside the autoencoder: foundation_model.\* (2), linear_proj.\* (1), loss.\* (3)"

# encode / decode (with the official latents_stats.pt layout) against the twin.
run "$UVIT" --threads 2 autoencoder encode "${AE[@]}" --in "$fx/vavae_small_images.npy" --out "$tmp/mom.npy"
grep -q "vavae_small.pt: $skipped" "$tmp/err" || fail "no skipped-tensors line: $(cat "$tmp/err")"
run "$UVIT" --threads 2 autoencoder decode "${AE[@]}" --latent-stats "$fx/vavae_small_stats.pt" \
  --in "$fx/vavae_small_z.npy" --out "$tmp/dec.npy" -q
"$PY" - "$tmp" "$fx" <<'PYEOF' || fails=$((fails+1))
import sys
import numpy as np
t, fx = sys.argv[1:]
bad = 0
for a, b, shape in [("mom", "moments", (2, 16, 4, 6)), ("dec", "decoded", (2, 3, 64, 96))]:
    x, y = np.load("%s/%s.npy" % (t, a)), np.load("%s/vavae_small_%s.npy" % (fx, b))
    err = np.abs(x - y).max() / np.abs(y).max()
    if x.shape != shape or not err <= 1e-5:
        print("FAIL: vavae %s: shape %s (want %s), rel err %.2e" % (a, x.shape, shape, err)); bad += 1
    else:
        print("ok: vavae %s matches PyTorch, rel err %.2e" % (a, err))
sys.exit(bad)
PYEOF

# Three images in two synsets.
"$PY" tests/e2e/data/image_folder.py "$tmp/images/train" n01_a:300x260 n02_b:256x256 \
  n01_c:270x333 || fails=$((fails+1))

# Raw moments, then statistics + normalised moments in one run; the normalisation is exact.
run "$UVIT" --threads 2 extract-features --data "$tmp/images" "${AE[@]}" --out "$tmp/raw" -q
run "$UVIT" --threads 2 extract-features --data "$tmp/images" "${AE[@]}" --out "$tmp/feat" \
  --write-latent-stats "$tmp/stats.safetensors" -q
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import json, os, struct, sys
import numpy as np
t = sys.argv[1]
raw = open(os.path.join(t, "stats.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
def tensor(k):
    a, b = head[k]["data_offsets"]
    assert head[k]["dtype"] == "F32" and head[k]["shape"] == [1, 8, 1, 1], head[k]
    return np.frombuffer(raw[8 + n + a:8 + n + b], np.float32)
mean, std = tensor("mean"), tensor("std")
bad = 0
if not (np.isfinite(mean).all() and (std > 0).all()):
    print("FAIL: stats", mean, std); bad += 1
for i in range(6):
    m0, l0 = np.load(os.path.join(t, "raw", "%d.npy" % i), allow_pickle=True)
    m1, l1 = np.load(os.path.join(t, "feat", "%d.npy" % i), allow_pickle=True)
    if m0.shape != (16, 16, 16) or l0 != l1:
        print("FAIL: %d.npy: moments %s, labels %s %s" % (i, m0.shape, l0, l1)); bad += 1; continue
    want_mean = (m0[:8] - mean[:, None, None]) / std[:, None, None]
    want_logvar = m0[8:] - 2 * np.log(std)[:, None, None]
    err = max(np.abs(m1[:8] - want_mean).max() / np.abs(want_mean).max(),
              np.abs(m1[8:] - want_logvar).max() / np.abs(want_logvar).max())
    if not err <= 1e-5:
        print("FAIL: %d.npy is not the normalised moments: rel err %.2e" % (i, err)); bad += 1
if not bad:
    print("ok: 6 feature files [16,16,16], normalised by the written stats [1,8,1,1]")
sys.exit(bad)
PYEOF
# Resume keeps the written statistics (a rerun may not renormalise with new ones).
cp "$tmp/feat/4.npy" "$tmp/4.before"; cp "$tmp/stats.safetensors" "$tmp/stats.before"; rm "$tmp/feat/4.npy"
run "$UVIT" --threads 2 extract-features --data "$tmp/images" "${AE[@]}" --out "$tmp/feat" \
  --write-latent-stats "$tmp/stats.safetensors" -q
cmp -s "$tmp/feat/4.npy" "$tmp/4.before" || fail "4.npy differs after resume"
cmp -s "$tmp/stats.safetensors" "$tmp/stats.before" || fail "stats rewritten on resume"

# A latent preset for these features: an imagenet256 U-ViT shrunk to z [8,16,16]; its autoencoder
# section names the config and the statistics (no scale_factor: the config's 1.0).
"$PY" - "$tmp" "$fx" <<'PYEOF' || fails=$((fails+1))
import json, sys
t, fx = sys.argv[1:]
c = json.load(open("configs/imagenet256_uvit_large.json"))
c["name"] = "vavae_small_uvit"
c["z_shape"] = [8, 16, 16]
c["autoencoder"] = {"config": fx + "/vavae_small.json", "latent_stats": t + "/stats.safetensors"}
c["nnet"].update(img_size=16, in_chans=8, embed_dim=32, depth=2, num_heads=2, use_checkpoint=False)
c["train"].update(log_interval=1)
c["sample"].update(sample_steps=2)
json.dump(c, open(t + "/preset.json", "w"), indent=1)
c["z_shape"] = [32, 16, 16]  # VA-VAE f16d32 latents, and no autoencoder config named
c["nnet"]["in_chans"] = 32
c["autoencoder"] = {}
json.dump(c, open(t + "/preset32.json", "w"), indent=1)
PYEOF
run "$UVIT" --threads 2 train --config "$tmp/preset.json" --data "$tmp/feat" --out "$tmp/run" \
  --steps 2 --batch 4 -q
[ -f "$tmp/run/nnet_ema.safetensors" ] || fail "training wrote no nnet_ema.safetensors"

# Sample: the preset's config and stats, and the same given on the command line, decode alike;
# the images equal the twin's decode of z * std + mean after the official quantisation.
run "$UVIT" --threads 2 sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" \
  --autoencoder "$fx/vavae_small.pt" --n 2 --class 1 --steps 2 --npy "$tmp/s.npy" --latents "$tmp/lat.npy"
grep -q "$skipped" "$tmp/err" || fail "sample printed no skipped-tensors line: $(cat "$tmp/err")"
run "$UVIT" --threads 2 sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" \
  --autoencoder "$fx/vavae_small.pt" --autoencoder-config "$fx/vavae_small.json" \
  --latent-stats "$tmp/stats.safetensors" --set autoencoder.latent_stats=none.pt \
  --n 2 --class 1 --steps 2 --npy "$tmp/s2.npy" -q
cmp -s "$tmp/s.npy" "$tmp/s2.npy" || fail "--autoencoder-config/--latent-stats decode differently from the preset's"
"$PY" - "$tmp" "$fx" "$TWIN" <<'PYEOF' || fails=$((fails+1))
import json, os, struct, sys
import numpy as np
import torch
t, fx, twin = sys.argv[1:]
sys.path.insert(0, os.path.dirname(twin))
import autoencoder_torch as at
raw = open(os.path.join(t, "stats.safetensors"), "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
st = {k: torch.from_numpy(np.frombuffer(raw[8 + n + head[k]["data_offsets"][0]:8 + n + head[k]["data_offsets"][1]],
                                        np.float32).reshape(1, 8, 1, 1).copy()) for k in ("mean", "std")}
c = at.load_cfg(os.path.join(fx, "vavae_small.json"))
m = at.FrozenAutoencoderKL(c["ddconfig"], c["embed_dim"], c["scale_factor"])
m.load_state_dict({k: v for k, v in torch.load(os.path.join(fx, "vavae_small.pt"))["state_dict"].items()
                   if k.split(".")[0] in ("encoder", "decoder", "quant_conv", "post_quant_conv")})
z = torch.from_numpy(np.load(os.path.join(t, "lat.npy")))
with torch.no_grad():
    x = m.eval().double().decode(z.double() * st["std"].double() + st["mean"].double()).float()
ref = torch.clamp(0.5 * (x + 1), 0, 1).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
got = np.load(os.path.join(t, "s.npy"))
if got.shape != (2, 256, 256, 3):
    print("FAIL: sample npy", got.shape); sys.exit(1)
d = np.abs(got.astype(int) - ref.astype(int))
if d.max() > 1 or (d > 0).mean() > 1e-3 or got.std() < 1:
    print("FAIL: samples differ from the twin's decode of z*std+mean: max %d, %.4f%%" % (d.max(), 100 * (d > 0).mean()))
    sys.exit(1)
print("ok: 2 samples decoded to 256x256 through z * std + mean, equal to PyTorch (max |diff| %d)" % d.max())
PYEOF

# Bad inputs: one line each.
"$PY" -c "
import torch, numpy as np
torch.save({'mean': torch.zeros(1, 4, 1, 1), 'std': torch.ones(1, 4, 1, 1)}, '$tmp/stats4.pt')
np.save('$tmp/z4.npy', np.zeros((1, 4, 2, 2), np.float32))"
expect_error "unknown autoencoder config 'vavae_f99'" "$UVIT" autoencoder decode -c vavae_f99 -w "$fx/vavae_small.pt" --in "$tmp/z4.npy" --out "$tmp/x.npy"
expect_error "expected \[1, 8, 1, 1\]" "$UVIT" autoencoder decode "${AE[@]}" --latent-stats "$tmp/stats4.pt" --in "$fx/vavae_small_z.npy" --out "$tmp/x.npy"
expect_error "expected \[B, 8, h, w\]" "$UVIT" autoencoder decode "${AE[@]}" --in "$tmp/z4.npy" --out "$tmp/x.npy" -q
expect_error "expected \[1, 8, 1, 1\]" "$UVIT" sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" --autoencoder "$fx/vavae_small.pt" --latent-stats "$tmp/stats4.pt" --n 1 --class 0 --npy "$tmp/x.npy"
expect_error "expected \[1, 8, 1, 1\]" "$UVIT" eval --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" --autoencoder "$fx/vavae_small.pt" --latent-stats "$tmp/stats4.pt" --ref "$tmp/none.npz"
expect_error "has embed_dim 4 (give --autoencoder-config vavae_f16d32)" "$UVIT" sample --config "$tmp/preset32.json" --weights "$tmp/run/nnet_ema.safetensors" --autoencoder "$fx/vavae_small.pt" --n 1 --class 0 --npy "$tmp/x.npy"
expect_error "8 latent channels) has no cheap latent-to-RGB map" "$UVIT" sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" --autoencoder "$fx/vavae_small.pt" --n 1 --class 0 --npy "$tmp/x.npy" --preview "$tmp/p.png" -q
[ ! -e "$tmp/p.png" ] || fail "--preview on a VA-VAE model wrote a preview"
expect_error "not both" "$UVIT" extract-features --data "$tmp/images" "${AE[@]}" --out "$tmp/f3" --latent-stats "$tmp/stats.safetensors" --write-latent-stats "$tmp/s3.safetensors"
expect_error "is missing: their normalisation is unknown" "$UVIT" extract-features --data "$tmp/images" "${AE[@]}" --out "$tmp/raw" --write-latent-stats "$tmp/s3.safetensors" -q

[ $fails -eq 0 ] && echo "vavae_pipeline: all passed"
exit $fails
