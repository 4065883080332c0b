#!/usr/bin/env bash
# The commands README.md and docs/cli.md show, run as written (only --steps/--n shrunk) on a model
# trained here: the quick start's demo, info/convert/predict, the cli.md resume example and its
# log rows, sample's outputs, PNG metadata, the FID commands, eval, serve, and the clear errors of
# commands whose weights are not on this machine. Also: the command and option table of
# docs/cli.md agrees with `uvit --help` and every `uvit help CMD`, both ways.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") FIX=${2:-}
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh  # $tmp, removed at exit with the server in $pid
unset UVIT_INCEPTION

# --- docs/cli.md's table against the help texts -------------------------------------------------
cmds=$("$UVIT" --help | sed -n '/^Subcommands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
[ "$(echo "$cmds" | wc -l)" -ge 18 ] || fail "uvit --help lists: $cmds"
table=$(sed -n '/^## The commands and their options/,/^## Progress display/p' docs/cli.md)
table_cmds=$(echo "$table" | sed -n 's/^| `\([a-z-]*\)[ `].*/\1/p' | sort -u)
[ "$(echo "$cmds" | sort)" = "$table_cmds" ] ||
  fail "commands of uvit --help ($(echo $cmds)) != docs/cli.md's table ($(echo $table_cmds))"
help_options() {  # the options of `uvit help CMD...`, one per line, without -h and --threads
  "$UVIT" help "$@" | sed -n '/^Options:/,/^uvit help/p' |
    grep -oE '^  (-[a-z],)?--[a-z0-9-]+(,--[a-z0-9-]+)*' | grep -oE -- '--[a-z0-9-]+' |
    grep -vx -e --help -e --threads | sort -u
}
for c in $cmds "autoencoder encode" "autoencoder decode"; do
  [ "$c" = autoencoder ] && continue
  row=$(echo "$table" | grep -F "| \`$c\` |")
  [ -n "$row" ] || { fail "docs/cli.md has no row for '$c'"; continue; }
  doc=$(echo "$row" | grep -oE -- '--[a-z0-9-]+' | sort -u)
  # shellcheck disable=SC2086
  hlp=$(help_options $c)
  [ "$doc" = "$hlp" ] || fail "docs/cli.md row '$c' vs uvit help $c: $(diff <(echo "$doc") <(echo "$hlp") | grep '^[<>]' | tr '\n' ' ')"
done
[ $fails = 0 ] && echo "ok: docs/cli.md's table matches the help of $(echo $cmds | wc -w) commands"

# --- README quick start: the demo (a few steps), a run folder like uvit train's ---------------
D=$tmp/demo
run "$UVIT" demo --out "$D" --steps 3 --set sample.sample_steps=4
grep -q "^wrote $D/grid.png: 10 samples of each Fashion-MNIST class, one row per class" "$tmp/out" ||
  fail "demo: $(cat "$tmp/out")"
for f in grid.png nnet.safetensors nnet_ema.safetensors train_state.safetensors log.jsonl config.json; do
  [ -s "$D/$f" ] || fail "demo: no $f"
done
W=$D/nnet_ema.safetensors

# --- README's table: info, convert, predict ---------------------------------------------------
run "$UVIT" info --config fmnist_uvit_tiny
grep -q "^parameters    1496346 in 93 tensors" "$tmp/out" || fail "info: $(cat "$tmp/out")"
run "$UVIT" info --presets
for p in cifar10_uvit_small imagenet256_uvit_huge mscoco_uvit_small_deep fmnist_uvit_tiny dit_xl_2 \
  dit_xl_2_512 skip_dit_xl_2 fmnist_dit_tiny fmnist_skip_dit_tiny lightningdit_xl_1 lightningdit_b_1 \
  fmnist_lightningdit_tiny mdt_xl_2 mdt_s_2 fmnist_mdt_tiny fitv2_xl_2 fmnist_fit_tiny \
  fitv1_xl_2 fmnist_fitv1_tiny mdtv1_xl_2 fmnist_mdtv1_tiny; do
  grep -qx "$p" "$tmp/out" || fail "README names preset $p; uvit info --presets does not"
done
run "$UVIT" convert "$W" "$tmp/w16.safetensors" --config fmnist_uvit_tiny --dtype f16
run "$UVIT" convert "$W" "$tmp/w8.safetensors" --config fmnist_uvit_tiny --quantize int8
run "$UVIT" convert "$W" "$tmp/w4.safetensors" --config fmnist_uvit_tiny --quantize int4:64
grep -q "^wrote $tmp/w4.safetensors: " "$tmp/out" || fail "convert: $(cat "$tmp/out")"
expect_error "writes .safetensors or .pth or .pt only" "$UVIT" convert "$W" "$tmp/w.bin" --config fmnist_uvit_tiny
"$PY" -c "
import numpy as np, sys
r = np.random.default_rng(0)
np.save(sys.argv[1] + '/x.npy', r.standard_normal((2, 1, 28, 28)).astype(np.float32))
np.save(sys.argv[1] + '/t.npy', np.array([10.0, 500.0], np.float32))
np.save(sys.argv[1] + '/y.npy', np.array([1, 7], np.int64))" "$tmp"
for w in "$W" "$tmp/w8.safetensors"; do
  run "$UVIT" predict --config fmnist_uvit_tiny --weights "$w" --x "$tmp/x.npy" --t "$tmp/t.npy" \
    --y "$tmp/y.npy" --out "$tmp/eps_$(basename "$w" .safetensors).npy"
done
"$PY" -c "
import numpy as np, sys
a, q = np.load(sys.argv[1] + '/eps_nnet_ema.npy'), np.load(sys.argv[1] + '/eps_w8.npy')
assert a.shape == (2, 1, 28, 28) and a.dtype == np.float32 and np.isfinite(a).all(), a.shape
err = np.abs(a - q).max() / np.abs(a).max()
assert 0 < err < 0.05, err   # int8 weights: close to fp32, not identical
print('predict ok: int8 vs fp32', err)" "$tmp" || fail "predict outputs"

# --- docs/cli.md's resume example and its log rows ---------------------------------------------
R=$tmp/run
run "$UVIT" train --config fmnist_uvit_tiny --batch 16 --seed 5 --steps 12 --out "$R"
grep -qx "run $R at step 12: weights $R/nnet_ema.safetensors" "$tmp/out" || fail "train: $(cat "$tmp/out")"
run "$UVIT" train --config fmnist_uvit_tiny --batch 16 --seed 5 --steps 24 --out "$R" --resume
"$PY" - "$R/log.jsonl" <<'PYEOF' || fail "log.jsonl rows as docs/cli.md shows them"
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    assert {"event", "t", "step"} <= r.keys(), r
train = [r for r in rows if r["event"] == "train" and "lr" in r]
assert train and all({"loss", "lr", "grad_norm", "img_s", "elapsed_s"} <= r.keys() for r in train)
window = [r for r in rows if r["event"] == "train" and "window_steps" in r]
assert window[0]["step"] == 12 and window[0]["window_steps"] == 2, window
assert math.isclose(window[0]["loss"], window[0]["window_loss_sum"] / 2, rel_tol=1e-9), window[0]
ov = [r for r in rows if r["event"] == "override"]
assert ov == [{"event": "override", "override": {"train.n_steps": 24}, "step": 12, "t": ov[0]["t"]}], ov
ck = [r["step"] for r in rows if r["event"] == "checkpoint" and r["path"] == "."]
assert ck == [12, 24], ck
assert [r["path"] for r in rows if r["event"] == "sample"] == ["samples/step_0000012.png",
                                                             "samples/step_0000024.png"]
print("log ok:", len(rows), "rows")
PYEOF
expect_error "already at step 24, past the 12 steps" "$UVIT" train --out "$R" --resume latest --steps 12
expect_error "differs from the run's seed 5" "$UVIT" train --out "$R" --resume --seed 6
expect_error "holds no training run" "$UVIT" train --out "$tmp/none" --resume
[ ! -e "$tmp/none" ] || fail "a train that cannot start left $tmp/none behind"

# --- sample: every output of README's line, the printf pattern, the seed ----------------------
S=(sample --config fmnist_uvit_tiny --weights "$W" --sampler dpm-solver --steps 3)
run "$UVIT" "${S[@]}" --n 20 --classes all --cfg-scale 1 --seed 3 --out "$tmp/s/grid.png" \
  --npy "$tmp/s/s.npy" --npz "$tmp/s/s.npz" --dir "$tmp/s/d"
grep -q "^20 samples in [0-9.]* s (3 network evaluations)$" "$tmp/err" || fail "sample: $(tail -1 "$tmp/err")"
[ "$(ls "$tmp/s/d" | wc -l)" = 20 ] && [ -s "$tmp/s/d/000019.png" ] || fail "sample --dir: $(ls "$tmp/s/d")"
run "$UVIT" "${S[@]}" --n 4 --class sneaker -o "$tmp/o/img_%03d.png"
[ "$(ls "$tmp/o")" = "$(printf 'img_000.png\nimg_001.png\nimg_002.png\nimg_003.png')" ] ||
  fail "-o img_%03d.png: $(ls "$tmp/o")"
"$PY" - "$tmp/s" <<'PYEOF' || fail "sample outputs"
import struct, sys, numpy as np
d = sys.argv[1]
a, z = np.load(d + "/s.npy"), np.load(d + "/s.npz")["arr_0"]
assert a.shape == (20, 28, 28, 1) and a.dtype == np.uint8 and np.array_equal(a, z), a.shape
b = open(d + "/grid.png", "rb").read()
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (2 + 2 * 30, 2 + 10 * 30), (w, h)   # --classes all: 10 rows of 2
print("sample outputs ok")
PYEOF
expect_error "'%s' is not an index conversion" "$UVIT" "${S[@]}" --class 7 -o "$tmp/img_%s.png"
expect_error "writes .png only" "$UVIT" "${S[@]}" --class 7 --out "$tmp/g.jpg"
# --seed -1 prints its seed only once the request is accepted: a refused one is one line.
expect_error "is class-conditional: give --class K or --classes all" "$UVIT" "${S[@]}" --seed -1 --out "$tmp/g.png"
run "$UVIT" info "$tmp/s/d/000001.png" --json
"$PY" -c "
import json, sys
j = json.load(open(sys.argv[1]))
assert set(j) == {'file', 'parameters', 'fields', 'uvit-params'}, set(j)
assert j['fields']['Prompt'] == 'Trouser' and j['uvit-params']['class'] == 1, j['fields']
print('info IMAGE.png --json ok')" "$tmp/out" || fail "info IMAGE.png --json: $(cat "$tmp/out")"
run "$UVIT" info --config fmnist_uvit_tiny --classes
grep -q "^7	.*Sneaker" "$tmp/out" || fail "info --classes: $(cat "$tmp/out")"

# --- docs/evaluation.md: fid-features, fid-stats, fid, eval (random-weight Inception) ---------
F=$FIX/fid
if [ ! -f "$F/inception.pth" ]; then
  F=$tmp/fidnet
  "$PY" tests/reference/inception_torch.py --out "$F" --net-only >/dev/null || fail "twin fixtures"
fi
I=$F/inception.pth
expect_error "pass --inception pt_inception-2015-12-05-6726825d.pth or set UVIT_INCEPTION" \
  "$UVIT" fid "$tmp/s/s.npy" "$tmp/s/s.npz"
run "$UVIT" fid-features "$tmp/s/s.npy" --out "$tmp/f.npy" --logits "$tmp/l.npy" --spatial "$tmp/sp.npy" --inception "$I"
grep -q "^inception: 20 images in [0-9.]* s ([0-9.]* img/s" "$tmp/err" && ! grep -q "first batch 0.000" "$tmp/err" ||
  fail "fid-features report: $(grep '^inception:' "$tmp/err")"  # one batch: no rate after it
run "$UVIT" fid-stats "$tmp/f.npy" --out "$tmp/st.npz"
run "$UVIT" fid "$tmp/st.npz" "$tmp/st.npz"
got=$(sed -n 's/^FID: //p' "$tmp/out")  # Python's repr: 0.0 or rounding noise, not clamped
"$PY" -c "import sys; sys.exit(abs(float('$got')) > 1e-9)" || fail "fid of a file with itself: $(cat "$tmp/out")"
"$PY" -c "
import numpy as np, sys
d = sys.argv[1]
assert [np.load(d + f).shape for f in ('/f.npy', '/l.npy', '/sp.npy')] == [(20, 2048), (20, 1008), (20, 2023)]
s = np.load(d + '/st.npz')
assert sorted(s.files) == ['mu', 'sigma'] and s['sigma'].shape == (2048, 2048)
print('fid files ok')" "$tmp" || fail "fid-features / fid-stats outputs"
run "$UVIT" eval --config fmnist_uvit_tiny --weights "$W" --n 12 --ref "$tmp/st.npz" --sampler dpm-solver \
  --steps 3 --inception "$I" --out "$tmp/ev/s.npz" --json "$tmp/ev/m.json" --chunk 6
# The ADM evaluator's lines in its order (sFID needs mu_s in --ref: statistics from images).
[ "$(cut -d: -f1 "$tmp/out" | tr '\n' ,)" = "Inception Score,FID," ] || fail "eval printed: $(cat "$tmp/out")"
"$PY" -c "
import json, math, sys, numpy as np
j = json.load(open(sys.argv[1] + '/m.json'))
assert j['n'] == 12 and j['steps'] == 3 and math.isfinite(j['fid']) and j['fid'] > 0, j
assert np.load(sys.argv[1] + '/s.npz')['arr_0'].shape == (12, 28, 28, 3)
print('eval ok: FID', j['fid'])" "$tmp/ev" || fail "eval outputs"
# -q: the result lines only; the notes on what was skipped (sFID, precision/recall) go too.
run "$UVIT" eval --config fmnist_uvit_tiny --weights "$W" --n 12 --ref "$tmp/st.npz" --sampler dpm-solver \
  --steps 3 --inception "$I" --out "$tmp/ev/s.npz" --chunk 6 -q
[ -s "$tmp/err" ] && fail "eval -q printed on stderr: $(cat "$tmp/err")"
[ "$(cut -d: -f1 "$tmp/out" | tr '\n' ,)" = "Inception Score,FID," ] || fail "eval -q printed: $(cat "$tmp/out")"

# --- docs/serve.md: the server's start lines, one request, SIGTERM ends it with status 0 -------
if "$UVIT" serve --config fmnist_uvit_tiny --weights /nonexistent.safetensors 2>&1 | grep -q "cpp-httplib"; then
  echo "skip: serve (built without cpp-httplib)"
else
  serve_up --config fmnist_uvit_tiny --weights "$W"
  curl -sf -m 60 -X POST "$B/sdapi/v1/txt2img" \
    -d '{"prompt": "sneaker", "steps": 2, "batch_size": 2, "seed": 4}' >"$tmp/t2i.json" ||
    fail "serve: txt2img"
  serve_down TERM
  grep -q "^\[INFO \] loaded fmnist_uvit_tiny (nnet_ema.safetensors, [0-9a-f]\{10\}) on cpu in [0-9.]* s$" "$tmp/server.log" &&
    grep -qx "\[INFO \] serving fmnist_uvit_tiny on http://127.0.0.1:$port/" "$tmp/server.log" ||
    fail "serve log: $(cat "$tmp/server.log")"
  "$PY" -c "
import json, sys
j = json.load(open(sys.argv[1]))
info = json.loads(j['info'])
assert len(j['images']) == 2 and info['all_seeds'] == [4, 5], info
assert info['infotexts'][0].startswith('Sneaker\nSteps: 2,'), info['infotexts'][0]
print('serve ok')" "$tmp/t2i.json" || fail "serve: txt2img answer"
fi

# --- commands whose weights are not here: one line naming the missing file --------------------
cd "$tmp" || exit 1
expect_error "DiT-XL-2-256x256.pt: cannot open" "$UVIT" convert DiT-XL-2-256x256.pt dit_xl_2.safetensors --config dit_xl_2
expect_error "sd-vae-ft-ema/diffusion_pytorch_model.safetensors: cannot open" "$UVIT" sample --config dit_xl_2 \
  --weights dit_xl_2.safetensors --autoencoder sd-vae-ft-ema/diffusion_pytorch_model.safetensors \
  --classes 207,360,387,974 --guidance 4 --out grid.png
expect_error "autoencoder_kl.pth: cannot open" "$UVIT" autoencoder encode --weights autoencoder_kl.pth \
  --in images.npy --out moments.npy
expect_error "stvae.pt: cannot open" "$UVIT" autoencoder decode --config lavin_stvae --weights stvae.pt \
  --in z.npy --out images.npy
expect_error "clip_text.safetensors: cannot open" "$UVIT" encode-text --clip clip_text.safetensors --out ctx.npy "A green train"
expect_error "is a latent model: give --autoencoder" "$UVIT" sample --config imagenet256_uvit_huge --weights W \
  --classes all --out grid.png
exit $fails
