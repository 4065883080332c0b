#!/usr/bin/env bash
# `--inception-input tf` (docs/evaluation.md "The TF graph's input pipeline"): fid-features of
# uint8 images equal the twin of the TF graph's pipeline (tests/reference/inception_tf_input.py,
# random Inception weights), fid-stats records the pipeline, `uvit fid` and `uvit eval --ref`
# refuse statistics of the other pipeline, eval records it in its work folder's manifest and
# refuses to resume that folder with the other pipeline.
set -uo pipefail
UVIT=$1 FIX=${2:-}
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_INCEPTION

T=${FIX:+$FIX/fid_tf}
if [ -z "$T" ] || [ ! -f "$T/inception.pth" ]; then  # the unit tests' fixtures, or made here
  T=$tmp/tf
  "$PY" tests/reference/inception_tf_input.py --out "$T" >/dev/null || fail "tf input twin"
fi
W=$T/inception.pth

# --- features: the twin's, through the tf pipeline; not the default pipeline's -------------------
run "$UVIT" fid-features "$T/images_c.npy" --inception "$W" --inception-input tf \
  --out "$tmp/f.npy" --logits "$tmp/l.npy" --spatial "$tmp/s.npy" -q
run "$UVIT" fid-features "$T/images_c.npy" --inception "$W" --out "$tmp/fp.npy" -q
"$PY" - "$tmp" "$T" <<'PYEOF' && echo "ok: fid-features --inception-input tf = the twin" || fail "tf features"
import sys, numpy as np
t, T = sys.argv[1:]
rel = lambda a, b: float(np.abs(a - b).max() / np.abs(b).max())
for mine, ref in (("f", "pool3_c"), ("l", "logits_c"), ("s", "spatial_c")):
    r = rel(np.load(f"{t}/{mine}.npy"), np.load(f"{T}/{ref}.npy"))
    assert r < 1e-4, (mine, r)
assert rel(np.load(f"{t}/fp.npy"), np.load(f"{T}/pool3_c.npy")) > 1e-3  # the default differs
PYEOF

# --- fid-stats records the pipeline (only tf); uvit fid refuses mixing ----------------------------
"$PY" -c "
import numpy as np
a = np.load('$T/images_c.npy'); r = np.random.RandomState(5)
np.save('$tmp/imgs.npy', np.concatenate([a, r.randint(0, 256, (3,) + a.shape[1:]).astype(np.uint8)]))"
run "$UVIT" fid-stats "$tmp/imgs.npy" --inception "$W" --inception-input tf --out "$tmp/tf.npz" -q
run "$UVIT" fid-stats "$tmp/imgs.npy" --inception "$W" --out "$tmp/pt.npz" -q
"$PY" -c "
import numpy as np
tf, pt = np.load('$tmp/tf.npz'), np.load('$tmp/pt.npz')
assert bytes(tf['inception_input']) == b'tf' and tf['inception_input'].dtype == np.uint8
assert sorted(pt.files) == ['mu', 'mu_s', 'sigma', 'sigma_s'], pt.files
assert np.abs(tf['mu'] - pt['mu']).max() > 1e-4
" && echo "ok: fid-stats records --inception-input tf, and nothing for the default" \
  || fail "fid-stats record"
run "$UVIT" fid "$tmp/tf.npz" "$tmp/imgs.npy" --inception "$W" --inception-input tf -q
"$PY" -c "import sys; sys.exit(abs(float('$(sed -n 's/^FID: //p' "$tmp/out")')) > 1e-6)" \
  && echo "ok: fid of tf statistics and the same images through tf: 0" || fail "tf fid not 0"
expect_error "^uvit: error: $tmp/tf.npz and $tmp/imgs.npy: made with different Inception input pipelines (--inception-input tf and pytorch-fid): their FID mixes two pipelines$" \
  "$UVIT" fid "$tmp/tf.npz" "$tmp/imgs.npy" --inception "$W"
expect_error "^uvit: error: $tmp/imgs.npy and $tmp/tf.npz: made with different Inception input pipelines (--inception-input pytorch-fid and tf)" \
  "$UVIT" fid "$tmp/imgs.npy" "$tmp/tf.npz" --inception "$W" --inception-input pytorch-fid
expect_error "inception-input" "$UVIT" fid-stats "$tmp/imgs.npy" --inception "$W" \
  --inception-input adm --out "$tmp/x.npz"
