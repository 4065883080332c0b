#!/usr/bin/env bash
# The latent pipeline end to end with a small kl-f8 autoencoder (random weights, PyTorch twin):
# extract-features on generated ImageNet-style images (official layout, byte-identical records,
# moments equal to PIL crop + PyTorch encode, resumable), train an imagenet256 preset shrunk to a
# tiny width on those features, sample through the decoder; autoencoder encode/decode CLI; errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/autoencoder_torch.py
source tests/e2e/data/lib.sh

tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" $TWIN save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3

# Five images of odd sizes in two synsets (sorted: n01 -> label 0, n02 -> label 1).
"$PY" tests/e2e/data/image_folder.py "$tmp/images/train" n02_a:300x260 n01_b:256x256 \
  n01_c:520x700 n02_d:270x333 n01_e:640x512 || fails=$((fails+1))

feat=$tmp/feat
run "$UVIT" --threads 2 extract-features --data "$tmp/images" --weights "$tmp/ae.pth" \
  --config "$tmp/ae.json" --out "$feat" --batch 2  # not -q: its counts are read
n=$(ls "$feat" | wc -l)
[ "$n" -eq 10 ] || fail "expected 10 feature files, found $n"
grep -q "0 already done" "$tmp/err" || fail "first extraction: $(cat "$tmp/err")"

# Resume: delete two files (an original and a flip); only their image is encoded again and the
# rewritten files are identical.
cp "$feat/3.npy" "$tmp/3.before"; cp "$feat/9.npy" "$tmp/9.before"
rm "$feat/3.npy" "$feat/9.npy"
run "$UVIT" --threads 2 extract-features --data "$tmp/images" --weights "$tmp/ae.pth" \
  --config "$tmp/ae.json" --out "$feat" --batch 2  # not -q: its counts are read
grep -q "(3 already done)" "$tmp/err" || fail "resume did not skip finished images: $(cat "$tmp/err")"
grep -q "encoded 2 images" "$tmp/err" || fail "resume re-encoded the wrong count: $(cat "$tmp/err")"
cmp -s "$feat/3.npy" "$tmp/3.before" || fail "3.npy differs after resume"
cmp -s "$feat/9.npy" "$tmp/9.before" || fail "9.npy differs after resume"
ls "$feat" | grep -q tmp && fail "temporary files left in $feat"

# The official layout and values: file j < 5 = image j (sorted walk), 5 + j its flip; labels by
# sorted synset; each file byte-identical to numpy's np.save of (moments, np.int64 label); the
# moments equal the official preprocessing (PIL center_crop_arr) + the PyTorch encode_moments.
"$PY" - "$tmp" "$TWIN" <<'PYEOF' || fails=$((fails+1))
import io, os, sys
import numpy as np
import torch
from PIL import Image
tmp, twin = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(twin))
import autoencoder_torch as at

def center_crop_arr(pil_image, image_size):  # guided-diffusion, as SPEC 15.3
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC)
    arr = np.array(pil_image)
    cy = (arr.shape[0] - image_size) // 2
    cx = (arr.shape[1] - image_size) // 2
    return arr[cy:cy + image_size, cx:cx + image_size]

files = []
for d in sorted(os.listdir(os.path.join(tmp, "images/train"))):
    for f in sorted(os.listdir(os.path.join(tmp, "images/train", d))):
        files.append(os.path.join(tmp, "images/train", d, f))
labels = [0 if os.path.basename(f).startswith("n01") else 1 for f in files]
x = np.stack([center_crop_arr(Image.open(f).convert("RGB"), 256) for f in files])
x = torch.from_numpy(x.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)
x = torch.cat([x, x.flip(dims=[-1])])
c = at.load_cfg(os.path.join(tmp, "ae.json"))
m = at.FrozenAutoencoderKL(c["ddconfig"], c["embed_dim"])
m.load_state_dict(torch.load(os.path.join(tmp, "ae.pth")))
with torch.no_grad():
    ref = m.eval().double().encode_moments(x.double()).float().numpy()
bad = 0
n = len(files)
for i in range(2 * n):
    path = os.path.join(tmp, "feat", "%d.npy" % i)
    mom, lb = np.load(path, allow_pickle=True)
    if type(lb) is not np.int64 or int(lb) != labels[i % n]:
        print("FAIL: %s: label %r, want np.int64(%d)" % (path, lb, labels[i % n])); bad += 1
    if mom.dtype != np.float32 or mom.shape != (8, 32, 32):
        print("FAIL: %s: moments %s %s" % (path, mom.dtype, mom.shape)); bad += 1; continue
    err = np.abs(mom - ref[i]).max() / np.abs(ref[i]).max()
    if not err <= 1e-4:
        print("FAIL: %s: moments differ from PIL crop + PyTorch encode: rel err %.2e" % (path, err)); bad += 1
    a = np.empty(2, dtype=object); a[0] = mom; a[1] = lb
    buf = io.BytesIO(); np.save(buf, a)
    if buf.getvalue() != open(path, "rb").read():
        print("FAIL: %s is not byte-identical to numpy's np.save((moments, label))" % path); bad += 1
