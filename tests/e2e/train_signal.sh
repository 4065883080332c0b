#!/usr/bin/env bash
# Ctrl-C (SIGINT) and SIGTERM stop training with a consistent checkpoint, one line on stderr (also
# with -q) and exit status 130 / 143 (128 + the signal, so `train && sample` stops); the run then
# resumes to completion and ends bit-identical to a run that was never interrupted.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.n_steps=1000000 train.log_interval=1 train.eval_interval=1000000 train.save_interval=1000000 sample.sample_steps=3

state_step() {  # step recorded in a safetensors file's metadata
  "$PY" - "$1" <<'PYEOF'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", d[:8])
print(json.loads(d[8:8 + n]).get("__metadata__", {}).get("step", "none"))
PYEOF
}

# interrupt SIGNAL STATUS MIN_STEP ARGS...: train in the background, send SIGNAL once log.jsonl
# shows MIN_STEP steps done, and check the exit status, message and checkpoint.
interrupt() {
  local sig=$1 want=$2 min=$3; shift 3
  "$UVIT" train --out "$tmp/run" "$@" >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  local waited=0
  until [ -f "$tmp/run/log.jsonl" ] && [ "$(grep -c '"event":"train"' "$tmp/run/log.jsonl")" -ge "$min" ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $waited -ge 300 ]; then
      fail "$sig run ended or stalled before step $min"; cat "$tmp/err"; return
    fi
    sleep 0.1; waited=$((waited+1))
  done
  kill -s "$sig" "$pid"
  wait "$pid"; local rc=$?
  pid=
  [ $rc -eq "$want" ] || { fail "$sig: exit status $rc, want $want"; cat "$tmp/err"; }
  grep -q "interrupted: checkpoint written at step [0-9]*; continue with --resume" "$tmp/err" ||
    fail "$sig: no --resume hint in: $(tail -c 300 "$tmp/err")"
  local k; k=$(sed -n 's/.* at step \([0-9]*\):.*/\1/p' "$tmp/out")
  local s; s=$(state_step "$tmp/run/train_state.safetensors")
  local w; w=$(state_step "$tmp/run/nnet_ema.safetensors")
  if [ -z "$k" ] || [ "$k" -lt "$min" ] || [ "$s" != "$k" ] || [ "$w" != "$k" ]; then
    fail "$sig: reported step '$k', train_state step $s, nnet_ema step $w (want >= $min, all equal)"
  else
    echo "ok: $sig stopped the run at step $k with a checkpoint"
  fi
  last=$k
}

last=0
interrupt INT 130 5 --config "$tmp/tiny.json"
first=$last
# Resume, then stop again with SIGTERM (a second interrupted segment); with -q the interruption is
# the one line on stderr.
interrupt TERM 143 $((first + 3)) --resume -q
[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "TERM with -q: stderr is not one line: $(cat "$tmp/err")"
final=$((last + 4))
if "$UVIT" train --out "$tmp/run" --resume --steps $final -q >"$tmp/out" 2>"$tmp/err"; then
  grep -q "at step $final:" "$tmp/out" || fail "resume to completion: $(cat "$tmp/out")"
  [ -f "$tmp/run/samples/step_$(printf %07d $final).png" ] || fail "no final evaluation grid"
else
  fail "resume to completion failed"; cat "$tmp/err"
fi

# A run trained straight to the same step holds the same bytes (nothing lost at the interrupts).
"$UVIT" train --config "$tmp/tiny.json" --out "$tmp/straight" --steps $final -q >/dev/null 2>"$tmp/err" ||
  { fail "straight run failed"; cat "$tmp/err"; }
same_files "$tmp/run" "$tmp/straight" "resumed to step $final vs an uninterrupted run"
[ $fails -eq 0 ] && echo "ok: interrupted at $first and $last, resumed to $final: identical to a straight run"
exit $fails
