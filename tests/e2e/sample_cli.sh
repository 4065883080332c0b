#!/usr/bin/env bash
# `uvit sample`: grid / per-sample PNGs with metadata / .npy outputs agree, results depend only on
# the seed (not on mini-batching), every sampler runs, and bad requests give one-line errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
evals() { sed -n 's/.*(\([0-9]*\) network evaluations).*/\1/p' "$tmp/err"; }

# Tiny class-conditional (10 classes + the null class, guidance scale 1) and unconditional nets.
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=4 lr_scheduler.warmup_steps=1 sample.sample_steps=5
sed -e 's/"num_classes": 11/"num_classes": 0/' -e 's/"cfg": true/"cfg": false/g' \
  -e 's/"mode": "cond"/"mode": "uncond"/' "$tmp/tiny.json" >"$tmp/uncond.json"
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/run" -q
run "$UVIT" train --config "$tmp/uncond.json" --out "$tmp/urun" --steps 0 -q
W=$tmp/run/nnet_ema.safetensors

cat >"$tmp/check.py" <<'PYEOF'
import json, os, struct, sys, zlib
import numpy as np
sys.path.insert(0, "tests/e2e/data")
from a1111_infotext import parse_generation_parameters

def chunks(p):
    d = open(p, "rb").read()
    assert d[:8] == b"\x89PNG\r\n\x1a\n", p + ": bad PNG signature"
    i, out = 8, []
    while i < len(d):
        (n,) = struct.unpack(">I", d[i:i + 4]); t = d[i + 4:i + 8].decode(); body = d[i + 8:i + 8 + n]
        assert zlib.crc32(d[i + 4:i + 8] + body) == struct.unpack(">I", d[i + 8 + n:i + 12 + n])[0], p + ": CRC"
        out.append((t, body)); i += 12 + n
    assert out[0][0] == "IHDR" and out[-1][0] == "IEND", p + ": chunk order"
    return out

def decode(p):  # 8-bit gray / gray+alpha / RGB / RGBA, non-interlaced: [H, W, C] uint8 + tEXt dict
    cs = chunks(p)
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", cs[0][1])
    assert depth == 8 and interlace == 0, p
    c = {0: 1, 4: 2, 2: 3, 6: 4}[ctype]
    raw = zlib.decompress(b"".join(b for t, b in cs if t == "IDAT"))
    stride = w * c
    img = np.zeros((h, stride), np.int32); prev = np.zeros(stride, np.int32)
    for y in range(h):
        f = raw[y * (stride + 1)]; line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, np.int32)
        for x in range(stride):
            a = cur[x - c] if x >= c else 0; b = prev[x]; cc = prev[x - c] if x >= c else 0
            if f == 0: pr = 0
            elif f == 1: pr = a
            elif f == 2: pr = b
            elif f == 3: pr = (a + b) // 2
            else:
                pa, pb, pc = abs(b - cc), abs(a - cc), abs(a + b - 2 * cc)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else cc)
            cur[x] = (line[x] + pr) & 255
        img[y] = cur; prev = cur
    text = dict(b.split(b"\0", 1) for t, b in cs if t == "tEXt")
    return img.reshape(h, w, c).astype(np.uint8), {k.decode(): v.decode() for k, v in text.items()}

def check_npy(p, n):
    a = np.load(p)
    assert a.dtype == np.uint8 and a.shape == (n, 28, 28, 1), f"{p}: {a.dtype} {a.shape}"
    # NaN would turn into all-zero images; every sample must show something, and samples differ.
    assert all(a[i].any() for i in range(n)), p + ": an all-zero (non-finite?) sample"
    assert len({a[i].tobytes() for i in range(n)}) == n, p + ": repeated samples"
    return a

