#!/usr/bin/env bash
# --precision bf16 on the CPU from the command line (docs/cpu_bf16.md): predict on official-layout
# U-ViT, DiT and LightningDiT fixtures within the bf16 bound (3e-2 of max|ref|) of the PyTorch
# twins' fp32 outputs; on a CPU without bf16 units (simulated by DNNL_MAX_CPU_ISA=AVX2) a one-line
# note and the fp32 result; sample, train, bench and a time-bounded run's up-front projection.
set -euo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if ! DNNL_MAX_CPU_ISA=ALL "$UVIT" bench -c "$FX/cond_p2.json" --batch 1 --iters 1 --precision bf16 \
     2>/dev/null | grep -q '"precision": "bf16"'; then
  echo "SKIP: this CPU has no bf16 units (AVX512-BF16 or AMX)"
  exit 0
fi
for c in cond_p2 t2i dit_p2 ldit_p2_qknorm_sigma skipdit_p2; do
  args=(--config "$FX/$c.json" --weights "$FX/$c.pth" --x "$FX/${c}_x.npy" --t "$FX/${c}_t.npy")
  [ -f "$FX/${c}_y.npy" ] && args+=(--y "$FX/${c}_y.npy")
  [ -f "$FX/${c}_context.npy" ] && args+=(--context "$FX/${c}_context.npy")
  "$UVIT" predict "${args[@]}" --precision bf16 --out "$tmp/${c}_bf16.npy" 2>"$tmp/err"
  [ ! -s "$tmp/err" ] || { echo "FAIL: bf16 predict wrote to stderr: $(cat "$tmp/err")"; exit 1; }
  # (the fp32 reference under the same ISA limit: oneDNN's AVX2 kernels round differently)
  DNNL_MAX_CPU_ISA=AVX2 "$UVIT" predict "${args[@]}" --out "$tmp/${c}_fp32.npy"
  DNNL_MAX_CPU_ISA=AVX2 "$UVIT" predict "${args[@]}" --precision bf16 --out "$tmp/${c}_nobf16.npy" \
    2>"$tmp/err"
  [ "$(wc -l <"$tmp/err")" = 1 ] && grep -q "no bf16 units.*fp32" "$tmp/err" ||
    { echo "FAIL: want one note about the fp32 fallback: $(cat "$tmp/err")"; exit 1; }
  "$PY" - "$tmp/${c}_bf16.npy" "$tmp/${c}_fp32.npy" "$tmp/${c}_nobf16.npy" "$FX/${c}_out.npy" <<'PYEOF'
import sys, numpy as np
bf, f32, nobf, ref = (np.load(p) for p in sys.argv[1:5])
assert bf.dtype == np.float32 and bf.shape == ref.shape, (bf.dtype, bf.shape, ref.shape)
assert np.array_equal(nobf, f32), "the fallback is not the fp32 result"
err = np.abs(bf - ref).max() / np.abs(ref).max()
assert 0 < err <= 3e-2, f"bf16 relative error {err}"
print(sys.argv[4], "bf16 ok, rel err", err)
PYEOF
done
# Sampling and training in bf16; bench reports the precision.
"$UVIT" sample -c "$FX/cond_p2.json" -w "$FX/cond_p2.pth" --n 4 --classes all --steps 5 --precision bf16 \
  --npy "$tmp/s.npy" -q
"$PY" -c "import numpy as np, sys; a = np.load(sys.argv[1]); assert a.shape[0] == 4, a.shape" \
  "$tmp/s.npy"
"$UVIT" train -c fmnist_uvit_tiny --out "$tmp/run" --steps 2 --batch 4 --no-grid -q \
  --precision bf16 >/dev/null
grep -q '"step":2' "$tmp/run/log.jsonl" || { echo "FAIL: bf16 training did not reach step 2"; exit 1; }
# A time-bounded run projects its last step up front and shows time left, not an ETA.
"$UVIT" --threads 1 train -c fmnist_uvit_tiny --out "$tmp/run2" --minutes 0.4 --batch 4 --no-grid \
  --precision bf16 2>"$tmp/err" >/dev/null
tr '\r' '\n' <"$tmp/err" >"$tmp/lines"
grep -q "^note: at .* steps/s this machine reaches about step [0-9]* of 10000" "$tmp/lines" ||
  { echo "FAIL: no projection: $(cat "$tmp/lines")"; exit 1; }
grep -q "^train [0-9]* done .* left$" "$tmp/lines" || { echo "FAIL: no time left shown"; exit 1; }
! grep -q "ETA" "$tmp/lines" || { echo "FAIL: an ETA for the nominal steps"; exit 1; }
# The demo trains in bf16 by default; without bf16 units it says, in one line, that it uses fp32.
DNNL_MAX_CPU_ISA=AVX2 "$UVIT" demo --out "$tmp/demo" --steps 1 --set sample.sample_steps=2 \
  2>"$tmp/err" >/dev/null
[ "$(grep -c "no bf16 units" "$tmp/err")" = 1 ] && grep -q "the demo trains in fp32" "$tmp/err" ||
  { echo "FAIL: want one note that the demo trains in fp32: $(cat "$tmp/err")"; exit 1; }
echo "cpu bf16 cli ok"
