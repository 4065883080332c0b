#!/usr/bin/env bash
# `uvit fid`, `fid-features`, `fid-stats`, `eval`: features of folders and .npy samples agree with
# the PyTorch twin (random Inception weights), statistics files are numpy/pytorch-fid readable,
# two statistics files need no network and give pytorch-fid's (scipy) value, sFID features and
# mu_s/sigma_s match the twin, `eval` samples, scores (the ADM evaluator's lines, an ADM reference
# batch's arr_0 for precision/recall) and resumes, its samples batch reads as the evaluator reads
# it, and bad requests give one-line errors.
set -uo pipefail
UVIT=$1 FIX=${2:-}
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_INCEPTION

inception_weights W "$FIX"

# --- two statistics files: no network; equals pytorch-fid's formula with scipy's sqrtm ---------
cat >"$tmp/stats.py" <<'PYEOF'
import sys, numpy as np, scipy.linalg
r = np.random.RandomState(1)
a = r.randn(40, 64); b = r.randn(30, 64) * 1.2 + 0.1   # rank-deficient 64-d covariances
for name, x in (("s1", a), ("s2", b)):
    np.savez(sys.argv[1] + "/" + name + ".npz", mu=x.mean(0), sigma=np.cov(x, rowvar=False))
m1, s1, m2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
c, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
if not np.isfinite(c).all():
    e = np.eye(64) * 1e-6; c = scipy.linalg.sqrtm((s1 + e).dot(s2 + e))
d = m1 - m2
print(repr(float(d.dot(d) + np.trace(s1) + np.trace(s2) - 2 * np.trace(c.real))))
PYEOF
want=$("$PY" "$tmp/stats.py" "$tmp")
run "$UVIT" fid "$tmp/s1.npz" "$tmp/s2.npz"
got=$(sed -n 's/^FID: //p' "$tmp/out")
"$PY" -c "import sys; g, w = float('$got'), float('$want'); sys.exit(abs(g - w) > 1e-6 * abs(w))" \
  && echo "ok: fid of two stats files $got (scipy $want)" || fail "fid stats: $got vs scipy $want"

