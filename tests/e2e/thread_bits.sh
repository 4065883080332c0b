#!/usr/bin/env bash
# One seed, one result at any thread count (docs/cli.md, "Reproducibility"): what round 16 of
# docs/ux_audit.md left depending on --threads. Each check failed before its fix.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_CONV_IMPL UVIT_KEPT_WEIGHTS_MB

# --- SVG training -----------------------------------------------------------------------------
# fmnist_svg_tiny (patch size 1: batch x 784 rows) ended with other weights at --threads 2 and 3
# than at 1: oneDNN's threaded matmul split the thin weight gradients' sums over the rows among the
# threads (2 x 64 outputs over 6272 rows). gemm_wgrad now runs fixed tasks (docs/kernels.md).
for t in 1 2 3; do
  run "$UVIT" --threads $t train --config fmnist_svg_tiny --out "$tmp/s$t" --steps 2 --batch 8 \
    --set lr_scheduler.warmup_steps=0 --no-grid -q
done
for t in 2 3; do
  same "train fmnist_svg_tiny --threads 1 and $t, nnet" "$tmp/s1/nnet.safetensors" \
    "$tmp/s$t/nnet.safetensors"
  same "train fmnist_svg_tiny --threads 1 and $t, nnet_ema" "$tmp/s1/nnet_ema.safetensors" \
    "$tmp/s$t/nnet_ema.safetensors"
done

# --- autoencoder encode -----------------------------------------------------------------------
# `autoencoder encode` of a random 256 px array differed at --threads 3 from 1: the encoder's
# convolutions ran oneDNN on plain nchw, which splits its sums by thread count; they now run the
# blocked kind (docs/autoencoder.md).
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
"$PY" -c "
import numpy as np
np.save('$tmp/x.npy', np.random.RandomState(0).uniform(-1, 1, (1, 3, 256, 256)).astype(np.float32))" ||
  fail "writing the image array"
for t in 1 3; do
  run "$UVIT" --threads $t autoencoder encode -c "$tmp/ae.json" -w "$tmp/ae.pth" --in "$tmp/x.npy" \
    --out "$tmp/m$t.npy" -q
done
same "autoencoder encode --threads 1 and 3" "$tmp/m1.npy" "$tmp/m3.npy"

# --- autoencoder decode -----------------------------------------------------------------------
# `autoencoder decode` of a random 32 x 32 latent with SD kl-f8's geometry (random weights) differed
# at --threads 3 from 1 (the small config above did not show it): the decoder's convolutions ran
# oneDNN on plain nchw. They now run the blocked kind in row bands (docs/autoencoder.md).
run "$PY" tests/reference/autoencoder_torch.py save --config sd_kl_f8 --out "$tmp/sd.pth" --seed 0
"$PY" -c "
import numpy as np
np.save('$tmp/z.npy', np.random.RandomState(0).randn(1, 4, 32, 32).astype(np.float32))" ||
  fail "writing the latent array"
for t in 1 3; do
  run "$UVIT" --threads $t autoencoder decode -w "$tmp/sd.pth" --in "$tmp/z.npy" --out "$tmp/d$t.npy" -q
done
same "autoencoder decode --threads 1 and 3" "$tmp/d1.npy" "$tmp/d3.npy"

# --- LaVin's ST-VAE ---------------------------------------------------------------------------
# The ST-VAE (docs/stvae.md; the small config of tests/e2e/stvae_cli.sh, random weights) ran its
# convolutions on the plain-nchw default: a 32 x 32 latent decoded to other bytes at --threads 2
# than at 1, a 3-frame clip at 2, 3 and 4, and a 128 px image and a 5-frame clip encoded to others
# at 3 (the clip at 2-4). Both now run the SD autoencoder's kinds.
cat >"$tmp/st.json" <<'EOF2'
{"stvae": {"block_out_channels": [32, 64], "layers_per_block": 1, "latent_channels": 4}}
EOF2
run "$PY" tests/reference/stvae_torch.py save --config "$tmp/st.json" --out "$tmp/st.pt" --seed 4
"$PY" -c "
import numpy as np
rs = np.random.RandomState(0)
np.save('$tmp/sz.npy', rs.randn(1, 4, 32, 32).astype(np.float32))
np.save('$tmp/szc.npy', rs.randn(1, 4, 3, 16, 16).astype(np.float32))
np.save('$tmp/sx.npy', rs.uniform(-1, 1, (1, 3, 128, 128)).astype(np.float32))
np.save('$tmp/sxc.npy', rs.uniform(-1, 1, (1, 3, 5, 64, 64)).astype(np.float32))" ||
  fail "writing the ST-VAE arrays"
for t in 1 2 3 4; do
  for w in decode:sz decode:szc encode:sx encode:sxc; do
    run "$UVIT" --threads $t autoencoder "${w%%:*}" --config "$tmp/st.json" -w "$tmp/st.pt" \
      --in "$tmp/${w#*:}.npy" --out "$tmp/${w#*:}_$t.npy" -q
  done
done
for t in 2 3 4; do
  for w in decode:sz decode:szc encode:sx encode:sxc; do
    same "ST-VAE ${w%%:*} ${w#*:} --threads 1 and $t" "$tmp/${w#*:}_1.npy" "$tmp/${w#*:}_$t.npy"
  done
done
exit $fails
