#!/usr/bin/env bash
# `uvit convert IN OUT.pth` (docs/formats.md, "Writing .pth"): torch.load, plain and
# weights_only=True, reads our files as the safetensors' tensors for every --dtype and --wrap; DiT's
# find_model + load_state_dict(strict=True) loads --wrap ema; an --autoencoder conversion under
# "state_dict" holds the official tensors; .pth -> .safetensors gives the same
# bits back and the same samples; the refusals are one line and leave nothing behind.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
CHECK=tests/reference/pth_write_check.py
c=dit_p2
A=$tmp/a.safetensors
run "$UVIT" convert "$FX/$c.pth" "$A" -c "$FX/$c.json"  # the twin's weights

# Every dtype and layout, against safetensors written with the same --dtype.
triples=()
for d in f32 f16 bf16; do
  run "$UVIT" convert "$A" "$tmp/ref_$d.safetensors" --dtype $d
  for w in none ema model state_dict; do
    run "$UVIT" convert "$A" "$tmp/${d}_$w.pth" --dtype $d --wrap $w -c "$FX/$c.json"
    grep -q "^wrote $tmp/${d}_$w.pth: " "$tmp/out" || fail "convert: $(cat "$tmp/out")"
    triples+=("$tmp/ref_$d.safetensors" "$tmp/${d}_$w.pth" $w)
  done
done
run "$PY" $CHECK load "${triples[@]}"
cat "$tmp/out"
run "$UVIT" convert "$A" "$tmp/w.pt"  # .pt too; --wrap none is the default
run "$PY" $CHECK load "$tmp/ref_f32.safetensors" "$tmp/w.pt" none
run "$PY" $CHECK dit "$tmp/f32_ema.pth" "$FX/$c.json" "$A"
cat "$tmp/out"

# A diffusers VAE renamed by --autoencoder, under "state_dict" as init_from_ckpt takes it
# (docs/autoencoder.md), equals the official-layout file's tensors.
echo '{"ddconfig": {"ch": 32, "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": []}}' \
  >"$tmp/ae.json"
AE=tests/reference/autoencoder_torch.py
run "$PY" $AE save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 5
run "$PY" $AE to-diffusers --config "$tmp/ae.json" --weights "$tmp/ae.pth" --style new \
  --out "$tmp/ae.bin"
run "$UVIT" convert "$tmp/ae.pth" "$tmp/ae_ref.safetensors" --autoencoder -c "$tmp/ae.json"
run "$UVIT" convert "$tmp/ae.bin" "$tmp/ae_ldm.pth" --autoencoder -c "$tmp/ae.json" --wrap state_dict
run "$PY" $CHECK load "$tmp/ae_ref.safetensors" "$tmp/ae_ldm.pth" state_dict
cat "$tmp/out"

# Back to safetensors: the same bits, whatever the layout, and the reader names the entry.
for w in none ema model state_dict; do
  run "$UVIT" convert "$tmp/f32_$w.pth" "$tmp/back_$w.safetensors"
  run "$PY" $CHECK same "$A" "$tmp/back_$w.safetensors"
done
run "$UVIT" convert "$tmp/bf16_ema.pth" "$tmp/back_bf16.safetensors"
run "$PY" $CHECK same "$tmp/ref_bf16.safetensors" "$tmp/back_bf16.safetensors"
run "$UVIT" info "$tmp/f32_ema.pth"
grep -q "entry *ema" "$tmp/out" || fail "info of --wrap ema: $(cat "$tmp/out")"

# The same images from the .pth as from the safetensors it was written from.
S=(sample --config "$FX/$c.json" --n 2 --class 3 --sampler ddim --steps 3 --seed 7)
run "$UVIT" "${S[@]}" --weights "$A" --npy "$tmp/s_st.npy"
run "$UVIT" "${S[@]}" --weights "$tmp/f32_none.pth" --npy "$tmp/s_pth.npy"
cmp -s "$tmp/s_st.npy" "$tmp/s_pth.npy" || fail "samples from the .pth differ"

# Refusals: one line, exit 1, no file and no temporary left.
cp "$tmp/f32_none.pth" "$tmp/in.pth"
before=$(md5sum "$tmp/in.pth")
expect_error "is the input" "$UVIT" convert "$tmp/in.pth" "$tmp/in.pth"
expect_error "is the input" "$UVIT" convert "$tmp/in.pth" "$tmp/./in.pth" --wrap ema
[ "$before" = "$(md5sum "$tmp/in.pth")" ] || fail "a refused convert changed its input"
run "$UVIT" convert "$A" "$tmp/q8.safetensors" -c "$FX/$c.json" --quantize int8
expect_error "official code cannot load" "$UVIT" convert "$tmp/q8.safetensors" "$tmp/bad1.pth"
expect_error "official code cannot load" "$UVIT" convert "$A" "$tmp/bad2.pth" -c "$FX/$c.json" \
  --quantize int8
expect_error "only for a .pth or .pt OUT" "$UVIT" convert "$A" "$tmp/bad3.safetensors" --wrap ema
expect_error "unknown layout 'emma'" "$UVIT" convert "$A" "$tmp/bad4.pth" --wrap emma
expect_error "writes .safetensors or .pth or .pt only" "$UVIT" convert "$A" "$tmp/bad5.bin"
mkdir "$tmp/dir.pth"
expect_error "is a folder" "$UVIT" convert "$A" "$tmp/dir.pth"
expect_error "missing tensor" "$UVIT" convert "$A" "$tmp/bad6.pth" -c "$FX/skipdit_p2.json"
expect_error "nope.safetensors" "$UVIT" convert "$tmp/nope.safetensors" "$tmp/bad7.pth"
for i in 1 2 3 4 5 6 7; do
  [ ! -e "$tmp/bad$i.pth" ] && [ ! -e "$tmp/bad$i.safetensors" ] || fail "a refused convert wrote bad$i"
done
ls "$tmp" | grep -q "\.tmp\." && fail "a temporary file was left: $(ls "$tmp" | grep "\.tmp\.")"
[ $fails -eq 0 ] && echo "ok: .pth written for torch.load in every dtype and layout, round trip exact"
exit $fails
