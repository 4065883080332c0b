#!/usr/bin/env bash
# LaVin-DiT from the CLI (docs/lavin_dit.md): `uvit info --json` of configs/lavin_dit_3b_2.json
# equals the twin's state_dict (502 tensors, names, shapes, order); the tiny preset's info; a
# fixture network's .pth predicts the twin's output through `uvit predict --context` (the
# conditioning frames as [B, T_c, C*S*S]); a context with the wrong frame count is a one-line error.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

official_keys LaVinDiT_3B_2 lavin_dit_torch 'build_from_config(preset_3b())' 502 3398976064 \
  --config configs/lavin_dit_3b_2.json
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

# lavin-sample: the sampling fixture's frames and noise (normalised latents) give the twin's
# float64 official loop (cfg 1.5, 19 steps); as raw ST-VAE latents (z / 1.0893... + 0.0324...)
# they give the denormalised answer.
"$PY" - "$FX/lavin_sampling.safetensors" "$tmp" <<'PYEOF' || fail "writing the sampling inputs"
import json, struct, sys, numpy as np
path, out = sys.argv[1:3]
raw = open(path, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
head = json.loads(raw[8:8 + n])
def get(k):
    e = head[k]
    a, b = e["data_offsets"]
    return np.frombuffer(raw[8 + n + a:8 + n + b], np.float32).reshape(e["shape"])
shift, scale = 0.032470703125, 1.08936170213
fr, z, ref = get("input.frames")[0], get("input.noise")[0], get("output")
np.save(out + "/frames.npy", fr)
np.save(out + "/frames_raw.npy", (fr.astype(np.float64) / scale + shift).astype(np.float32))
np.save(out + "/noise.npy", z)
np.save(out + "/ref.npy", ref)
np.save(out + "/ref_raw.npy", ref.astype(np.float64) / scale + shift)
PYEOF
sargs=(--config "$FX/$c.json" --weights "$FX/$c.pth" --noise "$tmp/noise.npy")
run "$UVIT" lavin-sample "${sargs[@]}" --frames "$tmp/frames.npy" --normalized --out "$tmp/a.npy"
run "$UVIT" lavin-sample "${sargs[@]}" --frames "$tmp/frames_raw.npy" --out "$tmp/a_raw.npy"
"$PY" - "$tmp" <<'PYEOF' || fail "lavin-sample"
import sys, numpy as np
d = sys.argv[1]
for got, want in (("a", "ref"), ("a_raw", "ref_raw")):
    a, ref = np.load(f"{d}/{got}.npy"), np.load(f"{d}/{want}.npy")
    assert a.shape == ref.shape == (1, 4, 4, 4), (a.shape, ref.shape)
    err = np.abs(a - ref).max() / np.abs(ref).max()
    assert err <= 1e-5, f"{got}: relative error {err}"
    print(got, "ok, rel err", err)
PYEOF
# --autoencoder: images in, the answer image out, through a tiny ST-VAE (random weights saved by
# its twin). The normalised posterior samples the network saw (--latents) lie within 6 sd of the
# encoder's normalised mean; the latent path on them with the same noise gives the same answer
# latent, and `uvit autoencoder decode` of it is the image (.npy, and the .png quantised from it).
echo '{"stvae": {"block_out_channels": [32, 64], "layers_per_block": 1, "latent_channels": 4}}' \
  >"$tmp/st.json"
run "$PY" tests/reference/stvae_torch.py save --config "$tmp/st.json" --out "$tmp/st.pt" --seed 4
"$PY" -c "import numpy as np; np.save('$tmp/imgs.npy', np.random.RandomState(2).uniform(-1, 1, (3, 3, 8, 8)).astype(np.float32))"
st=(--autoencoder "$tmp/st.pt" --autoencoder-config "$tmp/st.json" --seed 3)
run "$UVIT" lavin-sample "${sargs[@]}" "${st[@]}" --frames "$tmp/imgs.npy" --latents "$tmp/lat.npy" \
  --out "$tmp/ans.npy"
run "$UVIT" lavin-sample "${sargs[@]}" "${st[@]}" --frames "$tmp/imgs.npy" --out "$tmp/ans.png"
run "$UVIT" lavin-sample "${sargs[@]}" --frames "$tmp/lat.npy" --normalized --out "$tmp/ans_lat.npy"
run "$UVIT" autoencoder encode --config "$tmp/st.json" -w "$tmp/st.pt" -q --in "$tmp/imgs.npy" \
  --out "$tmp/mom.npy"
run "$UVIT" autoencoder decode --config "$tmp/st.json" -w "$tmp/st.pt" -q --in "$tmp/ans_lat.npy" \
  --out "$tmp/ans_dec.npy"
"$PY" - "$tmp" <<'PYEOF' || fail "lavin-sample --autoencoder"
import sys, numpy as np
sys.path.insert(0, "tests/e2e")
d = sys.argv[1]
shift, scale = 0.032470703125, 1.08936170213
lat, mom = np.load(f"{d}/lat.npy"), np.load(f"{d}/mom.npy").astype(np.float64)
assert lat.shape == (3, 4, 4, 4) and mom.shape == (3, 8, 4, 4), (lat.shape, mom.shape)
sd = np.exp(0.5 * np.clip(mom[:, 4:], -30, 20))
dev = np.abs(lat - (mom[:, :4] - shift) * scale) / (scale * sd)
assert dev.max() < 6 and dev.mean() > 0.1, ("posterior sample", dev.max(), dev.mean())
a, b = np.load(f"{d}/lat.npy.answer.npy"), np.load(f"{d}/ans_lat.npy")
assert np.array_equal(a, b), "the latent path on the same frames and noise gives another answer"
img, ref = np.load(f"{d}/ans.npy"), np.load(f"{d}/ans_dec.npy")
assert img.shape == ref.shape == (1, 3, 8, 8) and np.array_equal(img, ref), "decode differs"
png = open(f"{d}/ans.png", "rb").read()
assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[16:24] == bytes([0, 0, 0, 8, 0, 0, 0, 8]), "png"
print("lavin-sample --autoencoder ok: posterior within %.2f sd, answer and decode equal" % dev.max())
PYEOF
expect_error "frames.npy: shape .3, 4, 4, 4., expected .T_c >= 2, 3, 8, 8." \
  "$UVIT" lavin-sample "${sargs[@]}" "${st[@]}" --frames "$tmp/frames.npy" --out "$tmp/b.npy"
expect_error "--latents needs --autoencoder" \
  "$UVIT" lavin-sample "${sargs[@]}" --frames "$tmp/frames.npy" --latents "$tmp/l.npy" --out "$tmp/b.npy"
expect_error "--normalized applies to latent frames, not images" \
  "$UVIT" lavin-sample "${sargs[@]}" "${st[@]}" --frames "$tmp/imgs.npy" --normalized --out "$tmp/b.npy"
expect_error "steps must be 20, 30 or 40" \
  "$UVIT" lavin-sample "${sargs[@]}" --frames "$tmp/frames.npy" --steps 25 --out "$tmp/b.npy"
expect_error "frames.npy: shape .3, 4, 4, 4., expected .T_c >= 2, 4, 8, 8." \
  "$UVIT" lavin-sample --config configs/lavin_dit_tiny.json --weights "$FX/$c.pth" \
  --frames "$tmp/frames.npy" --out "$tmp/b.npy"
expect_error "is a dit network, not lavin_dit" \
  "$UVIT" lavin-sample --config "$FX/dit_p2.json" --weights "$FX/$c.pth" \
  --frames "$tmp/frames.npy" --out "$tmp/b.npy"
[ ! -e "$tmp/b.npy" ] || fail "lavin-sample wrote a file despite an error"
exit $fails
