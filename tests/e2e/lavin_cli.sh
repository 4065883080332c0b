#!/usr/bin/env bash
# LaVin-DiT from the CLI (docs/lavin_dit.md): `uvit info --json` of configs/lavin_dit_3b_2.json
# equals the twin's state_dict (502 tensors, names, shapes, order); the tiny preset's info; a
# fixture network's .pth predicts the twin's output through `uvit predict --context` (the
# conditioning frames as [B, T_c, C*S*S]); a context with the wrong frame count is a one-line error.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" - "$tmp" <<'PYEOF' || fail "writing the 3B key set"
import json, sys
sys.path.insert(0, "tests/reference")
import lavin_dit_torch as L
with L.on_meta():
    sd = L.build_from_config(L.preset_3b()).state_dict()
json.dump([{"name": k, "shape": list(v.shape)} for k, v in sd.items()], open(sys.argv[1] + "/keys.json", "w"))
PYEOF
run "$UVIT" info --json --config configs/lavin_dit_3b_2.json
"$PY" - "$tmp/out" "$tmp/keys.json" <<'PYEOF' || fail "3B key set"
import json, sys
ours, twin = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert ours == twin, "uvit's LaVinDiT_3B_2 table differs from the official state_dict"
n = sum(eval("*".join(map(str, e["shape"]))) for e in ours)
assert (len(ours), n) == (502, 3398976064), (len(ours), n)
print("LaVinDiT_3B_2: %d tensors, %d values" % (len(ours), n))
PYEOF
run "$UVIT" info --config configs/lavin_dit_tiny.json
grep -q "lavin_dit" "$tmp/out" || fail "info of the tiny preset does not name the network"

c=lavin_tiny
"$PY" - "$FX/${c}_context.npy" "$tmp/ctx.npy" "$tmp/ctx2.npy" <<'PYEOF' || fail "writing the contexts"
import sys, numpy as np
a = np.load(sys.argv[1])  # [B, T_c, C, S, S]
np.save(sys.argv[2], a.reshape(a.shape[0], a.shape[1], -1))
np.save(sys.argv[3], a[:, :2].reshape(a.shape[0], 2, -1))
PYEOF
pargs=(--config "$FX/$c.json" --x "$FX/${c}_x.npy" --t "$FX/${c}_t.npy" --weights "$FX/$c.pth")
run "$UVIT" predict "${pargs[@]}" --context "$tmp/ctx.npy" --out "$tmp/v.npy"
"$PY" - "$tmp/v.npy" "$FX/${c}_out.npy" <<'PYEOF' || fail "predict"
import sys, numpy as np
a, ref = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.shape == ref.shape, (a.shape, ref.shape)
err = np.abs(a - ref).max() / np.abs(ref).max()
assert err <= 1e-5, f"relative error {err}"
print("predict ok, rel err", err)
PYEOF
expect_error "ctx2.npy: shape .2, 2, 64., expected .2, 3, 64." \
  "$UVIT" predict "${pargs[@]}" --context "$tmp/ctx2.npy" --out "$tmp/v2.npy"
exit $fails
