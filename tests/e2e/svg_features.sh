#!/usr/bin/env bash
# SVG's encoder end to end with a tiny config (DINOv3 D 32 + residual ViT D 32 -> 40 channels; random
# weights from the twin in the SVG checkpoint layout): extract-features --encoder svg on three
# images (+ flips) against the PyTorch twin, the DINOv3 weights from the checkpoint and from their
# own file, resume, a few training steps on the features read as-is (dataset.feature_kind
# deterministic); errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/svg_encoder_torch.py
source tests/e2e/data/lib.sh
fx=$tmp/fx
run "$PY" $TWIN weights --out "$fx"
SVG=(--encoder svg --svg-config "$fx/svg_tiny.json" --weights "$fx/svg_tiny.safetensors")

# Three 256x256 images in two synsets (the center crop is then the identity).
"$PY" - "$tmp/images/train" <<'PYEOF' || fails=$((fails+1))
import os, sys
import numpy as np
from PIL import Image
rs = np.random.RandomState(3)
for name in ["n01_a", "n02_b", "n01_c"]:
    d = os.path.join(sys.argv[1], name.split("_")[0])
    os.makedirs(d, exist_ok=True)
    yy, xx = np.mgrid[0:256, 0:256]
    base = np.stack([xx, yy, (xx + yy) / 2], -1) + rs.randint(-60, 60, (256, 256, 3))
    Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(os.path.join(d, name + ".png"))
PYEOF

run "$UVIT" --threads 2 extract-features --data "$tmp/images" "${SVG[@]}" --out "$tmp/feat" --batch 2 -q
run "$UVIT" --threads 2 extract-features --data "$tmp/images" "${SVG[@]}" --out "$tmp/feat2" \
  --dinov3-weights "$fx/svg_tiny_dinov3.safetensors" --batch 3 -q
# Images in sorted order (n01_a, n01_c, n02_b): files 0..2, their flips 3..5; per-image statistics.
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import sys
import numpy as np
from PIL import Image
t = sys.argv[1]
names = [("n01", "n01_a", 0), ("n01", "n01_c", 0), ("n02", "n02_b", 1)]
x = np.stack([np.asarray(Image.open("%s/images/train/%s/%s.png" % (t, d, n))).transpose(2, 0, 1)
              for d, n, _ in names]).astype(np.float32) / 127.5 - 1
np.save(t + "/x.npy", np.concatenate([x, x[:, :, :, ::-1]]).astype(np.float32))
PYEOF
mkdir -p "$tmp/fx_ref"; run "$PY" $TWIN encode --dir "$tmp/fx_ref" --images "$tmp/x.npy" --out "$tmp/ref.npy"
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import sys
import numpy as np
t = sys.argv[1]
ref = np.load(t + "/ref.npy")
labels = [0, 0, 1] * 2
bad = 0
for i in range(6):
    z, y = np.load("%s/feat/%d.npy" % (t, i), allow_pickle=True)
    z2, y2 = np.load("%s/feat2/%d.npy" % (t, i), allow_pickle=True)
    err = np.abs(z - ref[i]).max() / np.abs(ref[i]).max()
    if z.shape != (40, 16, 16) or int(y) != labels[i] or not err <= 1e-5:
        print("FAIL: file %d: shape %s label %s rel err %.2e" % (i, z.shape, y, err)); bad += 1
    if np.abs(z2 - z).max() > 1e-6 * np.abs(z).max() or int(y2) != int(y):
        print("FAIL: file %d differs with --dinov3-weights and --batch 3" % i); bad += 1
if not bad:
    print("ok: 6 SVG feature files [40,16,16] match the twin (per-image statistics)")
sys.exit(bad)
PYEOF

# Resume: only the missing file is written again, identical.
cp "$tmp/feat/4.npy" "$tmp/4.before"
rm "$tmp/feat/4.npy"
touch -d "2000-01-01" "$tmp/feat/0.npy"
run "$UVIT" --threads 2 extract-features --data "$tmp/images" "${SVG[@]}" --out "$tmp/feat" -q
cmp -s "$tmp/feat/4.npy" "$tmp/4.before" || fail "resumed file 4 differs"
[ "$(date -r "$tmp/feat/0.npy" +%Y)" = 2000 ] || fail "resume rewrote a finished file"

# Train a shrunk U-ViT on the features as they are (no posterior sampling, no scale factor).
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import json, sys
t = sys.argv[1]
c = json.load(open("configs/imagenet256_uvit_large.json"))
c["name"] = "svg_tiny_uvit"
c["z_shape"] = [40, 16, 16]
c["autoencoder"] = {}
c["dataset"]["feature_kind"] = "deterministic"
c["nnet"].update(img_size=16, in_chans=40, embed_dim=32, depth=2, num_heads=2, use_checkpoint=False)
c["train"].update(log_interval=1)
json.dump(c, open(t + "/preset.json", "w"), indent=1)
PYEOF
run "$UVIT" --threads 2 train --config "$tmp/preset.json" --data "$tmp/feat" --out "$tmp/run" \
  --steps 2 --batch 4 --no-grid -q
[ -f "$tmp/run/nnet_ema.safetensors" ] || fail "training on SVG features wrote no checkpoint"

expect_error "apply to the autoencoders only" "$UVIT" extract-features --data "$tmp/images" \
  "${SVG[@]}" --out "$tmp/f3" --latent-stats "$tmp/none.safetensors"
expect_error "need --encoder svg" "$UVIT" extract-features --data "$tmp/images" \
  --weights "$fx/svg_tiny.safetensors" --out "$tmp/f3" --dinov3-weights "$fx/svg_tiny_dinov3.safetensors"
expect_error "differs from the encoder's image size 256" "$UVIT" extract-features \
  --data "$tmp/images" "${SVG[@]}" --out "$tmp/f3" --resolution 512
expect_error "no extra_vit" "$UVIT" extract-features --data "$tmp/images" --encoder svg \
  --svg-config "$fx/svg_tiny.json" --weights "$fx/svg_tiny_dinov3.safetensors" --out "$tmp/f3"
expect_error "feature_kind" "$UVIT" train --config "$tmp/preset.json" --data "$tmp/feat" \
  --out "$tmp/run2" --steps 1 --set dataset.feature_kind=sampled

[ $fails -eq 0 ] && echo "svg_features: all passed"
exit $fails
