#!/usr/bin/env bash
# Regressions from the thirteenth new-user audit (docs/ux_audit.md, "round 13"): each fix's check
# failed before it; the others keep what the audit found fine (a run folder moved, copied or
# linked; commands reading a run while `uvit train` writes it; long inputs).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
T=(--threads 1)
tiny_run  # $tmp/run at step 1, $W its EMA weights

# --- a run folder that moves -------------------------------------------------------------------
# `uvit eval --out RUN/ev.npz` half done, then `mv RUN RUN2`: the same eval on RUN2's weights was
# refused as "holds chunks of a different run (weights "/.../RUN/..." -> "/.../RUN2/...")", though
# the manifest's SHA-256 says they are the same file; so was `--weights ./RUN/w` for `RUN/w`.
inception_weights I "${2:-}"
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 4 --steps 2 --class 1 -q \
  --npy "$tmp/s.npy"
run "$UVIT" "${T[@]}" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=("$UVIT" "${T[@]}" eval --config fmnist_uvit_tiny --n 2 --chunk 1 --steps 2 --sampler dpm-solver
  --seed 1 --ref "$tmp/ref.npz" --inception "$I" --metrics fid)
run "${E[@]}" --weights "$W" --out "$tmp/run/ev.npz" --max-chunks 1 -q
mv "$tmp/run" "$tmp/moved"
W=$tmp/moved/nnet_ema.safetensors
run "${E[@]}" --weights "$W" --out "$tmp/moved/ev.npz" --json "$tmp/ev.json"
grep -q "its chunks are of the same file at another path (weights \"$tmp/run/nnet_ema.safetensors\" is now \"$W\"" "$tmp/err" &&
  "$PY" -c "import json, sys; j = json.load(open(sys.argv[1])); assert j['resumed_chunks'] == 1, j" "$tmp/ev.json" &&
  echo "ok: eval resumes the chunks of a run folder moved: $(grep 'same file' "$tmp/err")" ||
  fail "eval after mv RUN RUN2: $(cat "$tmp/err")"
(cd "$tmp" && run "${E[@]}" --weights ./moved/../moved/nnet_ema.safetensors --out moved/ev.npz -q)
[ -s "$tmp/moved/ev.npz" ] && grep -q "\"weights\": \"$W\"" "$tmp/moved/ev.npz.parts/manifest.json" &&
  echo "ok: eval with ./RUN/../RUN/w for RUN/w (the path recorded normalised)" ||
  fail "eval with ./moved/../moved/w: $(cat "$tmp/err")"
# Other weights at the same path stay refused.
cp "$W" "$tmp/other.safetensors"
"$PY" -c "
import sys
b = bytearray(open(sys.argv[1], 'rb').read()); b[-4:] = b'\x00\x00\x80\x3f'
open(sys.argv[1], 'wb').write(b)" "$tmp/other.safetensors"
expect_error "holds chunks of a different run (weights \"$W\" -> \"$tmp/other.safetensors\", weights_sha256 " \
  "${E[@]}" --weights "$tmp/other.safetensors" --out "$tmp/moved/ev.npz" -q

exit $fails
