#!/usr/bin/env bash
# Regressions from the ninth new-user audit (docs/ux_audit.md, "round 9"): each fix's check failed
# before it; the others keep what the audit found fine (an image folder as users bring one, through
# `uvit train`; npy_folder arrays of the wrong dtype; two trainings into one run folder).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# --- an image folder as users bring one (docs/data.md, "What an image folder may hold") ----------
# M: every kind of image a real folder holds, and what the walk skips with its warning; B: three
# good images, to which each test adds one bad file.
M=$tmp/messy B=$tmp/bad
"$PY" - "$M" "$B" <<'PYEOF' || fail "writing the images"
import os, struct, sys, zlib
import numpy as np
from PIL import Image
M, B = sys.argv[1], sys.argv[2]
rs = np.random.RandomState(0)
def img(w, h):
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rs.randint(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8))
d = M + "/cls_a"
os.makedirs(d)
img(40, 40).save(d + "/good_rgb.png")
img(40, 30).convert("CMYK").save(d + "/cmyk.jpg")
img(40, 40).save(d + "/progressive.jpg", progressive=True)
Image.fromarray((np.arange(1600).reshape(40, 40) * 40).astype(np.uint16), "I;16").save(d + "/gray16.png")
img(40, 40).convert("RGBA").quantize(16).save(d + "/palette.png", transparency=0)
img(40, 40).convert("L").save(d + "/gray.png")
img(1, 1).save(d + "/one_pixel.png")
img(40, 40).save(d + "/UPPER.JPG")
img(40, 40).save(d + "/upper.JPEG")
img(40, 40).save(d + "/UP.PNG")
img(40, 40).save(d + "/naïve name é.png")
os.symlink("good_rgb.png", d + "/link.png")
# 8000 x 8000, written directly (identical rows, zlib level 1): seconds less than PIL.
w = h = 8000
row = b"\0" + (np.arange(w * 3, dtype=np.uint32) * 7 % 251).astype(np.uint8).tobytes()
c = zlib.compressobj(1)
body = b"".join(c.compress(row) for _ in range(h)) + c.flush()
chunk = lambda t, x: struct.pack(">I", len(x)) + t + x + struct.pack(">I", zlib.crc32(t + x))
open(d + "/big.png", "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                                  + chunk(b"IDAT", body) + chunk(b"IEND", b""))
os.makedirs(M + "/nested/deeper")
img(40, 40).save(M + "/nested/deeper/deep.png")
os.makedirs(M + "/empty_class")
# Skipped, and named in the warning: hidden names, a format not read, a loop.
open(d + "/.DS_Store", "wb").write(b"\0\0\0\1Bud1" + bytes(100))
open(d + "/._good_rgb.png", "wb").write(b"\0\5\26\7\0\2\0\0Mac OS X        " + bytes(60))
os.makedirs(M + "/.thumbs")
img(8, 8).save(M + "/.thumbs/t.png")
img(40, 40).save(d + "/photo.webp")
os.symlink("..", d + "/loop")
# B, and the bad files the tests move in one at a time.
os.makedirs(B + "/ok")
for i in range(3):
    img(40, 40).save(f"{B}/ok/{i}.png")
img(40, 40).save(B + "/base.jpg", quality=90)
jpg = open(B + "/base.jpg", "rb").read()
open(B + "/cut.jpg", "wb").write(jpg[: len(jpg) // 2])
png = open(B + "/ok/0.png", "rb").read()
open(B + "/cut.png", "wb").write(png[: len(png) // 2])
img(40, 40).save(B + "/webp.png", format="WEBP")  # a WebP under a .png name
open(B + "/AppleDouble.png", "wb").write(b"\0\5\26\7\0\2\0\0Mac OS X        " + bytes(60))
# An ImageFolder layout (class = folder), which the imagenet dataset does not read as classes.
for i, cls in enumerate(["cat", "cat", "dog", "dog"]):
    os.makedirs(f"{B}/classes/{cls}", exist_ok=True)
    img(40, 40).save(f"{B}/classes/{cls}/IMG_{i:04d}.jpg")
# ImageNet's layout with a class folder nested deeper: read as before.
for f in ("n01/extra/n01_a.jpg", "n02/n02_b.jpg", "n02/n02_c.jpg"):
    os.makedirs(os.path.dirname(f"{B}/nested/{f}"), exist_ok=True)
    img(40, 40).save(f"{B}/nested/{f}")
PYEOF
# fmnist_uvit_tiny on an image folder (RGB, unconditional) and on ImageNet-style class prefixes.
"$PY" - "$tmp" <<'PYEOF' || fail "writing the configs"
import json, sys
c = json.load(open("configs/fmnist_uvit_tiny.json"))
c["nnet"].update(in_chans=3, num_classes=0)
c["train"]["mode"] = "uncond"
c["sample"].update(cfg=False, scale=0)
c["name"], c["dataset"] = "folder_uvit", {"name": "image_folder", "resolution": 28, "random_flip": False}
json.dump(c, open(sys.argv[1] + "/folder.json", "w"))
c["nnet"].update(num_classes=3)
c["train"]["mode"] = "cond"
c["sample"].update(cfg=True, scale=1)
c["name"], c["dataset"] = "classes_uvit", {"name": "imagenet", "resolution": 28, "cfg": True, "p_uncond": 0.1}
json.dump(c, open(sys.argv[1] + "/classes.json", "w"))
PYEOF
train_on() {  # train_on DIR [ARGS...]: one epoch of the folder config on DIR into a new run
  rm -rf "$tmp/fr"
  "$UVIT" train --config "$tmp/folder.json" --data "$1" --out "$tmp/fr" --no-grid -q --threads 2 \
    "${@:2}"
}
# Fourteen images (every kind above, the 8000x8000 one included) in two batches of 7: one epoch,
# so each is decoded; the skipped entries are named in one warning (the loop was a raw
# "filesystem error: Too many levels of symbolic links").
if train_on "$M" --steps 2 --batch 7 >"$tmp/out" 2>"$tmp/err"; then
  grep -q "uvit: warning: .*skipped hidden (a leading '.'): \.thumbs, cls_a/\._good_rgb\.png; a format not read here (it reads jpg, jpeg, png, gif): cls_a/photo\.webp; folders reached again through a symbolic link: cls_a/loop" "$tmp/err" \
    && echo "ok: the walk skips hidden names, .webp and the loop, saying so" || fail "walk warning: $(cat "$tmp/err")"
  grep -q "at step 2" "$tmp/out" && [ "$(grep -c . "$tmp/err")" -eq 1 ] \
    && echo "ok: 14 images of every kind train" || fail "messy folder: $(cat "$tmp/out" "$tmp/err")"
else
  fail "training on the messy folder: $(cat "$tmp/err")"
fi
"$PY" -c "import json, sys; r = [json.loads(l) for l in open(sys.argv[1])]; sys.exit(r[0]['event'] != 'start')" \
  "$tmp/fr/log.jsonl" 2>/dev/null || fail "messy folder: no run log"

# Each bad file in B's ok/ folder, named, before or when drawn (4 images: one batch of 4).
bad_file() {  # bad_file FILE NEEDLE: B/ok plus FILE (a copy, or the link it is) refused
  local name=$1 needle=$2
  cp -P "$B/$name" "$B/ok/$name" 2>/dev/null || true
  expect_error "$needle" train_on "$B/ok" --steps 1 --batch 4
  rm -f "$B/ok/$name"
}
ln -s missing.png "$B/dangling.png"
: >"$B/empty.png"
bad_file dangling.png "ok/dangling.png: a symbolic link to missing.png, which does not exist"
bad_file empty.png "ok/empty.png: an empty file (0 bytes): remove it or replace it"
bad_file cut.png "ok/cut.png: cannot decode image (Corrupt PNG); an image of image folder .*ok: remove or replace it"
# stb_image decoded a cut JPEG with grey rows and trained on it; PIL refuses it.
bad_file cut.jpg "ok/cut.jpg: truncated: a JPEG without its end marker in its [0-9]* bytes"
bad_file webp.png "ok/webp.png: a WebP image, which uvit cannot decode"
bad_file AppleDouble.png "ok/AppleDouble.png: a macOS AppleDouble file"
# A folder per class with other file names: the labels were 1 class ('IMG'), without a word.
rm -rf "$tmp/fr"
expect_error "classes/cat/IMG_0000.jpg: its class would be its name's prefix before the first '_' ('IMG'" \
  "$UVIT" train --config "$tmp/classes.json" --data "$B/classes" --out "$tmp/fr" --steps 1 --batch 2 -q --no-grid
[ ! -e "$tmp/fr" ] || fail "a refused data folder left a run folder"
run "$UVIT" train --config "$tmp/classes.json" --data "$B/nested" --out "$tmp/fr2" --steps 1 --batch 2 -q --no-grid
grep -q "at step 1" "$tmp/out" && echo "ok: ImageNet's layout nested deeper trains" || fail "nested: $(cat "$tmp/out")"

# --- npy_folder arrays of the wrong dtype or with NaN ----------------------------------------------
"$PY" - "$tmp" <<'PYEOF' || fail "writing the arrays"
import os, sys
import numpy as np
r = np.random.RandomState(0)
for kind in ("u8", "nan"):
    d = f"{sys.argv[1]}/npy_{kind}"
    os.makedirs(d)
    for i in range(4):
        a = r.randn(1, 28, 28).astype(np.float32)
        if kind == "u8":
            a = (r.rand(1, 28, 28) * 255).astype(np.uint8)
        if kind == "nan" and i == 2:
            a[0, 3, 3] = np.nan
        np.save(f"{d}/c{i % 2}_{i}.npy", a)
PYEOF
for kind in u8 nan; do
  rm -rf "$tmp/nr"
  # uint8 pixels trained as values 0..255; a NaN said "training diverged at step 1", no file.
  [ $kind = u8 ] && needle="npy_u8/c0_0.npy: a U8 array; items are used as stored, so they must be floats" \
                 || needle="npy_nan/c0_2.npy: holds nan at flat index 87; every value must be finite"
  expect_error "$needle" "$UVIT" train --config fmnist_fit_tiny --set dataset.name=npy_folder \
    --set dataset.path="$tmp/npy_$kind" --out "$tmp/nr" --steps 2 --batch 4 --no-grid -q --threads 2
done

# --- two trainings into one run folder ------------------------------------------------------------
# The second set the first's config.json and log.jsonl aside as a "failed start" and both wrote
# the same checkpoints. The first (one thread, a long run, no checkpoint before SIGTERM) holds the
# folder to its end; so does a --resume of it, against another --resume.
R=$tmp/two
long_run() {  # long_run ARGS...: a long training into R in the background ($pid), once it has started
  "$UVIT" train --out "$R" --steps 100000 --batch 2 --no-grid -q --threads 1 "$@" \
    >"$tmp/a.out" 2>"$tmp/a.err" &
  pid=$!
  for _ in $(seq 600); do
    [ "$(grep -c '"event":"start"' "$R/log.jsonl" 2>/dev/null)" = "$starts" ] && break; sleep 0.1
  done
}
stop_run() {  # stop_run: SIGTERM to $pid, which must end with 143 (its checkpoint written)
  kill -TERM $pid; wait $pid; local rc=$?; pid=
  [ $rc -eq 143 ] || fail "the long training: exit $rc after SIGTERM: $(cat "$tmp/a.err")"
}
starts=1 long_run --config fmnist_uvit_tiny --set train.save_interval=100000
expect_error "$R: another uvit train is writing this run now" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$R" --steps 1 --batch 2 --no-grid -q --threads 1
[ ! -e "$R/failed_start" ] || fail "the second training set the first's log aside"
stop_run
starts=2 long_run --resume
expect_error "$R: another uvit train is writing this run now" \
  "$UVIT" train --out "$R" --resume --steps 100001 --minutes 0.05 --no-grid -q --threads 1
stop_run
[ "$(grep -c '"event":"start"' "$R/log.jsonl")" -eq 2 ] || fail "starts in the log: $(cat "$R/log.jsonl")"
at=$("$PY" -c "import json, sys; print(max(json.loads(l).get('step', 0) for l in open(sys.argv[1])))" "$R/log.jsonl")
run "$UVIT" train --out "$R" --resume --steps $((at + 1)) --no-grid -q --threads 2
grep -q "at step $((at + 1))" "$tmp/out" && echo "ok: the run resumes once the others have ended" \
  || fail "resume after the others ended: $(cat "$tmp/out")"

exit $fails
