#!/usr/bin/env bash
# The diffusers layout of the SD VAE (stabilityai/sd-vae-ft-ema, sd-vae-ft-mse:
# diffusion_pytorch_model.bin / .safetensors) through the CLI, on a kl-f8 layout at a small width
# (random weights, PyTorch twin): `uvit autoencoder decode|encode` read it as it is, in both
# attention styles, and `uvit convert --autoencoder` writes the official names; results are
# bit-identical to the official-layout file.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/autoencoder_torch.py
source tests/e2e/data/lib.sh

cat >"$tmp/ae.json" <<'EOF'
{"ddconfig": {"ch": 32, "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": []}}
EOF
run "$PY" $TWIN save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 5
for style in new old; do
  run "$PY" $TWIN to-diffusers --config "$tmp/ae.json" --weights "$tmp/ae.pth" --style $style \
    --out "$tmp/$style.bin"
done
"$PY" -c "
import numpy as np
rs = np.random.RandomState(2)
np.save('$tmp/z.npy', rs.randn(2, 4, 3, 5).astype(np.float32))
np.save('$tmp/img.npy', rs.uniform(-1, 1, (1, 3, 24, 40)).astype(np.float32))"
ae=(--config "$tmp/ae.json" -q)
run "$UVIT" autoencoder decode "${ae[@]}" -w "$tmp/ae.pth" --in "$tmp/z.npy" --out "$tmp/ref_dec.npy"
run "$UVIT" autoencoder encode "${ae[@]}" -w "$tmp/ae.pth" --in "$tmp/img.npy" --out "$tmp/ref_enc.npy"
for style in new old; do
  # as downloaded (.bin), as a diffusers-named .safetensors, and converted to the official names
  run "$UVIT" convert "$tmp/$style.bin" "$tmp/$style.safetensors"
  run "$UVIT" convert "$tmp/$style.bin" "$tmp/${style}_ldm.safetensors" --autoencoder --config "$tmp/ae.json"
  for w in "$style.bin" "$style.safetensors" "${style}_ldm.safetensors"; do
    run "$UVIT" autoencoder decode "${ae[@]}" -w "$tmp/$w" --in "$tmp/z.npy" --out "$tmp/dec.npy"
    cmp -s "$tmp/dec.npy" "$tmp/ref_dec.npy" && echo "ok: decode $w" || fail "decode with $w differs"
    run "$UVIT" autoencoder encode "${ae[@]}" -w "$tmp/$w" --in "$tmp/img.npy" --out "$tmp/enc.npy"
    cmp -s "$tmp/enc.npy" "$tmp/ref_enc.npy" && echo "ok: encode $w" || fail "encode with $w differs"
  done
done
# The converted file holds the official names, in the official order, with the same tensors as a
# conversion of the official-layout file.
run "$UVIT" convert "$tmp/ae.pth" "$tmp/ref.safetensors" --autoencoder --config "$tmp/ae.json"
"$PY" - "$tmp/ref.safetensors" "$tmp/new_ldm.safetensors" "$tmp/old_ldm.safetensors" <<'PYEOF' || fail "converted files differ"
import json, sys
def read(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        header.pop("__metadata__")
        return list(header.items()), f.read()
ref = read(sys.argv[1])
assert ref[0][0][0] == "encoder.conv_in.weight" and ref[0][-1][0] == "post_quant_conv.bias"
for p in sys.argv[2:]:
    assert read(p) == ref, p + " differs from the conversion of the official layout"
print("ok: converted diffusers files equal the official layout's conversion")
PYEOF
# Mismatches: one line naming the file and the layout.
expect_error "new.bin (diffusers layout): encoder.conv_in.weight has shape \[32, 3, 3, 3\]" \
  "$UVIT" autoencoder decode -q -w "$tmp/new.bin" --in "$tmp/z.npy" --out "$tmp/x.npy"
expect_error "old.bin (diffusers layout): encoder.conv_in.weight has shape" \
  "$UVIT" convert "$tmp/old.bin" "$tmp/x.safetensors" --autoencoder
[ ! -e "$tmp/x.npy" ] && [ ! -e "$tmp/x.safetensors" ] || fail "an output was written despite errors"
exit $fails
