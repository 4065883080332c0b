#!/usr/bin/env bash
# The fuzzing campaign's findings and the bad inputs it probes (docs/fuzzing.md), at the CLI: each
# exits 1 with one line naming the file or field, never a crash.
set -uo pipefail
UVIT=$1 FX=$2
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
c=cond_p2
nest() { "$PY" -c "import sys; d = int(sys.argv[1]); print('[' * d + ']' * d, end='')" "$1"; }
smp=(sample -c "$FX/$c.json" --class 1 --n 1)

# A truncated checkpoint and a safetensors header nested 2 million levels deep, given to sample
# (the nesting overflowed the stack inside the JSON parser: exit 139).
head -c 1500 "$FX/$c.pth" >"$tmp/trunc.pth"
head -c 2000 "$FX/$c.safetensors" >"$tmp/trunc.safetensors"
"$PY" - "$tmp/deep.safetensors" <<'PYEOF'
import struct, sys
d = 2000000
h = ('{"a": {"dtype": "F32", "shape": %s, "data_offsets": [0, 0]}}' % ("[" * d + "]" * d)).encode()
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h)
PYEOF
expect_error "trunc.pth: truncated: a zip archive without its end" "$UVIT" "${smp[@]}" -w "$tmp/trunc.pth" --npy "$tmp/o.npy"
expect_error "trunc.safetensors: truncated: header says" \
  "$UVIT" "${smp[@]}" -w "$tmp/trunc.safetensors" --npy "$tmp/o.npy"
expect_error "deep.safetensors: JSON nested deeper than 256 levels" \
  "$UVIT" "${smp[@]}" -w "$tmp/deep.safetensors" --npy "$tmp/o.npy"

# Presets: a wrong-typed field, a wrong-typed train.mode, and 3 million levels of nesting.
printf '{"nnet": {"name": "uvit", "img_size": 8, "patch_size": 2, "depth": "12"}}' >"$tmp/typed.json"
expect_error 'config typed: nnet.depth: expected an integer, got a string "12"' "$UVIT" info --config "$tmp/typed.json"
printf '{"nnet": {"name": "uvit", "img_size": 8, "patch_size": 2}, "train": {"mode": 1}}' >"$tmp/mode.json"
expect_error "config mode: train.mode: expected a string, got an integer 1" "$UVIT" info --config "$tmp/mode.json"
{ printf '{"nnet": '; nest 3000000; printf '}'; } >"$tmp/deepcfg.json"
expect_error "deepcfg.json: JSON nested deeper than 256 levels" "$UVIT" info --config "$tmp/deepcfg.json"

# Images: a truncated PNG and the JPEG whose Huffman table overran stb_image 2.27's arrays, in an
# image folder read by fid-features.
inception_weights W "$FX"
mkdir -p "$tmp/imgs" "$tmp/jpgs"
"$UVIT" "${smp[@]}" -w "$FX/$c.pth" --steps 2 -o "$tmp/good.png" -q 2>/dev/null ||
  fail "sample for the PNG test"
head -c 100 "$tmp/good.png" >"$tmp/imgs/cut.png"
# The fuzzer's DHT with 352 codes, padded to its declared length and ended by EOI so that it
# passes the truncation check and reaches stb (tests/unit/test_fuzz_regressions.cpp).
{ printf '\xff\xd8\xff\xc4\x00\x1d\x00\x61\xff'; head -c 24 /dev/zero; printf '\xff\xd9'; } \
  >"$tmp/jpgs/dht.jpg"
expect_error "cut.png: cannot decode image" "$UVIT" fid-features "$tmp/imgs" --inception "$W" --out "$tmp/f.npy"
expect_error "dht.jpg: cannot decode image (Corrupt JPEG)" "$UVIT" fid-features "$tmp/jpgs" --inception "$W" --out "$tmp/f.npy"

[ ! -e "$tmp/o.npy" ] && [ ! -e "$tmp/f.npy" ] || fail "an output was written despite errors"
exit $fails