cmd = sys.argv[1]
if cmd == "outputs":  # outputs NPY DIR GRID N: the three outputs agree
    npy, d, grid, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    a = check_npy(npy, n)
    names = sorted(os.listdir(d))
    assert names == [f"{i:06d}.png" for i in range(n)], names
    fmnist = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
              "Bag", "Ankle boot"]
    for i in range(n):
        im, text = decode(os.path.join(d, names[i]))
        assert np.array_equal(im, a[i]), f"{names[i]} pixels differ from npy[{i}]"
        assert set(text) == {"parameters", "uvit-params"}, f"{names[i]}: chunks {sorted(text)}"
        assert os.path.dirname(d) not in text["parameters"] + text["uvit-params"], f"a path: {text}"
        p, rec = parse_generation_parameters(text["parameters"]), json.loads(text["uvit-params"])
        assert p["Prompt"] == fmnist[i % 10] and p["Class"] == str(i % 10), f"{names[i]}: {p}"
        assert p["Index"] == str(i) and p["Seed"] == "3", f"{names[i]}: {p}"
        # The preset's defaults as resolved: dpm_solver on continuous_vp, 5 steps, s = 1 (w = 2).
        assert p["Sampler"] == "dpm-solver" and p["Steps"] == "5" and p["CFG scale"] == "2" and \
            p["UViT scale"] == "1" and p["Size-1"] == "28" and p["Size-2"] == "28", f"{names[i]}: {p}"
        assert p["Model"] == "tiny" and p["Weights"] == "nnet_ema.safetensors" and \
            len(p["Model hash"]) == 10, f"{names[i]}: {p}"
        assert rec["schema"] == "uvit.image.params/v1" and rec["seed"] == 3 and rec["index"] == i \
            and rec["class"] == i % 10 and rec["guidance"] == {"w": 2, "s": 1} and \
            rec["weights"]["sha256"].startswith(p["Model hash"]), f"{names[i]}: {rec}"
    g, gtext = decode(grid)  # one row per class (sample i: class i % 10), 2-pixel padding
    gp = parse_generation_parameters(gtext["parameters"])
    assert gp["Batch size"] == str(n) and gp["Seed"] == "3" and gp["Index"] == "0", gp
    cols = (n + 9) // 10
    assert g.shape == (302, 2 + 30 * cols, 1), f"grid shape {g.shape}, want 10 rows of {cols}"
    for i in range(n):
        col, r = divmod(i, 10)
        cell = g[2 + 30 * r:30 + 30 * r, 2 + 30 * col:30 + 30 * col]
        assert np.array_equal(cell, a[i]), f"grid cell {i} differs from npy[{i}]"
    print(f"ok: npy [{n},28,28,1], {n} PNGs with class metadata and the grid (a row per class) agree")
elif cmd == "same":  # same A B: identical samples
    a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
    assert a.shape == b.shape and np.array_equal(a, b), f"{sys.argv[2]} != {sys.argv[3]}"
elif cmd == "differ":  # differ A B: every sample differs
    a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
    assert a.shape == b.shape and all(not np.array_equal(x, y) for x, y in zip(a, b)), \
        f"{sys.argv[2]} and {sys.argv[3]} share samples"
elif cmd == "differ_any":  # differ_any A B: not identical (an untrained net saturates many pixels)
    a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
    assert a.shape == b.shape and not np.array_equal(a, b), f"{sys.argv[2]} == {sys.argv[3]}"
