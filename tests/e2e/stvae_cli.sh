#!/usr/bin/env bash
# LaVin-DiT's ST-VAE through `uvit autoencoder encode|decode --config` (docs/stvae.md), on a small
# config with random weights saved as stvae.pt is ({"state_dict": ...}): images as one-frame clips
# -> moments, LaVin latents -> images, and clips [B, 3, T, H, W] both ways (this config compresses
# time by 2: 5 frames <-> 3 latent frames), against the PyTorch twin (real causal 3-D
# convolutions) to 1e-5; one-line errors for bad inputs, and no output written then.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
TWIN=tests/reference/stvae_torch.py
source tests/e2e/data/lib.sh

cat >"$tmp/st.json" <<'EOF2'
{"stvae": {"block_out_channels": [32, 64], "layers_per_block": 1, "latent_channels": 4}}
EOF2
run "$PY" $TWIN save --config "$tmp/st.json" --out "$tmp/st.pt" --seed 4
"$PY" -c "
import numpy as np
rs = np.random.RandomState(1)
np.save('$tmp/img.npy', rs.uniform(-1, 1, (3, 3, 8, 12)).astype(np.float32))
np.save('$tmp/z.npy', rs.randn(3, 4, 5, 3).astype(np.float32))
np.save('$tmp/clip.npy', rs.uniform(-1, 1, (2, 3, 5, 8, 12)).astype(np.float32))
np.save('$tmp/zc.npy', rs.randn(3, 4, 2, 5, 3).astype(np.float32))
np.save('$tmp/clip4.npy', np.zeros((1, 3, 4, 8, 12), np.float32))"
st=(--config "$tmp/st.json" -w "$tmp/st.pt" -q --batch 2)
run "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/img.npy" --out "$tmp/res/m.npy"
run "$UVIT" autoencoder decode "${st[@]}" --in "$tmp/z.npy" --out "$tmp/res/x.npy"
run "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/clip.npy" --out "$tmp/res/mc.npy"
run "$UVIT" autoencoder decode "${st[@]}" --in "$tmp/zc.npy" --out "$tmp/res/xc.npy"
for w in encode:clip:mc decode:zc:xc; do
  IFS=: read -r what in out <<<"$w"
  run "$PY" $TWIN run "$what" --config "$tmp/st.json" --weights "$tmp/st.pt" --in "$tmp/$in.npy" \
    --out "$tmp/${out}_ref.npy"
done
run "$PY" $TWIN run encode --config "$tmp/st.json" --weights "$tmp/st.pt" --in "$tmp/img.npy" \
  --out "$tmp/m_ref.npy"
run "$PY" $TWIN run decode --config "$tmp/st.json" --weights "$tmp/st.pt" --in "$tmp/z.npy" \
  --out "$tmp/x_ref.npy"
"$PY" - "$tmp" <<'PYEOF' || fail "ST-VAE CLI output differs from the twin"
import sys
import numpy as np
d = sys.argv[1]
for got, want, shape in [("res/m.npy", "m_ref.npy", (3, 8, 4, 6)), ("res/x.npy", "x_ref.npy", (3, 3, 10, 6)),
                         ("res/mc.npy", "mc_ref.npy", (2, 8, 3, 4, 6)),
                         ("res/xc.npy", "xc_ref.npy", (3, 3, 3, 10, 6))]:
    a, b = np.load(d + "/" + got), np.load(d + "/" + want)
    assert a.shape == shape == b.shape and a.dtype == np.float32, (a.shape, b.shape)
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err < 1e-5, (got, err)
    print("ok: %s matches the twin (%.2e)" % (got, err))
PYEOF
# Bad inputs: one line each, nothing written.
expect_error "stvae encode: input has shape \[2, 4, 5, 3\], expected images \[B, 3, H, W\] or clips \[B, 3, T, H, W\] with H and W positive multiples of 2" \
  "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/z.npy" --out "$tmp/bad.npy"
expect_error "expected \[B, 4, h, w\]" \
  "$UVIT" autoencoder decode "${st[@]}" --in "$tmp/img.npy" --out "$tmp/bad.npy"
expect_error "clip4.npy: a clip of 4 frames; the ST-VAE compresses time by 2 and takes 1 + 2k frames (1, 3, 5, ...)" \
  "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/clip4.npy" --out "$tmp/bad.npy"
expect_error "stvae decode: latents have shape \[2, 3, 5, 8, 12\], expected \[B, 4, h, w\] or \[B, 4, t, h, w\]" \
  "$UVIT" autoencoder decode "${st[@]}" --in "$tmp/clip.npy" --out "$tmp/bad.npy"
"$PY" -c "import numpy as np; np.save('$tmp/r6.npy', np.zeros((1, 3, 2, 2, 8, 8), np.float32))"
expect_error "r6.npy: shape \[1, 3, 2, 2, 8, 8\], expected images \[B, 3, H, W\] or clips \[B, 3, T, H, W\]" \
  "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/r6.npy" --out "$tmp/bad.npy"
expect_error "--latent-stats: the ST-VAE's latents are normalised by its shift and scaling" \
  "$UVIT" autoencoder decode "${st[@]}" --latent-stats "$tmp/st.pt" --in "$tmp/z.npy" --out "$tmp/bad.npy"
expect_error "st.pt: encoder.conv_in.conv.weight has shape \[32, 3, 3, 3, 3\], the autoencoder config expects \[128, 3, 3, 3, 3\]" \
  "$UVIT" autoencoder decode --config lavin_stvae -w "$tmp/st.pt" --in "$tmp/z.npy" --out "$tmp/bad.npy"
echo '{"stvae": {"latent_channel": 4}}' >"$tmp/typo.json"
expect_error "typo.json: unknown stvae field 'latent_channel'" \
  "$UVIT" autoencoder decode --config "$tmp/typo.json" -w "$tmp/st.pt" --in "$tmp/z.npy" --out "$tmp/bad.npy"
[ ! -e "$tmp/bad.npy" ] || fail "an output was written despite errors"
exit $fails
