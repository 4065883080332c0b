#!/usr/bin/env bash
# LaVin-DiT's ST-VAE through `uvit autoencoder encode|decode --config` (docs/stvae.md), on a small
# config with random weights saved as stvae.pt is ({"state_dict": ...}): images as one-frame clips
# -> moments, LaVin latents -> images, against the PyTorch twin (real causal 3-D convolutions) to
# 1e-5; one-line errors for bad inputs, and no output written then.
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
np.save('$tmp/z.npy', rs.randn(3, 4, 5, 3).astype(np.float32))"
st=(--config "$tmp/st.json" -w "$tmp/st.pt" -q --batch 2)
run "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/img.npy" --out "$tmp/res/m.npy"
run "$UVIT" autoencoder decode "${st[@]}" --in "$tmp/z.npy" --out "$tmp/res/x.npy"
run "$PY" $TWIN run encode --config "$tmp/st.json" --weights "$tmp/st.pt" --in "$tmp/img.npy" \
  --out "$tmp/m_ref.npy"
run "$PY" $TWIN run decode --config "$tmp/st.json" --weights "$tmp/st.pt" --in "$tmp/z.npy" \
  --out "$tmp/x_ref.npy"
"$PY" - "$tmp" <<'PYEOF' || fail "ST-VAE CLI output differs from the twin"
import sys
import numpy as np
d = sys.argv[1]
for got, want, shape in [("res/m.npy", "m_ref.npy", (3, 8, 4, 6)), ("res/x.npy", "x_ref.npy", (3, 3, 10, 6))]:
    a, b = np.load(d + "/" + got), np.load(d + "/" + want)
    assert a.shape == shape == b.shape and a.dtype == np.float32, (a.shape, b.shape)
    err = np.abs(a - b).max() / np.abs(b).max()
    assert err < 1e-5, (got, err)
    print("ok: %s matches the twin (%.2e)" % (got, err))
PYEOF
# Bad inputs: one line each, nothing written.
expect_error "stvae encode: images have shape \[2, 4, 5, 3\], expected \[B, 3, H, W\] with H and W positive multiples of 2" \
  "$UVIT" autoencoder encode "${st[@]}" --in "$tmp/z.npy" --out "$tmp/bad.npy"
expect_error "expected \[B, 4, h, w\]" \
  "$UVIT" autoencoder decode "${st[@]}" --in "$tmp/img.npy" --out "$tmp/bad.npy"
expect_error "--latent-stats: the ST-VAE's latents are normalised by its shift and scaling" \
  "$UVIT" autoencoder decode "${st[@]}" --latent-stats "$tmp/st.pt" --in "$tmp/z.npy" --out "$tmp/bad.npy"
expect_error "st.pt: encoder.conv_in.conv.weight has shape \[32, 3, 3, 3, 3\], the autoencoder config expects \[128, 3, 3, 3, 3\]" \
  "$UVIT" autoencoder decode --config lavin_stvae -w "$tmp/st.pt" --in "$tmp/z.npy" --out "$tmp/bad.npy"
echo '{"stvae": {"latent_channel": 4}}' >"$tmp/typo.json"
expect_error "typo.json: unknown stvae field 'latent_channel'" \
  "$UVIT" autoencoder decode --config "$tmp/typo.json" -w "$tmp/st.pt" --in "$tmp/z.npy" --out "$tmp/bad.npy"
[ ! -e "$tmp/bad.npy" ] || fail "an output was written despite errors"
exit $fails