# A features .npy records no pipeline (docs: "a file without the record cannot be checked"): the
# tf features of the same images against the tf statistics give 0 without --inception-input (it
# computes nothing there). Before, the default flag was taken as the file's pipeline: refused, as
# "made with ... pytorch-fid".
run "$UVIT" fid-features "$tmp/imgs.npy" --inception "$W" --inception-input tf -q \
  --out "$tmp/imgs_tf.npy"
run "$UVIT" fid "$tmp/imgs_tf.npy" "$tmp/tf.npz" -q
"$PY" -c "import sys; sys.exit(abs(float('$(sed -n 's/^FID: //p' "$tmp/out")')) > 1e-6)" &&
  echo "ok: fid of tf features (.npy, no record) and tf statistics: 0" ||
  fail "fid of a features .npy against tf statistics: $(cat "$tmp/out" "$tmp/err")"
# fid-stats of that .npy with --inception-input tf records nothing either (it computed nothing;
# before, the flag was written as the file's pipeline), and says so.
run "$UVIT" fid-stats "$tmp/imgs_tf.npy" --inception-input tf --out "$tmp/npy_tf.npz"
grep -q "records no pipeline" "$tmp/err" &&
  "$PY" -c "
import numpy as np
assert 'inception_input' not in np.load('$tmp/npy_tf.npz').files" &&
  echo "ok: fid-stats of a features .npy records no pipeline, with a note" ||
  fail "fid-stats of a features .npy: $(cat "$tmp/err")"

# --- eval: tf recorded in the manifest; resuming with the other pipeline is refused ---------------
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=2 sample.sample_steps=3
sed -e 's/"num_classes": 11/"num_classes": 0/' -e 's/"cfg": true/"cfg": false/g' \
  -e 's/"mode": "cond"/"mode": "uncond"/' "$tmp/tiny.json" >"$tmp/uncond.json"
run "$UVIT" train --config "$tmp/uncond.json" --out "$tmp/run" --steps 0 -q
NW=$(ls "$tmp"/run/*.safetensors | head -1)
E=(eval --config "$tmp/uncond.json" --weights "$NW" --n 6 --chunk 3 --inception "$W"
   --metrics fid)
run "$UVIT" "${E[@]}" --ref "$tmp/tf.npz" --inception-input tf --out "$tmp/ev.npz" -q \
  --json "$tmp/ev.json"
ev=$(sed -n 's/^FID: //p' "$tmp/out")
# The same samples' FID from `uvit fid` through tf (the twin-checked features above): equal.
run "$UVIT" fid "$tmp/tf.npz" "$tmp/ev.npz" --inception "$W" --inception-input tf -q
fid=$(sed -n 's/^FID: //p' "$tmp/out")
[ -n "$ev" ] && "$PY" -c "import sys; sys.exit(abs($ev - $fid) > 1e-9 * abs($fid))" &&
  "$PY" -c "import json; assert json.load(open('$tmp/ev.npz.parts/manifest.json'))['inception_input'] == 'tf'" &&
  "$PY" -c "import json; assert json.load(open('$tmp/ev.json'))['inception_input'] == 'tf'" &&
  echo "ok: eval --inception-input tf: FID $ev of tf features, recorded in the manifest" ||
  fail "eval tf: FID $ev vs fid's $fid"
expect_error "^uvit: error: $tmp/ev.npz.parts: holds chunks whose Inception features are --inception-input tf's, this run asks for pytorch-fid; give --inception-input tf to continue them, or give each model its own --out" \
  "$UVIT" "${E[@]}" --ref "$tmp/pt.npz" --out "$tmp/ev.npz" -q
expect_error "^uvit: error: --ref $tmp/tf.npz: statistics made with --inception-input tf, this run's with pytorch-fid: give the same --inception-input$" \
  "$UVIT" "${E[@]}" --ref "$tmp/tf.npz" --out "$tmp/ev2.npz" -q
# A default run's folder (no record) resumed with tf: refused the same way.
run "$UVIT" "${E[@]}" --ref "$tmp/pt.npz" --out "$tmp/ev3.npz" -q --json "$tmp/ev3.json"
"$PY" -c "import json; assert json.load(open('$tmp/ev3.json'))['inception_input'] == 'pytorch-fid'" &&
  echo "ok: eval --json records the Inception input pipeline" || fail "eval --json: no inception_input"
expect_error "^uvit: error: $tmp/ev3.npz.parts: holds chunks whose Inception features are --inception-input pytorch-fid's, this run asks for tf; give --inception-input pytorch-fid to continue them" \
  "$UVIT" "${E[@]}" --ref "$tmp/tf.npz" --out "$tmp/ev3.npz" --inception-input tf -q

exit $fails