if not bad:
    print("ok: %d feature files: official layout, labels, byte-identical, moments match PyTorch" % (2 * n))
sys.exit(1 if bad else 0)
PYEOF

# `uvit autoencoder encode|decode` against the twin (float64 reference).
"$PY" -c "
import numpy as np
rs = np.random.RandomState(1)
np.save('$tmp/img.npy', rs.uniform(-1, 1, (2, 3, 64, 48)).astype(np.float32))
np.save('$tmp/z.npy', rs.randn(3, 4, 5, 7).astype(np.float32))"
run "$UVIT" --threads 2 autoencoder encode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/img.npy" --out "$tmp/mom.npy" -q --batch 1
run "$UVIT" --threads 2 autoencoder decode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/z.npy" --out "$tmp/dec.npy" -q --batch 2
run "$PY" $TWIN run encode --config "$tmp/ae.json" --weights "$tmp/ae.pth" --in "$tmp/img.npy" --out "$tmp/mom_ref.npy"
run "$PY" $TWIN run decode --config "$tmp/ae.json" --weights "$tmp/ae.pth" --in "$tmp/z.npy" --out "$tmp/dec_ref.npy"
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import sys
import numpy as np
t = sys.argv[1]
bad = 0
for a, b, shape in [("mom", "mom_ref", (2, 8, 8, 6)), ("dec", "dec_ref", (3, 3, 40, 56))]:
    x, y = np.load("%s/%s.npy" % (t, a)), np.load("%s/%s.npy" % (t, b))
    err = np.abs(x - y).max() / np.abs(y).max()
    if x.shape != shape or not err <= 1e-5:
        print("FAIL: autoencoder %s: shape %s (want %s), rel err %.2e" % (a, x.shape, shape, err)); bad += 1
    else:
        print("ok: autoencoder %s matches PyTorch, rel err %.2e" % (a, err))
sys.exit(bad)
PYEOF

# Train an imagenet256 preset, shrunk to a tiny width, on the extracted features.
run "$UVIT" --threads 2 train --config imagenet256_uvit_large --data "$feat" --out "$tmp/run" \
  --steps 3 --batch 4 --set nnet.embed_dim=32 --set nnet.depth=2 --set nnet.num_heads=2 \
  --set nnet.use_checkpoint=false --set train.log_interval=1 --set sample.sample_steps=2 -q
[ -f "$tmp/run/nnet_ema.safetensors" ] || fail "training wrote no nnet_ema.safetensors"
grep -q '"step": *3' "$tmp/run/log.jsonl" 2>/dev/null || fail "no step-3 entry in log.jsonl"

# Sample through the decoder: PNGs, a uint8 .npy and the latents; the images equal the twin's
# decode of those latents after the official unpreprocess + save_image quantisation.
run "$UVIT" --threads 2 sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" \
  --autoencoder "$tmp/ae.pth" --autoencoder-config "$tmp/ae.json" --n 2 --class 1 --steps 3 --npy "$tmp/s.npy" --latents "$tmp/lat.npy" \
  --dir "$tmp/png" -q
[ -f "$tmp/png/000001.png" ] || fail "sample --dir wrote no 000001.png"
"$PY" - "$tmp" "$TWIN" <<'PYEOF' || fails=$((fails+1))
import os, sys
import numpy as np
import torch
from PIL import Image
tmp, twin = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.dirname(twin))
import autoencoder_torch as at
c = at.load_cfg(os.path.join(tmp, "ae.json"))
m = at.FrozenAutoencoderKL(c["ddconfig"], c["embed_dim"])
m.load_state_dict(torch.load(os.path.join(tmp, "ae.pth")))
z = torch.from_numpy(np.load(os.path.join(tmp, "lat.npy")))
with torch.no_grad():
    x = m.eval().double().decode(z.double()).float()
# unpreprocess then torchvision save_image: clamp(0.5(x+1), 0, 1) * 255 + 0.5, clamped, truncated.
u = torch.clamp(0.5 * (x + 1), 0, 1).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)
ref = u.permute(0, 2, 3, 1).numpy()
got = np.load(os.path.join(tmp, "s.npy"))
bad = 0
if got.shape != (2, 256, 256, 3) or got.dtype != np.uint8:
    print("FAIL: sample npy", got.shape, got.dtype); sys.exit(1)
d = np.abs(got.astype(int) - ref.astype(int))
if d.max() > 1 or (d > 0).mean() > 1e-3:
    print("FAIL: decoded samples differ from the PyTorch decode: max %d, %.4f%% of values" % (d.max(), 100 * (d > 0).mean())); bad += 1
png = np.array(Image.open(os.path.join(tmp, "png", "000001.png")))
if not (png == got[1]).all():
    print("FAIL: png/000001.png differs from the .npy sample"); bad += 1
