#!/usr/bin/env bash
# `uvit convert --quantize`: int8 and int4 files of a trained tiny U-ViT predict close to the fp32
# weights (int8 within 3 % max relative error, int4 within 50 %; docs/formats.md), sample and
# dequantise exactly as stored; without --config the config the weights name (a run folder, a
# recorded preset); refusals (weights that name no config, an unknown format, resuming training
# from quantised weights) are one line.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=6 lr_scheduler.warmup_steps=1 sample.sample_steps=5
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" -q
W=$tmp/run/nnet_ema.safetensors
for q in int8 int4; do
  run "$UVIT" convert "$W" "$tmp/$q.safetensors" --quantize $q --config "$tmp/tiny.json"
done
"$PY" - "$tmp" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]; r = np.random.default_rng(0)
np.save(d + "/x.npy", r.standard_normal((4, 1, 28, 28)).astype(np.float32))
np.save(d + "/t.npy", np.array([0.1, 0.3, 0.6, 0.9], dtype=np.float32))
np.save(d + "/y.npy", np.array([0, 3, 5, 9], dtype=np.int64))
PYEOF
for w in run/nnet_ema int8 int4; do
  run "$UVIT" predict -c "$tmp/tiny.json" -w "$tmp/$w.safetensors" --x "$tmp/x.npy" --t "$tmp/t.npy" \
    --y "$tmp/y.npy" -o "$tmp/eps_$(basename $w).npy"
  run "$UVIT" sample -c "$tmp/tiny.json" -w "$tmp/$w.safetensors" --n 10 --classes all --seed 1 \
    --npy "$tmp/s_$(basename $w).npy"
done
"$PY" - "$tmp" <<'PYEOF' || fail "quantised outputs"
import json, struct, sys, numpy as np
d = sys.argv[1]
ref = np.load(d + "/eps_nnet_ema.npy")
for q, bound in (("int8", 0.03), ("int4", 0.5)):
    e = np.load(d + "/eps_%s.npy" % q)
    rel = np.abs(e - ref).max() / np.abs(ref).max()
    assert 0 < rel < bound, (q, rel)
    s = np.load(d + "/s_%s.npy" % q)
    assert s.shape == (10, 28, 28, 1) and s.dtype == np.uint8, (q, s.shape, s.dtype)
    # The file's layout: I8 / packed U8 weights with F32 scales, and the metadata key.
    raw = open(d + "/%s.safetensors" % q, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8]); h = json.loads(raw[8:8 + n])
    assert h["__metadata__"]["uvit.quantization"] == q, h["__metadata__"]
    w, s = h["in_blocks.0.mlp.fc1.weight"], h["in_blocks.0.mlp.fc1.weight_scale"]
    assert w["dtype"] == ("I8" if q == "int8" else "U8") and s["dtype"] == "F32", (w, s)
    assert w["shape"] == ([64, 32] if q == "int8" else [64, 16]), w
    assert s["shape"] == ([64] if q == "int8" else [64, 1]), s
    assert h["pos_embed"]["dtype"] == "F32"
    print("ok: %s max relative error %.4f" % (q, rel))
PYEOF
# Without --config, the config the weights name (docs/cli.md "convert"), said on one line: a run's
# checkpoint its run folder (here a JSON config's run, whose name is no preset), a copy elsewhere the
# preset its metadata records; the same file as with -c. A file that names none is refused.
run "$UVIT" convert "$W" "$tmp/int8_run.safetensors" --quantize int8
[ "$(cat "$tmp/err")" = "--quantize: config the training run $tmp/run (its config.json); -c overrides" ] ||
  fail "convert --quantize of a run's weights: $(cat "$tmp/err")"
cmp -s "$tmp/int8.safetensors" "$tmp/int8_run.safetensors" || fail "the run folder's config quantised otherwise than -c"
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/prun" --steps 1 --batch 2 --no-grid -q
mkdir -p "$tmp/copies" && cp "$tmp/prun/nnet_ema.safetensors" "$tmp/copies/p.safetensors"
run "$UVIT" convert "$tmp/copies/p.safetensors" "$tmp/p8.safetensors" --quantize int8
[ "$(cat "$tmp/err")" = "--quantize: config preset fmnist_uvit_tiny (recorded in $tmp/copies/p.safetensors's metadata); -c overrides" ] ||
  fail "convert --quantize of a preset's weights: $(cat "$tmp/err")"
run "$UVIT" convert "$tmp/copies/p.safetensors" "$tmp/p8c.safetensors" --quantize int8 -c fmnist_uvit_tiny
cmp -s "$tmp/p8.safetensors" "$tmp/p8c.safetensors" || fail "the recorded preset quantised otherwise than -c"
cp "$W" "$tmp/copies/w.safetensors"  # records "tiny": no preset, and no run folder around it
expect_error "--quantize needs --config (the network whose linear weights are quantised): $tmp/copies/w.safetensors names none (no run's config.json beside it, no preset in its metadata); give -c PRESET, JSON or RUN" \
  "$UVIT" convert "$tmp/copies/w.safetensors" "$tmp/x.safetensors" --quantize int8
expect_error "unknown format 'int3'" "$UVIT" convert "$W" "$tmp/x.safetensors" --quantize int3 --config "$tmp/tiny.json"
# A quantised file converted again is a copy that stays quantised (its metadata kept): it samples
# the same images; what would change its tensors is refused.
run "$UVIT" convert "$tmp/int4.safetensors" "$tmp/int4_copy.safetensors"
run "$UVIT" sample -c "$tmp/tiny.json" -w "$tmp/int4_copy.safetensors" --n 10 --classes all --seed 1 \
  --npy "$tmp/s_int4_copy.npy"
cmp -s "$tmp/s_int4.npy" "$tmp/s_int4_copy.npy" || fail "a copy of quantised weights samples other images"
for opt in "--dtype f16" "--quantize int8" "--config $tmp/tiny.json"; do
  expect_error "quantised weights (int4); --dtype, --quantize, --autoencoder and --config apply to unquantised weights" \
    "$UVIT" convert "$tmp/int4.safetensors" "$tmp/y.safetensors" $opt
done
cp "$tmp/int8.safetensors" "$tmp/run/nnet.safetensors"
expect_error "the weights are quantised; training needs the fp32 weights" \
  "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" --resume --steps 8 -q
[ $fails -eq 0 ] && echo "ok: int8 and int4 convert, predict and sample; refusals are one line"
exit $fails