elif cmd == "preview":  # preview DIR N: DIR holds preview.png alone, a gray grid of N cells
    d, n = sys.argv[2], int(sys.argv[3])
    assert os.listdir(d) == ["preview.png"], f"{d}: {os.listdir(d)} (a temporary file left?)"
    g, _ = decode(os.path.join(d, "preview.png"))
    cells = ((g.shape[0] - 2) // 30) * ((g.shape[1] - 2) // 30)
    assert g.shape[2] == 1 and cells >= n and (g.shape[0] - 2) % 30 == 0, f"preview grid {g.shape}"
    print(f"ok: preview grid {g.shape}")
elif cmd == "npy":  # npy FILE N
    check_npy(sys.argv[2], int(sys.argv[3]))
PYEOF
check() { "$PY" "$tmp/check.py" "$@" || fail "check $*"; }

# Not -q: the summary line (network evaluations) is read from stderr.
base=(--config "$tmp/tiny.json" --weights "$W" --classes all --n 20)
run "$UVIT" sample "${base[@]}" --seed 3 --out "$tmp/grid.png" --npy "$tmp/s.npy" --dir "$tmp/d"
[ "$(evals)" = 5 ] || fail "default sampler: $(evals) network evaluations, want sample_steps 5"
check outputs "$tmp/s.npy" "$tmp/d" "$tmp/grid.png" 20
run "$UVIT" sample "${base[@]}" --seed 3 --npy "$tmp/s_again.npy"
check same "$tmp/s.npy" "$tmp/s_again.npy"
run "$UVIT" sample "${base[@]}" --seed 4 --npy "$tmp/s_seed4.npy"
check differ "$tmp/s.npy" "$tmp/s_seed4.npy"
# Mini-batching: sample i's noise depends only on (seed, i), also for the stochastic samplers.
run "$UVIT" sample "${base[@]}" --seed 3 --batch 7 --npy "$tmp/s_b7.npy"
[ "$(evals)" = 15 ] || fail "--batch 7: $(evals) network evaluations, want 3 batches x 5"
check same "$tmp/s.npy" "$tmp/s_b7.npy"
for s in ddpm euler-maruyama; do
  run "$UVIT" sample "${base[@]}" --sampler $s --steps 10 --batch 20 --npy "$tmp/${s}_b20.npy"
  run "$UVIT" sample "${base[@]}" --sampler $s --steps 10 --batch 7 --npy "$tmp/${s}_b7.npy"
  check same "$tmp/${s}_b20.npy" "$tmp/${s}_b7.npy"
done
# Guidance changes the samples; --class K gives every sample class K.
run "$UVIT" sample "${base[@]}" --seed 3 --cfg-scale 0 --npy "$tmp/s_noguide.npy"
check differ_any "$tmp/s.npy" "$tmp/s_noguide.npy"
run "$UVIT" sample --config "$tmp/tiny.json" --weights "$W" --class 0 --n 20 --seed 3 -q --npy "$tmp/c0.npy"
"$PY" -c "import numpy as np, sys; a, b = np.load(sys.argv[1]), np.load(sys.argv[2]);
assert np.array_equal(a[::10], b[::10]) and not np.array_equal(a[1::10], b[1::10])" "$tmp/s.npy" "$tmp/c0.npy" ||
  fail "--class 0 does not match the class-0 samples of --classes all"

# Every sampler runs the requested number of network evaluations and gives usable images.
samplers=("euler-maruyama --steps 20:20" "euler-ode --steps 20:20" "dpm-solver:5" "dpm-solver --steps 12:12"
  "dpm-solver++ --set schedule=discrete_sd:5" "dpm-solver++2m:5" "ddpm --steps 20:20" "ddim --steps 10:10")
i=0
for spec in "${samplers[@]}"; do
  args=${spec%:*} want=${spec##*:}
  # shellcheck disable=SC2086
  run "$UVIT" sample "${base[@]}" --seed 3 --sampler $args --npy "$tmp/smp$i.npy"
  [ "$(evals)" = "$want" ] || fail "--sampler $args: $(evals) network evaluations, want $want"
  check npy "$tmp/smp$i.npy" 20
  i=$((i+1))
done
check differ_any "$tmp/smp0.npy" "$tmp/smp1.npy"  # SDE vs ODE
check differ_any "$tmp/smp6.npy" "$tmp/smp7.npy"  # DDPM vs DDIM
[ $fails -eq 0 ] && echo "ok: ${#samplers[@]} sampler runs"
run "$UVIT" sample --config "$tmp/uncond.json" --weights "$tmp/urun/nnet_ema.safetensors" --n 5 -q --npy "$tmp/u.npy"
check npy "$tmp/u.npy" 5

# Outputs into folders that do not exist yet: created (checked before sampling, not after).
run "$UVIT" sample "${base[@]}" -q --seed 3 --npy "$tmp/new/sub/s.npy" --out "$tmp/new2/g.png" --dir "$tmp/new3/d"
check same "$tmp/s.npy" "$tmp/new/sub/s.npy"
[ -s "$tmp/new2/g.png" ] && [ -s "$tmp/new3/d/000019.png" ] || fail "outputs in new folders missing"
# -o with a printf pattern (sd.cpp's habit): one PNG per sample, equal to the --dir files; --npz
# holds arr_0 equal to the --npy array (the ADM evaluator's layout).
run "$UVIT" sample "${base[@]}" -q --seed 3 -o "$tmp/pat/img_%03d_%%.png" --npz "$tmp/s.npz"
"$PY" - "$tmp" <<'PYEOF' || fail "-o pattern / --npz"
import os, sys
import numpy as np
t = sys.argv[1]
names = sorted(os.listdir(t + "/pat"))
assert names == [f"img_{i:03d}_%.png" for i in range(20)], names
for i in range(20):
    a, b = open(f"{t}/pat/{names[i]}", "rb").read(), open(f"{t}/d/{i:06d}.png", "rb").read()
    assert a == b, f"{names[i]} differs from --dir's {i:06d}.png"
z = np.load(t + "/s.npz")
assert list(z.keys()) == ["arr_0"] and np.array_equal(z["arr_0"], np.load(t + "/s.npy")), "npz"
print("ok: -o img_%03d_%%.png writes 20 PNGs equal to --dir's; --npz arr_0 equals --npy")
PYEOF
expect_error "'%s' is not an index conversion" "$UVIT" sample "${base[@]}" -o "$tmp/x_%s.png"
expect_error "more than one %d" "$UVIT" sample "${base[@]}" -o "$tmp/x_%d_%d.png"
expect_error "writes .npz only" "$UVIT" sample "${base[@]}" --npz "$tmp/x.npy"
# A training run's folder as --config (its config.json) gives the same samples.
run "$UVIT" sample --config "$tmp/run" --weights "$W" --classes all --n 20 --seed 3 -q --npy "$tmp/s_run.npy"
check same "$tmp/s.npy" "$tmp/s_run.npy"

# Weights holding a NaN: an error, not black images.
"$PY" - "$W" "$tmp/nan.safetensors" <<'PYEOF'
import json, struct, sys
d = bytearray(open(sys.argv[1], "rb").read())
(n,) = struct.unpack("<Q", d[:8])
b, e = json.loads(d[8:8 + n])["pos_embed"]["data_offsets"]
d[8 + n + b:8 + n + b + 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(d)
PYEOF
expect_error "non-finite values" "$UVIT" sample --config "$tmp/tiny.json" --weights "$tmp/nan.safetensors" \
  --classes all --n 4 --npy "$tmp/e.npy" -q

# --preview: the running mini-batch's x0 as a grid PNG, replaced atomically every 2 evaluations
# (20 samples in batches of 7: the last written is the last batch's 6); the samples unchanged.
run "$UVIT" sample "${base[@]}" --seed 3 --batch 7 --preview "$tmp/pv/preview.png" --preview-interval 2 \
  --npy "$tmp/s_pv.npy"
check same "$tmp/s.npy" "$tmp/s_pv.npy"
check preview "$tmp/pv" 6
expect_error "p.jpg: writes .png only" "$UVIT" sample "${base[@]}" --npy "$tmp/e.npy" --preview "$tmp/p.jpg"
expect_error "--preview-interval" "$UVIT" sample "${base[@]}" --npy "$tmp/e.npy" --preview "$tmp/p.png" --preview-interval 0

# Bad requests: one line, exit code 1, nothing written.
expect_error "--cfg-scale must be a finite number, got nan" "$UVIT" sample "${base[@]}" --cfg-scale nan --npy "$tmp/e.npy"
expect_error "--cfg-scale must be a finite number, got inf" "$UVIT" sample "${base[@]}" --cfg-scale inf --npy "$tmp/e.npy"
expect_error "--cfg-scale must be >= 0, got -1" "$UVIT" sample "${base[@]}" --cfg-scale -1 --npy "$tmp/e.npy"
expect_error "expects a number" "$UVIT" sample "${base[@]}" --set sample.scale=nan --npy "$tmp/e.npy"
expect_error "expects a number" "$UVIT" sample "${base[@]}" --set sample.scale=1e999 --npy "$tmp/e.npy"
expect_error "--steps must be >= 1, got 0" "$UVIT" sample "${base[@]}" --steps 0 --npy "$tmp/e.npy"
printf x >"$tmp/afile"
expect_error "is a file, not a folder" "$UVIT" sample "${base[@]}" --npy "$tmp/e.npy" --out "$tmp/afile/g.png"
expect_error "is a file, not a folder" "$UVIT" sample "${base[@]}" --npy "$tmp/e.npy" --dir "$tmp/afile"
expect_error "writes .png only" "$UVIT" sample "${base[@]}" --npy "$tmp/e.npy" --out "$tmp/g.jpg"
expect_error "nnet_ema" "$UVIT" sample --config "$tmp/tiny.json" --weights "$tmp/run/train_state.safetensors" \
  --classes all --npy "$tmp/e.npy"
expect_error "give --class K or --classes all" "$UVIT" sample --config "$tmp/tiny.json" --weights "$W" \
  --prompt "a shoe" --npy "$tmp/e.npy"
expect_error "'heun' is a flow sampler (flow presets); config tiny (schedule continuous_vp) takes euler-maruyama" "$UVIT" sample "${base[@]}" --sampler heun --npy "$tmp/e.npy"
expect_error "--class 99 is outside" "$UVIT" sample --config "$tmp/tiny.json" --weights "$W" --class 99 --npy "$tmp/e.npy"
expect_error "--class 10 is outside" "$UVIT" sample --config "$tmp/tiny.json" --weights "$W" --class 10 --npy "$tmp/e.npy"
expect_error "missing.safetensors" "$UVIT" sample --config "$tmp/tiny.json" --weights "$tmp/missing.safetensors" \
  --classes all --npy "$tmp/e.npy"
expect_error "is class-conditional" "$UVIT" sample --config "$tmp/tiny.json" --weights "$W" --npy "$tmp/e.npy"
expect_error "not class-conditional" "$UVIT" sample --config "$tmp/uncond.json" \
  --weights "$tmp/urun/nnet_ema.safetensors" --class 1 --npy "$tmp/e.npy"
expect_error "not class-conditional" "$UVIT" sample --config "$tmp/uncond.json" \
  --weights "$tmp/urun/nnet_ema.safetensors" --classes all --npy "$tmp/e.npy"
expect_error "unconditional" "$UVIT" sample --config "$tmp/uncond.json" \
  --weights "$tmp/urun/nnet_ema.safetensors" --cfg-scale 2 --npy "$tmp/e.npy"
expect_error "nothing to write" "$UVIT" sample "${base[@]}"
expect_error "pos_embed" "$UVIT" sample --config "$tmp/uncond.json" --weights "$W" --npy "$tmp/e.npy"
[ ! -e "$tmp/e.npy" ] && [ ! -e "$tmp/g.jpg" ] || fail "an output was written despite errors"
exit $fails
