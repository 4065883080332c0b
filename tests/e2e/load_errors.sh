#!/usr/bin/env bash
# The strict load's error on another network's quantised weights names the preset the file
# records (`convert --quantize -c C` writes it; docs/formats.md), as it does for fp32 weights
# (tests/e2e/ux_audit8b.sh): it named the first tensor that differs and stopped there
# (docs/ux_audit.md, "Found in round 8"). A file that records nothing keeps the loader's words.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
cd "$tmp" || exit 1
"$PY" "$OLDPWD/bench/random_weights.py" "$OLDPWD/configs/fmnist_dit_tiny.json" dit.pth >/dev/null ||
  fail "the DiT weights"
run "$UVIT" convert --quantize int8 -c fmnist_dit_tiny dit.pth q8.safetensors
run "$UVIT" convert --quantize int4 -c fmnist_dit_tiny dit.pth q4.safetensors
# The same int8 file as one quantised before the config was recorded: its metadata without "config".
"$PY" - <<'PYEOF' || fail "the file without a recorded config"
import json, struct
b = open("q8.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
assert h["__metadata__"].pop("config") == "fmnist_dit_tiny"
t = json.dumps(h).encode()
t += b" " * (-len(t) % 8)
open("q8old.safetensors", "wb").write(struct.pack("<Q", len(t)) + t + b[8 + n:])
PYEOF
cut="tensor 'pos_embed' has shape \[1, 49, 128\], the config expects \[1, 51, 128\]"
hint="; the file holds preset fmnist_dit_tiny's weights (recorded when quantised): --config fmnist_dit_tiny takes it"
for q in q8 q4; do
  expect_error "^uvit: error: $q.safetensors: $cut$hint$" \
    "$UVIT" sample --config fmnist_uvit_tiny --weights $q.safetensors --class 1 --steps 2 --out x.png
done
expect_error "^uvit: error: q8old.safetensors: $cut$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights q8old.safetensors --class 1 --steps 2 --out x.png
# Its own config loads it, and the hint is never about the file's own network: a broken scale is
# the file's fault, said alone.
run "$UVIT" sample --config fmnist_dit_tiny --weights q8.safetensors --class 1 --steps 2 --out ok.png
"$PY" - <<'PYEOF' || fail "the file with a negative scale"
import json, struct
b = bytearray(open("q8.safetensors", "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
at = 8 + n + h["x_embedder.proj.weight_scale"]["data_offsets"][0]
b[at:at + 4] = struct.pack("<f", -1.0)
open("q8neg.safetensors", "wb").write(b)
PYEOF
expect_error "^uvit: error: q8neg.safetensors: tensor 'x_embedder.proj.weight_scale' holds a negative or non-finite scale -1$" \
  "$UVIT" sample --config fmnist_dit_tiny --weights q8neg.safetensors --class 1 --steps 2 --out x.png
[ ! -e x.png ] || fail "a refused load wrote x.png"
exit $fails
