#!/usr/bin/env bash
# Training 2N steps straight and N steps + `--resume` to 2N give bit-identical weights, EMA and
# optimizer state; run-directory errors are one line; snapshots, log, loss plot and eval grids.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# A tiny class-conditional U-ViT on the built-in Fashion-MNIST: a step takes milliseconds.
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.batch_size=4 train.eval_interval=4 train.save_interval=3
N=6
A=$tmp/A B=$tmp/B
common=(--config "$tmp/tiny.json" --batch 8 --set train.keep_snapshots=2 -q)
run "$UVIT" train "${common[@]}" --out "$A" --steps $((2 * N))
run "$UVIT" train "${common[@]}" --out "$B" --steps $N
# Resume without --config: the run's own config.json (batch 8, keep 2) applies.
run "$UVIT" train --out "$B" --resume --steps $((2 * N)) -q
grep -q "at step $((2 * N))" "$tmp/out" || fail "resume did not report step $((2 * N)): $(cat "$tmp/out")"

# Tensors (names, dtypes, shapes, bytes) and the step metadata must match exactly.
"$PY" - "$A" "$B" "$N" <<'PYEOF' || fails=$((fails+1))
import json, os, struct, sys, zlib
import numpy as np

def load(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    meta = head.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    for k, v in head.items():
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], tuple(v["shape"]), body[b:e])
    return out, meta

a_dir, b_dir, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
bad = 0
for sub in ["", "ckpts/%d/" % (2 * N), "ckpts/%d/" % (2 * N - 3)]:
    bad_before = bad
    for f in ["nnet.safetensors", "nnet_ema.safetensors", "train_state.safetensors"]:
        ta, ma = load(os.path.join(a_dir, sub + f))
        tb, mb = load(os.path.join(b_dir, sub + f))
        if sorted(ta) != sorted(tb):
            print("FAIL:", sub + f, "tensor names differ"); bad += 1; continue
        diff = [k for k in ta if ta[k] != tb[k]]
        if diff:
            k = diff[0]
            x = np.frombuffer(ta[k][2], np.float32); y = np.frombuffer(tb[k][2], np.float32)
            print("FAIL:", sub + f, len(diff), "of", len(ta), "tensors differ, e.g.", k,
                  "max |diff|", float(np.abs(x - y).max()) if x.shape == y.shape else "shape")
            bad += 1
        if ma.get("step") != mb.get("step") or ma.get("step") != str(int(sub.split("/")[1]) if sub else 2 * N):
            print("FAIL:", sub + f, "step metadata", ma.get("step"), mb.get("step")); bad += 1
        if f == "train_state.safetensors":
            for k in ["loader_seed", "loader_epoch", "loader_offset", "config"]:
                if ma.get(k) != mb.get(k):
                    print("FAIL:", sub + f, k, ma.get(k), mb.get(k)); bad += 1
    if bad == bad_before:
        print("ok: identical", sub or "run", "weights, EMA and optimizer state")
# The straight run must actually have trained: weights moved away from the step-N snapshot? Use
# the EMA vs raw weights, which are equal at init and differ after any update.
w, _ = load(os.path.join(a_dir, "nnet.safetensors"))
e, _ = load(os.path.join(a_dir, "nnet_ema.safetensors"))
if all(w[k] == e[k] for k in w):
    print("FAIL: weights equal their EMA after training (no update happened?)"); bad += 1

# log.jsonl: steps 2, 4, ..., 2N with finite losses; the resumed log repeats the straight one.
def log(d):  # loss rows (a resumed log also records the options changed on --resume)
    rows = [json.loads(l) for l in open(os.path.join(d, "log.jsonl")) if l.strip()]
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]
la, lb = log(a_dir), log(b_dir)
if [s for s, _ in la] != list(range(2, 2 * N + 1, 2)) or not all(np.isfinite(l) for _, l in la):
    print("FAIL: log.jsonl of the straight run:", la); bad += 1
if la != lb:
    print("FAIL: log.jsonl losses differ between straight and resumed runs:", la, lb); bad += 1

# PNGs: signature, then chunks with valid CRCs up to IEND.
def check_png(p):
    d = open(p, "rb").read()
    assert d[:8] == b"\x89PNG\r\n\x1a\n", p + ": bad PNG signature"
    i, types = 8, []
    while i < len(d):
        (n,) = struct.unpack(">I", d[i:i + 4]); t = d[i + 4:i + 8]
        assert zlib.crc32(t + d[i + 8:i + 8 + n]) == struct.unpack(">I", d[i + 8 + n:i + 12 + n])[0], p + ": CRC"
        types.append(t); i += 12 + n
    assert types[0] == b"IHDR" and types[-1] == b"IEND", p + ": chunks " + str(types)
for d in [a_dir, b_dir]:
    pngs = [os.path.join(d, "loss.png")] + [os.path.join(d, "samples", f) for f in sorted(os.listdir(os.path.join(d, "samples")))]
    try:
        for p in pngs: check_png(p)
        print("ok:", len(pngs), "valid PNGs in", os.path.basename(d))
    except AssertionError as ex:
        print("FAIL:", ex); bad += 1
sys.exit(bad)
PYEOF

# Evaluation grids at eval_interval (4, 8) and at the end (12); the resumed run also at N.
want="step_0000004.png step_0000008.png step_0000012.png"
[ "$(ls "$A/samples" | xargs)" = "$want" ] || fail "A/samples holds: $(ls "$A/samples" | xargs)"
[ "$(ls "$B/samples" | xargs)" = "step_0000004.png step_0000006.png step_0000008.png step_0000012.png" ] ||
  fail "B/samples holds: $(ls "$B/samples" | xargs)"
# Snapshots every 3 steps, only the last 2 kept (also across the resume in B).
for d in "$A" "$B"; do
  [ "$(ls "$d/ckpts" | sort -n | xargs)" = "9 12" ] || fail "$d/ckpts holds: $(ls "$d/ckpts" | xargs)"
done

# Run-directory errors: one line, exit code 1, and the run is left alone.
before=$(md5sum "$A"/*.safetensors)
expect_error "--resume" "$UVIT" train --config "$tmp/tiny.json" --out "$A" --steps 14 -q
[ "$before" = "$(md5sum "$A"/*.safetensors)" ] || fail "a refused train changed $A"
mkdir "$tmp/empty"
expect_error "holds no training run" "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/empty" --resume -q
expect_error "config.json" "$UVIT" train --out "$tmp/empty2" --resume -q
expect_error "--config" "$UVIT" train --out "$tmp/empty3" -q
exit $fails