if got.std() < 1:
    print("FAIL: decoded samples are flat"); bad += 1
if not bad:
    print("ok: 2 samples decoded to 256x256, equal to the PyTorch decode (max |diff| %d)" % d.max())
sys.exit(bad)
PYEOF

# --preview on a latent model: A1111's "Approximate cheap" map of x0 at latent resolution; with
# DDIM the last x0 is the sample, so the preview is the map of the sampled latents (docs/samplers.md).
run "$UVIT" --threads 2 sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" \
  --autoencoder "$tmp/ae.pth" --autoencoder-config "$tmp/ae.json" --n 1 --class 1 --sampler ddim --steps 3 \
  --npy "$tmp/sd.npy" --latents "$tmp/lat_d.npy" --preview "$tmp/pv.png" -q
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import os, sys
import numpy as np
from PIL import Image
tmp = sys.argv[1]
z = np.load(os.path.join(tmp, "lat_d.npy"))[0].astype(np.float64)  # [4, 32, 32], scale 0.18215
f = np.array([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
              [-0.184, -0.271, -0.473]])
rgb = np.einsum("lhw,lr->hwr", z, f)
ref = np.floor(np.clip(0.5 * (rgb + 1), 0, 1) * 255 + 0.5).astype(int)
got = np.array(Image.open(os.path.join(tmp, "pv.png"))).astype(int)
d = np.abs(got - ref)
if got.shape != (32, 32, 3) or d.max() > 1:
    print("FAIL: latent preview", got.shape, "max |diff|", d.max() if got.shape == ref.shape else "-"); sys.exit(1)
print("ok: latent preview 32x32 RGB = the cheap map of the sampled latents (max |diff| %d)" % d.max())
PYEOF

# Bad inputs: one line each.
"$PY" -c "
import torch
sd = torch.load('$tmp/ae.pth'); del sd['decoder.conv_in.bias']; torch.save(sd, '$tmp/ae_missing.pth')
import numpy as np; np.save('$tmp/z3.npy', np.zeros((4, 5, 6), np.float32))"
expect_error "missing 1 of" "$UVIT" autoencoder decode -c "$tmp/ae.json" -w "$tmp/ae_missing.pth" --in "$tmp/z.npy" --out "$tmp/x.npy"
expect_error "decoder.conv_in.bias" "$UVIT" autoencoder decode -c "$tmp/ae.json" -w "$tmp/ae_missing.pth" --in "$tmp/z.npy" --out "$tmp/x.npy"
expect_error "has shape" "$UVIT" autoencoder decode -w "$tmp/ae.pth" --in "$tmp/z.npy" --out "$tmp/x.npy"
expect_error "expected latents" "$UVIT" autoencoder decode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/z3.npy" --out "$tmp/x.npy"
expect_error "latents have shape" "$UVIT" autoencoder decode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/img.npy" --out "$tmp/x.npy"
expect_error "multiples of 8" "$UVIT" autoencoder encode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/z.npy" --out "$tmp/x.npy"
expect_error "give --autoencoder" "$UVIT" sample --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" --n 1 --class 0 --npy "$tmp/x.npy"
expect_error "no images found" "$UVIT" extract-features --data "$tmp/feat" --weights "$tmp/ae.pth" -c "$tmp/ae.json" --out "$tmp/f2"
echo '{"ddconfig": {"ch": 30}}' >"$tmp/bad.json"
expect_error "multiple of 32" "$UVIT" autoencoder decode -c "$tmp/bad.json" -w "$tmp/ae.pth" --in "$tmp/z.npy" --out "$tmp/x.npy"

[ $fails -eq 0 ] && echo "latent_pipeline: all passed"
# `uvit eval` on the latent preset: samples are decoded through the autoencoder before the FID
# Inception (random twin weights), so the saved samples are 256x256 RGB.
inception_weights IW
"$PY" -c "import numpy as np; r = np.random.RandomState(0); x = r.randn(50, 2048)
np.savez('$tmp/ref.npz', mu=x.mean(0), sigma=np.cov(x, rowvar=False))" || fail "reference stats"
run "$UVIT" --threads 2 eval --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" \
  --autoencoder "$tmp/ae.pth" --autoencoder-config "$tmp/ae.json" --n 3 --steps 2 --ref "$tmp/ref.npz" \
  --inception "$IW" --out "$tmp/ev.npz" -q
grep -q '^FID: ' "$tmp/out" || fail "latent eval printed no FID: $(cat "$tmp/out")"
"$PY" -c "import numpy as np; a = np.load('$tmp/ev.npz')['arr_0']
assert a.shape == (3, 256, 256, 3) and a.dtype == np.uint8, a.shape" || fail "latent eval samples"
expect_error "give --autoencoder" "$UVIT" eval --config "$tmp/run/config.json" --weights "$tmp/run/nnet_ema.safetensors" --ref "$tmp/ref.npz"

exit $fails
