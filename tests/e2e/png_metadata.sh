#!/usr/bin/env bash
# PNG metadata end to end: `uvit sample` writes A1111 `parameters` and `uvit-params` chunks on
# per-image files and grids; Pillow reads the same text; our Python port of A1111's
# parse_generation_parameters and `uvit info IMAGE --json` (the C++ port) agree field by field;
# `uvit info` on a PNG without them is a one-line error.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/meta_model.json" train.n_steps=2 lr_scheduler.warmup_steps=1
run "$UVIT" train --config "$tmp/meta_model.json" --out "$tmp/run" -q
run "$UVIT" sample --config "$tmp/meta_model.json" --weights "$tmp/run/nnet_ema.safetensors" -q \
  --classes 7,0 --n 3 --seed 11 --guidance 1.5 --sampler "DPM++ 2M" --dir "$tmp/d" --out "$tmp/grid.png"
[ "$(ls "$tmp/d" | xargs)" = "000000.png 000001.png 000002.png" ] || fail "file names: $(ls "$tmp/d")"
run "$UVIT" info "$tmp/d/000001.png"
grep -q '^T-shirt/top$' "$tmp/out" && grep -q '^Steps: 4, Sampler: dpm-solver++2m, CFG scale: 1.5, UViT scale: 0.5, Seed: 11, Index: 1, Size: 28x28, Model hash: [0-9a-f]\{10\}, Model: meta_model, Weights: nnet_ema.safetensors, Class: 0, ' "$tmp/out" &&
  grep -q '^uvit-params: {"class":0,' "$tmp/out" || { fail "uvit info text"; cat "$tmp/out"; }
for f in d/000000.png d/000001.png d/000002.png grid.png; do
  run "$UVIT" info "$tmp/$f" --json
  cp "$tmp/out" "$tmp/$(basename $f).json"
done
"$PY" - "$tmp" <<'PYEOF' || fail "Pillow / Python parser checks"
import json, os, sys
sys.path.insert(0, "tests/e2e/data")
from a1111_infotext import parse_generation_parameters
from PIL import Image
tmp = sys.argv[1]
sha = __import__("hashlib").sha256(open(os.path.join(tmp, "run", "nnet_ema.safetensors"), "rb").read()).hexdigest()
for i, (name, cls, cname) in enumerate([("000000", 7, "Sneaker"), ("000001", 0, "T-shirt/top"), ("000002", 7, "Sneaker")]):
    im = Image.open(os.path.join(tmp, "d", name + ".png"))
    info = json.load(open(os.path.join(tmp, name + ".png.json")))
    assert im.info["parameters"] == info["parameters"], (im.info, info)
    assert json.loads(im.info["uvit-params"]) == info["uvit-params"]
    ours = parse_generation_parameters(im.info["parameters"])
    assert ours == info["fields"], (ours, info["fields"])  # Python and C++ ports agree
    assert ours["Prompt"] == cname and ours["Class"] == str(cls) and ours["Index"] == str(i), ours
    assert ours["Seed"] == "11" and ours["CFG scale"] == "1.5" and ours["Sampler"] == "dpm-solver++2m"
    assert ours["Model hash"] == sha[:10], (ours["Model hash"], sha)
    rec = info["uvit-params"]
    assert rec["weights"] == {"name": "nnet_ema.safetensors", "sha256": sha} and rec["seed"] == 11
    assert rec["index"] == i and rec["class"] == cls and rec["sampler"] == {"name": "dpm-solver++2m", "steps": 4}
    # What else changes the samples, for resuming --dir: the precision, the --batch asked (the
    # preset's 50, not capped at --n 3).
    assert rec["precision"] == "fp32" and rec["mini_batch"] == 50, rec
    assert tmp not in json.dumps(info), "a path in the metadata"
g = Image.open(os.path.join(tmp, "grid.png"))
gp = parse_generation_parameters(g.info["parameters"])
assert gp["Batch size"] == "3" and gp["Prompt"] == "Sneaker" and gp["Size-1"] == "28", gp
print("ok: Pillow reads the chunks; the Python and C++ parsers agree; hashes, classes, seeds")
PYEOF
# Training grids carry the parameters too (the in-memory weights have no file: no hash).
run "$UVIT" info "$tmp/run/samples/$(ls "$tmp/run/samples" | tail -1)" --json
grep -q '"Model":"meta_model"' "$tmp/out" && ! grep -q 'Model hash' "$tmp/out" || fail "training grid: $(cat "$tmp/out")"
"$PY" -c "from PIL import Image; Image.new('RGB', (2, 2)).save('$tmp/plain.png')"
expect_error "no generation parameters" "$UVIT" info "$tmp/plain.png"
expect_error "not a PNG" "$UVIT" info "$tmp/run/config.json"
# CLI habits: --class by name (case-insensitive) or synonym, near matches for an unknown name,
# --seed -1 printed and recorded, the class table.
M=(--config "$tmp/meta_model.json" --weights "$tmp/run/nnet_ema.safetensors")
run "$UVIT" sample "${M[@]}" --class "ANKLE boot" --n 1 --seed -1 --dir "$tmp/r"
seed=$(sed -n 's/^seed \([0-9]*\)$/\1/p' "$tmp/err")
[ -n "$seed" ] || fail "--seed -1 printed no seed: $(cat "$tmp/err")"
run "$UVIT" info "$tmp/r/000000.png"
grep -q "^Ankle boot$" "$tmp/out" && grep -q "Seed: $seed, Index: 0, .* Class: 9," "$tmp/out" ||
  fail "--class name / --seed -1 metadata: $(cat "$tmp/out")"
run "$UVIT" sample "${M[@]}" --class boot --n 1 --seed "$seed" -q --dir "$tmp/r2"
cmp -s "$tmp/r/000000.png" "$tmp/r2/000000.png" || fail "the printed seed does not reproduce the image"
expect_error "did you mean: Sneaker" "$UVIT" sample "${M[@]}" --class snaeker --npy "$tmp/e.npy"
run "$UVIT" info --config "$tmp/meta_model.json" --classes
[ "$(sed -n 8p "$tmp/out")" = "$(printf '7\t\tSneaker')" ] && [ "$(wc -l <"$tmp/out")" -eq 10 ] ||
  fail "info --classes: $(cat "$tmp/out")"
run "$UVIT" info --config imagenet256_uvit_huge --classes
[ "$(sed -n 208p "$tmp/out")" = "$(printf '207\tn02099601\tgolden retriever')" ] || fail "ImageNet table: $(sed -n 208p "$tmp/out")"
exit $fails
