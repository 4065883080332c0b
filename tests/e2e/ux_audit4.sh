#!/usr/bin/env bash
# Regressions from the fourth new-user audit (docs/ux_audit.md, "round 4"): each check failed
# before its fix.
set -uo pipefail
UVIT=$1 FX=${2:-} PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

U=$tmp/run
run "$UVIT" train --config fmnist_uvit_tiny --out "$U" --steps 1 --batch 2 --no-grid -q
W=$U/nnet_ema.safetensors

# --- round 3's leftover: a SIGTERM (or SIGINT) landing inside a write of `uvit sample` killed it
# between the temporary file and the rename, leaving OUT.tmp.PID. The test hook
# UVIT_TEST_WRITE_PAUSE_MS holds every write just before its rename, so the signal lands there.
# signal_in_write SIG STATUS: `uvit sample --out --npy` signalled inside its first write must exit
# with STATUS, leave no temporary file, and each output whole or absent.
signal_in_write() {
  local sig=$1 want=$2 d=$tmp/sig_$1 f before=$fails
  mkdir -p "$d"
  # A background job of a script ignores SIGINT; env gives it the default action back.
  UVIT_TEST_WRITE_PAUSE_MS=3000 env --default-signal=INT "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 7 \
    --n 4 --steps 2 --sampler dpm-solver --out "$d/g.png" --npy "$d/s.npy" -q 2>"$d/err" &
  local p=$!
  for _ in $(seq 600); do
    compgen -G "$d/*.tmp.*" >/dev/null && break
    sleep 0.05
  done
  compgen -G "$d/*.tmp.*" >/dev/null || fail "SIG$sig: no temporary file appeared: $(cat "$d/err")"
  kill -"$sig" "$p"
  wait "$p"
  local rc=$?
  [ "$rc" = "$want" ] || fail "SIG$sig inside a write: exit $rc, want $want"
  f=$(compgen -G "$d/*.tmp.*") && fail "SIG$sig inside a write left $f"
  "$PY" - "$d" <<'PYEOF' || fail "SIG$sig inside a write: an output is not whole"
import os, struct, sys, zlib, numpy as np
d = sys.argv[1]
if os.path.exists(d + "/s.npy"):
    assert np.load(d + "/s.npy").shape == (4, 28, 28, 1)
if os.path.exists(d + "/g.png"):
    b = open(d + "/g.png", "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b.endswith(b"IEND\xaeB`\x82"), len(b)
PYEOF
  [ $fails = "$before" ] && echo "ok: SIG$sig inside a write: exit $rc, $(ls "$d" | grep -v err | tr '\n' ' ')"
}
signal_in_write TERM 143
signal_in_write INT 130

exit $fails