# --- features: folder of PNGs == .npy samples == the twin -----------------------------------------
cat >"$tmp/imgs.py" <<'PYEOF'
import sys, zlib, struct, numpy as np
out = sys.argv[1]
r = np.random.RandomState(3)
imgs = r.randint(0, 256, (5, 24, 20, 3)).astype(np.uint8)
np.save(out + "/imgs.npy", imgs)
def png(path, a):
    h, w, _ = a.shape
    raw = b"".join(b"\0" + a[i].tobytes() for i in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
import os
os.makedirs(out + "/dir", exist_ok=True)
for i, a in enumerate(imgs):
    png(f"{out}/dir/img{i:02d}.png", a)
open(out + "/dir/readme.txt", "w").write("not an image")
PYEOF
"$PY" "$tmp/imgs.py" "$tmp"
run "$UVIT" fid-features "$tmp/dir" --inception "$W" --out "$tmp/fdir.npy" --logits "$tmp/ldir.npy" -q
UVIT_INCEPTION=$W run "$UVIT" fid-features "$tmp/imgs.npy" --out "$tmp/fnpy.npy" -q
cat >"$tmp/twin.py" <<'PYEOF'
import sys, numpy as np, torch
sys.path.insert(0, "tests/reference")
import inception_torch as it
t, W = sys.argv[1], sys.argv[2]
m = it.build().double(); m.load_state_dict(torch.load(W)); m.eval()
x = np.load(t + "/imgs.npy")
with torch.no_grad():
    ref = it.pool3(m, it.to01(x).double())
    logits = ref @ m.fc.weight.T
a, b, l = np.load(t + "/fdir.npy"), np.load(t + "/fnpy.npy"), np.load(t + "/ldir.npy")
assert a.dtype == np.float32 and a.shape == (5, 2048), (a.dtype, a.shape)
assert (a == b).all(), "folder and .npy features differ"
rel = float(np.abs(a - ref.numpy()).max() / np.abs(ref.numpy()).max())
lrel = float(np.abs(l - logits.numpy()).max() / np.abs(logits.numpy()).max())
assert rel < 1e-4 and lrel < 1e-4, (rel, lrel)
# Statistics written by uvit fid-stats: what pytorch-fid's np.load reads.
s = np.load(t + "/st.npz")
assert s["mu"].dtype == np.float64 and s["mu"].shape == (2048,)
assert s["sigma"].dtype == np.float64 and s["sigma"].shape == (2048, 2048)
f = a.astype(np.float64)
assert np.abs(s["mu"] - f.mean(0)).max() < 1e-12
assert np.abs(s["sigma"] - np.cov(f, rowvar=False)).max() < 1e-10 * np.abs(s["sigma"]).max()
print(f"ok: features vs twin rel {rel:.2e}, logits rel {lrel:.2e}; stats match np.cov")
PYEOF
run "$UVIT" fid-stats "$tmp/fdir.npy" --out "$tmp/st.npz"  # features .npy: no network needed
"$PY" "$tmp/twin.py" "$tmp" "$W" || fail "features/stats vs twin"
# Same images on both sides: FID ~ 0; a folder against stats of the same features: ~ 0.
run "$UVIT" fid "$tmp/dir" "$tmp/st.npz" --inception "$W" -q
got=$(sed -n 's/^FID: //p' "$tmp/out")
"$PY" -c "import sys; sys.exit(abs(float('$got')) > 1e-3)" && echo "ok: fid(dir, its stats) = $got" \
  || fail "fid(dir, its own stats) = $got"
grep -q '^sFID' "$tmp/out" && fail "sFID printed without spatial statistics"

# --- sFID: spatial features and mu_s/sigma_s against the twin -------------------------------------
run "$UVIT" fid-features "$tmp/imgs.npy" --inception "$W" --out "$tmp/f2.npy" --spatial "$tmp/sp.npy" -q
run "$UVIT" fid-stats "$tmp/dir" --inception "$W" --out "$tmp/sti.npz" -q
"$PY" - "$tmp" "$W" <<'PYEOF' && echo "ok: sFID features and mu_s/sigma_s vs twin" || fail "sFID vs twin"
import sys, numpy as np, torch
sys.path.insert(0, "tests/reference")
import inception_torch as it
t, W = sys.argv[1], sys.argv[2]
m = it.build().double(); m.load_state_dict(torch.load(W)); m.eval()
with torch.no_grad():
    ref = it.spatial(m, it.to01(np.load(t + "/imgs.npy")).double()).numpy()
sp = np.load(t + "/sp.npy")
assert sp.shape == (5, 2023) and sp.dtype == np.float32, sp.shape
assert np.abs(sp - ref).max() < 1e-4 * np.abs(ref).max(), np.abs(sp - ref).max()
s = np.load(t + "/sti.npz")
assert sorted(s.files) == ["mu", "mu_s", "sigma", "sigma_s"], s.files
f = sp.astype(np.float64)
assert np.abs(s["mu_s"] - f.mean(0)).max() < 1e-12
assert np.abs(s["sigma_s"] - np.cov(f, rowvar=False)).max() < 1e-10 * np.abs(s["sigma_s"]).max()
PYEOF
run "$UVIT" fid "$tmp/imgs.npy" "$tmp/sti.npz" --inception "$W" -q
grep -q '^sFID: ' "$tmp/out" && echo "ok: fid prints $(tr '\n' ' ' <"$tmp/out")" || fail "fid: no sFID line"

# --- hidden names beside the images: skipped with a warning, the same statistics ------------------
# (docs/evaluation.md, "Image folders"): macOS's AppleDouble ._NAME.png and a real image under a
# hidden name; and a WebP, which is refused naming the file.
cp -r "$tmp/dir" "$tmp/dirh"
printf '\0\5\26\7\0\2\0\0Mac OS X        ' >"$tmp/dirh/._img00.png"
cp "$tmp/dir/img01.png" "$tmp/dirh/.img01.png"
run "$UVIT" fid-stats "$tmp/dirh" --inception "$W" --out "$tmp/sth.npz"
grep -q "skipped 2 hidden file(s) (a leading '.'), ._img00.png and others" "$tmp/err" \
  || { fail "fid-stats: no warning naming the hidden files"; cat "$tmp/err"; }
"$PY" -c "
import numpy as np
a, b = np.load('$tmp/sti.npz'), np.load('$tmp/sth.npz')
assert sorted(a.files) == sorted(b.files) and all((a[k] == b[k]).all() for k in a.files)
" && echo "ok: hidden ._img00.png and .img01.png skipped: the same statistics" \
  || fail "fid-stats with hidden files differs"
rm "$tmp"/dirh/.*.png  # (their warning would be a second line)
printf 'RIFF\0\0\0\0WEBPVP8 ' >"$tmp/dirh/img09.webp"
expect_error "img09.webp: a WebP image, which uvit cannot decode" \
  "$UVIT" fid-stats "$tmp/dirh" --inception "$W" --out "$tmp/x.npz"

# --- eval: a tiny unconditional net, 12 samples in chunks of 5, resumed ---------------------------
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=2 sample.sample_steps=3
sed -e 's/"num_classes": 11/"num_classes": 0/' -e 's/"cfg": true/"cfg": false/g' \
  -e 's/"mode": "cond"/"mode": "uncond"/' "$tmp/tiny.json" >"$tmp/uncond.json"
run "$UVIT" train --config "$tmp/uncond.json" --out "$tmp/run" --steps 0 -q
NW=$(ls "$tmp"/run/*.safetensors | head -1)
E0=(eval --config "$tmp/uncond.json" --weights "$NW" --n 12 --chunk 5 --inception "$W"
    --out "$tmp/ev.npz")
E=("${E0[@]}" --ref "$tmp/sti.npz")  # not -q: the resume count is read from stderr
run "$UVIT" "${E[@]}" --ref-features "$tmp/fdir.npy" --json "$tmp/ev.json"
# The ADM evaluator's lines, in its order.
[ "$(sed 's/: .*//' "$tmp/out" | tr '\n' ,)" = "Inception Score,FID,sFID,Precision,Recall," ] \
  && echo "ok: eval: $(tr '\n' ' ' <"$tmp/out")" || { fail "eval output"; cat "$tmp/out"; }
cp "$tmp/out" "$tmp/out.all"
first=$(sed -n 's/^FID: \([^ ]*\).*/\1/p' "$tmp/out")
ls "$tmp/ev.npz.parts"/chunk_*.npz | wc -l | grep -q '^3$' || fail "eval: expected 3 chunks"
rm "$tmp/ev.npz.parts/chunk_1.npz"
run "$UVIT" "${E[@]}"
grep -q "7 resumed" "$tmp/err" || { fail "eval did not resume chunks 0 and 2 (7 samples)"; cat "$tmp/err"; }
again=$(sed -n 's/^FID: \([^ ]*\).*/\1/p' "$tmp/out")
[ "$first" = "$again" ] && echo "ok: resumed eval gives the same FID $again" \
  || fail "resumed FID $again != $first"
"$PY" -c "
import numpy as np, json
a = np.load('$tmp/ev.npz')['arr_0']; assert a.shape == (12, 28, 28, 3) and a.dtype == np.uint8, a.shape
j = json.load(open('$tmp/ev.json')); assert {'fid', 'sfid', 'inception_score', 'precision', 'recall'} <= set(j), j
# The printed numbers are Python's repr of the values, as the evaluator's print shows them.
keys = {'Inception Score': 'inception_score', 'FID': 'fid', 'sFID': 'sfid', 'Precision': 'precision', 'Recall': 'recall'}
for line in open('$tmp/out.all'):
    name, value = line.rstrip('\\n').split(': ')
    assert value == repr(float(j[keys[name]])), (line, j[keys[name]])
" && echo "ok: eval samples .npz, json, printed as repr" || fail "eval samples .npz / json / repr"

# The samples batch, read the way the ADM evaluator streams arr_0 (zipfile + npy header 1.0/2.0).
"$PY" - "$tmp/ev.npz" <<'PYEOF' && echo "ok: the evaluator's reader streams arr_0" || fail "evaluator reader"
import sys, zipfile, numpy as np
with open(sys.argv[1], "rb") as f, zipfile.ZipFile(f, "r") as z:
    assert "arr_0.npy" in z.namelist()
    with z.open("arr_0.npy", "r") as a:
        v = np.lib.format.read_magic(a)
        shape, fortran, dtype = (np.lib.format.read_array_header_1_0 if v == (1, 0)
                                 else np.lib.format.read_array_header_2_0)(a)
        assert not fortran and dtype == np.uint8 and shape == (12, 28, 28, 3), (shape, dtype)
        data = np.frombuffer(a.read(), dtype).reshape(shape)
assert (data == np.load(sys.argv[1])["arr_0"]).all()
PYEOF

# An ADM reference batch: arr_0 images next to mu, sigma, mu_s, sigma_s. Precision/recall use the
# features of its images, computed the evaluator's way (numpy reimplementation) from uvit's features.
"$PY" -c "
import numpy as np
s = np.load('$tmp/sti.npz')
# 6 of the samples as the reference images, so that precision and recall are not 0.
np.savez('$tmp/refbatch.npz', arr_0=np.load('$tmp/ev.npz')['arr_0'][:6], **{k: s[k] for k in s.files})"
run "$UVIT" eval --config "$tmp/uncond.json" --weights "$NW" --n 12 --chunk 5 --ref "$tmp/refbatch.npz" \
  --inception "$W" --out "$tmp/ev.npz" -q --json "$tmp/ev2.json"
run "$UVIT" fid-features "$tmp/ev.npz" --inception "$W" --out "$tmp/fev.npy" -q
run "$UVIT" fid-features "$tmp/refbatch.npz" --inception "$W" --out "$tmp/fref.npy" -q
"$PY" - "$tmp" <<'PYEOF' && echo "ok: reference batch precision/recall = numpy evaluator" || fail "ref batch PR"
import sys, json, numpy as np
sys.path.insert(0, "tests/reference")
import adm_evaluator_ref as adm
t = sys.argv[1]
j = json.load(open(t + "/ev2.json"))
p, r = adm.precision_recall(np.load(t + "/fref.npy"), np.load(t + "/fev.npy"))
assert (j["precision"], j["recall"]) == (p, r) and p > 0 and r > 0, (j, p, r)
print(f"  precision {p} recall {r}")
PYEOF
expect_error "different run" "$UVIT" "${E[@]}" --seed 5

# --- errors ---------------------------------------------------------------------------------------
expect_error "pytorch-fid/releases" "$UVIT" fid "$tmp/dir" "$tmp/st.npz"
expect_error "not found" "$UVIT" fid-features "$tmp/dir" --inception "$tmp/nope.pth" --out "$tmp/x.npy"
expect_error "no such file" "$UVIT" fid "$tmp/missing" "$tmp/st.npz" --inception "$W"
# A mistyped input is named before the (absent) Inception weights are looked for.
expect_error "dri: no such file or folder" env -u UVIT_INCEPTION "$UVIT" fid "$tmp/dri" "$tmp/st.npz"
expect_error "dri: no such file or folder" env -u UVIT_INCEPTION "$UVIT" fid-stats "$tmp/dri" --out "$tmp/x.npz"
mkdir -p "$tmp/empty"
expect_error "no images" "$UVIT" fid-stats "$tmp/empty" --inception "$W" --out "$tmp/x.npz"
"$PY" -c "import numpy as np; np.save('$tmp/f.npy', np.zeros((2, 8, 8, 3), np.float32)); np.savez('$tmp/bad.npz', mu=np.zeros(3), sigma=np.zeros((3, 2)))"
expect_error "uint8" "$UVIT" fid-features "$tmp/f.npy" --inception "$W" --out "$tmp/x.npy"
expect_error "sigma has shape" "$UVIT" fid "$tmp/bad.npz" "$tmp/s1.npz"
expect_error "different dimensions" "$UVIT" fid "$tmp/s1.npz" "$tmp/st.npz"
"$PY" -c "
import numpy as np
s = np.load('$tmp/st.npz')
np.savez('$tmp/bad_s.npz', mu=s['mu'], sigma=s['sigma'], mu_s=np.zeros(5), sigma_s=np.eye(5))
open('$tmp/notzip.npz', 'w').write('not a zip')"
expect_error "mu_s) of 5 dimensions" "$UVIT" "${E0[@]}" --ref "$tmp/bad_s.npz"
expect_error "notzip.npz" "$UVIT" "${E0[@]}" --ref "$tmp/notzip.npz"
expect_error "expected float features" "$UVIT" "${E[@]}" --ref-features "$tmp/imgs.npy"
expect_error "give --autoencoder" "$UVIT" eval --config imagenet256_uvit_large --weights "$NW" --ref "$tmp/st.npz"
expect_error "not found" "$UVIT" eval --config "$tmp/uncond.json" --weights "$NW" --ref "$tmp/st.npz" --inception "$tmp/nope.pth"
exit $fails
