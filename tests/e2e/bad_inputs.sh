#!/usr/bin/env bash
# Corrupt, truncated and mismatched inputs give a one-line error and exit code 1, never a crash.
set -uo pipefail
UVIT=$1 FX=$2
source tests/e2e/data/lib.sh
c=cond_p2
base=(--config "$FX/$c.json" --t "$FX/${c}_t.npy" --y "$FX/${c}_y.npy" --out "$tmp/o.npy")
head -c 1000 "$FX/$c.pth" >"$tmp/trunc.pth"
head -c 3000 "$FX/$c.safetensors" >"$tmp/trunc.safetensors"
printf 'garbage' >"$tmp/garbage.safetensors"
head -c 90 "$FX/${c}_x.npy" >"$tmp/trunc_x.npy"
printf '{"name": "uvit", "img_size": 8, "patch_size": 3}' >"$tmp/badcfg.json"
printf '{"name": "uvit", "img_size": ' >"$tmp/brokencfg.json"
expect_error "trunc.pth" "$UVIT" predict "${base[@]}" --x "$FX/${c}_x.npy" --weights "$tmp/trunc.pth"
expect_error "trunc.safetensors" "$UVIT" predict "${base[@]}" --x "$FX/${c}_x.npy" --weights "$tmp/trunc.safetensors"
expect_error "garbage.safetensors" "$UVIT" predict "${base[@]}" --x "$FX/${c}_x.npy" --weights "$tmp/garbage.safetensors"
expect_error "trunc_x.npy" "$UVIT" predict "${base[@]}" --x "$tmp/trunc_x.npy" --weights "$FX/$c.pth"
expect_error "missing.pth" "$UVIT" predict "${base[@]}" --x "$FX/${c}_x.npy" --weights "$tmp/missing.pth"
expect_error "does not match" "$UVIT" predict "${base[@]}" --x "$FX/t2i_x.npy" --weights "$FX/$c.pth"
expect_error "the config expects" "$UVIT" predict --config "$FX/$c.json" --x "$FX/${c}_x.npy" --t "$FX/${c}_t.npy" --y "$FX/${c}_y.npy" --out "$tmp/o.npy" --weights "$FX/uncond_p4_h64.pth"
expect_error "patch_size" "$UVIT" info --config "$tmp/badcfg.json"
expect_error "brokencfg.json" "$UVIT" info --config "$tmp/brokencfg.json"
expect_error "not found" "$UVIT" info --config no_such_preset
# Command-line errors: one line too.
expect_error "gpu not in" "$UVIT" autoencoder decode --device gpu -w "$tmp/missing" --in x --out "$tmp/o.npy"
expect_error "required" "$UVIT" predict --config "$FX/$c.json"
expect_error "not expected" "$UVIT" info --config "$FX/$c.json" stray
# Without a GPU, --device cuda fails with one line (not compiled in, or no usable device).
if ! nvidia-smi >/dev/null 2>&1; then
  expect_error "cuda" "$UVIT" autoencoder decode --device cuda -w "$FX/$c.pth" --in "$FX/${c}_x.npy" --out "$tmp/o.npy"
  expect_error "cuda" "$UVIT" encode-text --device cuda --clip "$tmp/missing" --out "$tmp/o.npy" -- hi
  expect_error "cuda" "$UVIT" fid-features "$FX/${c}_x.npy" --device cuda --inception "$FX/$c.pth" --out "$tmp/o.npy"
fi
[ ! -e "$tmp/o.npy" ] || fail "an output was written despite errors"
exit $fails
