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

# --- audit round 4 --------------------------------------------------------------------------------
# An empty value of an option that names a file: `convert W ''` converted, then failed with
# ": cannot rename .tmp.PID"; `train/demo --out ''` with "filesystem error: cannot create
# directories: Invalid argument []"; `train --init ''` trained from the seed, silently not a
# fine-tune.
expect_error "^uvit: error: OUT must name a file or folder, got '' (uvit help convert)$" \
  "$UVIT" convert "$W" ''
expect_error "^uvit: error: --out must name a file or folder, got '' (uvit help train)$" \
  "$UVIT" train --config fmnist_uvit_tiny --out '' --steps 1
expect_error "^uvit: error: --out must name a file or folder, got '' (uvit help demo)$" \
  "$UVIT" demo --out '' --steps 1
expect_error "^uvit: error: --init must name a file or folder, got '' (uvit help train)$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/e" --steps 1 --init ''
[ ! -e "$tmp/e" ] || fail "a refused --init '' left $tmp/e"

# `train --init RUN` (a run folder, as --config RUN works) said "no such file"; `--weights RUN`
# says what to give.
expect_error "^uvit: error: train.init_weights (--init) $U: is a folder, not a weights file (a training run: give $U/nnet_ema.safetensors)$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/i" --steps 1 --init "$U"
[ ! -e "$tmp/i" ] || fail "a refused --init RUN left $tmp/i"

# train.ignore_keys on a new run without --init (and without finetune partial) changed nothing,
# silently.
expect_error "^uvit: error: train.ignore_keys names the parameters not taken from --init WEIGHTS; this run has none" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/k" --steps 1 --set 'train.ignore_keys=["bias"]'
[ ! -e "$tmp/k" ] || fail "a refused ignore_keys left $tmp/k"

# `uvit eval --precision bf16` over chunks sampled in fp32 resumed them: the fp32 model's FID
# reported as the bf16 one. The chunk manifest records the precision.
I=$FX/fid/inception.pth
if [ ! -f "$I" ]; then
  "$PY" tests/reference/inception_torch.py --out "$tmp/fidnet" --net-only >/dev/null || fail "twin fixtures"
  I=$tmp/fidnet/inception.pth
fi
run "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 4 --steps 2 --npy "$tmp/r.npy" -q
run "$UVIT" fid-stats "$tmp/r.npy" --out "$tmp/ref.npz" --inception "$I" -q
EV=(eval --config fmnist_uvit_tiny --weights "$W" --sampler dpm-solver --steps 2 --inception "$I"
  --n 4 --chunk 2 --ref "$tmp/ref.npz" --out "$tmp/ev/s.npz" -q)
run "$UVIT" "${EV[@]}" --max-chunks 1
expect_error "^uvit: error: $tmp/ev/s.npz.parts: holds chunks of a different run (precision \"fp32\" -> \"bf16\")" \
  "$UVIT" "${EV[@]}" --precision bf16

# An option given twice: CLI11's "--steps: At Most 1 required but received 2".
expect_error "^uvit: error: --steps is given 2 times; give it once (uvit help sample)$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --steps 2 --steps 3 --class 1 --out "$tmp/t.png"

# --- `uvit train --resume` of a bf16 run without --precision went on in fp32, silently: nothing in the
# run recorded its precision. Each call now writes a `start` row (device, precision), and a resume
# without --precision continues in the recorded one (docs/cli.md "Resume").
P=$tmp/prec
run "$UVIT" train --config fmnist_uvit_tiny --out "$P" --steps 1 --batch 2 --no-grid --precision bf16 -q
run "$UVIT" train --resume --out "$P" --steps 2 --no-grid
first=$(grep '"event":"start"' "$P/log.jsonl" | head -1)
second=$(grep '"event":"start"' "$P/log.jsonl" | sed -n 2p)
prec() { "$PY" -c 'import json, sys; print(json.loads(sys.argv[1])["precision"])' "$1" 2>/dev/null; }
p1=$(prec "$first") p2=$(prec "$second")
if [ -z "$p1" ] || [ "$p1" != "$p2" ]; then
  fail "train --resume without --precision: start rows '$first' then '$second'"
elif ! grep -q "continuing in $p1, the precision the run trained in" "$tmp/err"; then
  fail "train --resume without --precision: no line names the precision: $(cat "$tmp/err")"
else
  echo "ok: train --resume keeps the run's precision ($p1)"
fi
run "$UVIT" train --resume --out "$P" --steps 3 --no-grid --precision fp32
if [ "$(prec "$(grep '"event":"start"' "$P/log.jsonl" | sed -n 3p)")" != fp32 ]; then
  fail "train --resume --precision fp32: the third start row is not fp32"
elif [ "$p1" = bf16 ] && ! grep -q "note: the run trained in bf16 up to step 2; continuing in fp32" "$tmp/err"; then
  fail "train --resume --precision fp32 of a bf16 run: no note: $(cat "$tmp/err")"
else
  echo "ok: train --resume --precision fp32 is recorded (and noted)"
fi

# A second `uvit serve` on a busy port started and said "serving" (cpp-httplib's SO_REUSEPORT): the
# kernel then split the connections between the two servers. Under mpirun every rank served.
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "skip: serve (built without cpp-httplib)"
else
  serve_up --config fmnist_uvit_tiny --weights "$W" -q
  expect_error "^uvit: error: serve: cannot listen on 127.0.0.1:$port (in use" \
    timeout 60 "$UVIT" serve --config fmnist_uvit_tiny --weights "$W" --port "$port" -q
  # ... and before the model loads: a weights file that does not exist is not even looked at.
  expect_error "^uvit: error: serve: cannot listen on 127.0.0.1:$port (in use" \
    timeout 60 "$UVIT" serve --config fmnist_uvit_tiny --weights "$tmp/none.safetensors" --port "$port" -q
  serve_down
  if command -v mpirun >/dev/null; then
    env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
      OMPI_MCA_btl=self,vader OMPI_MCA_oob_tcp_if_include=lo timeout 90 mpirun -np 2 --timeout 60 --bind-to none \
      "$UVIT" serve --config fmnist_uvit_tiny --weights "$W" --port "$port" -q >"$tmp/out" 2>"$tmp/err"
    rc=$?
    if grep -q "built without MPI" "$tmp/err"; then
      echo "skip: serve under mpirun (built without MPI)"
    elif [ $rc = 0 ] || [ $rc = 124 ] || ! grep -q "uvit serve is one process: run it without mpirun or srun (started as 2 ranks)" "$tmp/err"; then
      fail "serve under mpirun -np 2: exit $rc: $(head -3 "$tmp/err")"
    else
      echo "ok: serve under mpirun refused"
    fi
  fi
fi

exit $fails
