#!/usr/bin/env bash
# A .pth written by torch.save loads, converts to .safetensors, and both predict the twin's output.
set -euo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for c in cond_p2 t2i uncond_p4_h64; do
  args=(--config "$FX/$c.json" --x "$FX/${c}_x.npy" --t "$FX/${c}_t.npy")
  [ -f "$FX/${c}_y.npy" ] && args+=(--y "$FX/${c}_y.npy")
  [ -f "$FX/${c}_context.npy" ] && args+=(--context "$FX/${c}_context.npy")
  "$UVIT" convert "$FX/$c.pth" "$tmp/$c.safetensors" --config "$FX/$c.json"
  "$UVIT" predict "${args[@]}" --weights "$FX/$c.pth" --out "$tmp/${c}_pth.npy"
  "$UVIT" predict "${args[@]}" --weights "$tmp/$c.safetensors" --out "$tmp/${c}_st.npy"
  "$PY" - "$tmp/${c}_pth.npy" "$tmp/${c}_st.npy" "$FX/${c}_out.npy" <<'PYEOF'
import sys, numpy as np
a, b, ref = (np.load(p) for p in sys.argv[1:4])
assert a.dtype == np.float32 and a.shape == ref.shape, (a.dtype, a.shape, ref.shape)
assert np.array_equal(a, b), "pth and safetensors predictions differ"
err = np.abs(a - ref).max() / np.abs(ref).max()
assert err <= 1e-5, f"relative error {err}"
print(sys.argv[3], "ok, rel err", err)
PYEOF
done
