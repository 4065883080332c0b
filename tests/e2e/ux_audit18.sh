#!/usr/bin/env bash
# Regressions from the eighteenth new-user audit (docs/ux_audit.md, "round 18"): permissions on a
# shared machine (umask 000), detached and backgrounded runs (a hangup, nohup, a killed `tee`,
# output to a file).
# Each fix's check failed before it; the others keep what the audit found fine.
set -uo pipefail
UVIT=$1
source tests/e2e/data/lib.sh
S=(--no-grid -q --batch 8 --set lr_scheduler.warmup_steps=0)
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/r" --steps 2 "${S[@]}"
W=$tmp/r/nnet_ema.safetensors

# --- a hangup inside a write ----------------------------------------------------------------------
# Closing the terminal of `uvit sample` sends SIGHUP. io::SignalHold held SIGINT and SIGTERM over a
# write's last step (round 4) but not SIGHUP, so a hangup there left OUT.tmp.PID and no output.
# Now it is held as they are: the file is renamed whole, then the hangup ends the process (129).
d=$tmp/hup
mkdir -p "$d"
UVIT_TEST_WRITE_PAUSE_MS=3000 "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 7 \
  --n 2 --steps 2 --out "$d/g.png" -q 2>"$d/err" &
p=$!
for _ in $(seq 600); do
  compgen -G "$d/*.tmp.*" >/dev/null && break
  sleep 0.05
done
kill -HUP "$p"
wait "$p"
rc=$?
if f=$(compgen -G "$d/*.tmp.*"); then
  fail "SIGHUP inside a write (exit $rc) left $f"
elif [ "$rc" != 129 ] || [ ! -s "$d/g.png" ]; then
  fail "SIGHUP inside a write: exit $rc, g.png $(ls "$d"): $(cat "$d/err")"
else
  "$UVIT" info "$d/g.png" >/dev/null 2>&1 && echo "ok: SIGHUP inside a write: g.png whole, exit 129" ||
    fail "SIGHUP inside a write: g.png unreadable"
fi

# --- fine: umask 000 ------------------------------------------------------------------------------
# Every file is a temporary file of mode 0666 less the umask, renamed (round 14 checked 027 and
# 077): under umask 000 a run's files and a sample's outputs are 666, its folders 777.
(umask 000
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/u" --steps 1 "${S[@]}" \
    --set train.save_interval=1 >/dev/null 2>&1
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 2 --steps 2 -q \
    --out "$tmp/u/g.png" --dir "$tmp/u/d" --npz "$tmp/u/s.npz" --npy "$tmp/u/s.npy" 2>/dev/null)
modes=$(find "$tmp/u" -type f -printf '%m\n' | sort -u | tr '\n' ' ')
dmodes=$(find "$tmp/u" -type d -printf '%m\n' | sort -u | tr '\n' ' ')
[ "$modes" = "666 " ] && [ "$dmodes" = "777 " ] && [ -s "$tmp/u/ckpts/1/nnet.safetensors" ] &&
  [ -s "$tmp/u/d/000001.png" ] && echo "ok: umask 000: files 666, folders 777" ||
  fail "umask 000: files $modes, folders $dmodes: $(find "$tmp/u" -printf '%m %p\n')"

# --- fine: progress into a file -------------------------------------------------------------------
# stderr redirected to a file (nohup's nohup.out, `2>log`): plain lines, no carriage return.
"$UVIT" train --config fmnist_uvit_tiny --out "$tmp/p" --steps 2 --no-grid --batch 8 \
  --set lr_scheduler.warmup_steps=0 >/dev/null 2>"$tmp/p.err"
! grep -q $'\r' "$tmp/p.err" && grep -q '^train 2/2 (100%)' "$tmp/p.err" &&
  echo "ok: progress in a file: plain lines" || fail "progress in a file: $(od -c "$tmp/p.err" | head)"

# --- a training whose terminal closes, or whose `| tee log` is killed --------------------------------
# SIGHUP (the terminal closed, without nohup) and SIGPIPE (stderr piped to a reader that died)
# ended `uvit train` by their default action: the steps since the last checkpoint were lost, and a
# run stopped before its first save held no checkpoint (`nothing to resume`). Now they stop it as
# SIGTERM does: checkpoint, `interrupted: ...`, exit 128 + the signal; under nohup it goes on.
# wait_for_step FILE: until the progress lines in FILE name a step (the run has started training).
wait_for_step() {
  for _ in $(seq 1200); do grep -q '^train [1-9]' "$1" 2>/dev/null && return; sleep 0.05; done
}
T=(--no-grid --batch 8 --set lr_scheduler.warmup_steps=0)
"$UVIT" train --config fmnist_uvit_tiny --out "$tmp/h" --steps 100000 "${T[@]}" >/dev/null 2>"$tmp/h.err" &
p=$!
wait_for_step "$tmp/h.err"
kill -HUP "$p"
wait "$p"
rc=$?
[ "$rc" = 129 ] && [ -s "$tmp/h/train_state.safetensors" ] &&
  grep -q '^interrupted: checkpoint written at step [0-9]*; continue with --resume$' "$tmp/h.err" &&
  echo "ok: SIGHUP: $(tail -1 "$tmp/h.err"), exit 129" ||
  fail "SIGHUP of train: exit $rc, $(ls "$tmp/h"): $(tail -2 "$tmp/h.err")"
k=$(sed -n 's/^interrupted: checkpoint written at step \([0-9]*\);.*/\1/p' "$tmp/h.err")
run "$UVIT" train --out "$tmp/h" --resume --steps $((k + 1)) "${S[@]}"

# tee killed: uvit's next progress line meets a pipe without a reader.
mkfifo "$tmp/fifo"
"$UVIT" train --config fmnist_uvit_tiny --out "$tmp/t" --steps 100000 "${T[@]}" >/dev/null 2>"$tmp/fifo" &
p=$!
tee "$tmp/t.err" <"$tmp/fifo" >/dev/null &
tp=$!
wait_for_step "$tmp/t.err"
kill "$tp"
wait "$p"
rc=$?
[ "$rc" = 141 ] && [ -s "$tmp/t/train_state.safetensors" ] &&
  echo "ok: tee killed: checkpoint written, exit 141" ||
  fail "tee killed under train: exit $rc, $(ls "$tmp/t")"

# nohup: SIGHUP ignored, so the run goes on to its steps.
nohup "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/n" --steps 6 "${T[@]}" >/dev/null 2>"$tmp/n.err" &
p=$!
wait_for_step "$tmp/n.err"
kill -HUP "$p"
wait "$p"
rc=$?
[ "$rc" = 0 ] && grep -q '^train 6/6' "$tmp/n.err" && echo "ok: nohup: SIGHUP ignored, 6 steps" ||
  fail "nohup train after SIGHUP: exit $rc: $(tail -2 "$tmp/n.err")"

# --- mpirun: a run folder that cannot be one ---------------------------------------------------------
# docs/distributed.md "Errors before the work": one line from rank 0, every rank exits 1 without
# MPI_Abort. `--out` naming a file, or a run without --resume, was checked after that round: each
# rank printed its own `rank N:` line, then MPI_ABORT's banner. Now it is in the round.
if command -v mpirun >/dev/null; then
  mpi=(mpirun --oversubscribe -np 2)
  [ "$(id -u)" = 0 ] && mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
  : >"$tmp/afile"
  for out in "$tmp/afile" "$tmp/r"; do
    "${mpi[@]}" "$UVIT" train --config fmnist_uvit_tiny --out "$out" --steps 1 "${S[@]}" >"$tmp/m.out" 2>&1
    rc=$?
    n=$(grep -c '^uvit: error: ' "$tmp/m.out")
    [ "$rc" = 1 ] && [ "$n" = 1 ] && ! grep -q 'MPI_ABORT\|rank [01]:' "$tmp/m.out" &&
      echo "ok: mpirun -np 2: $(grep '^uvit: error: ' "$tmp/m.out")" ||
      fail "mpirun -np 2 train --out $out: exit $rc, $n error lines: $(head -5 "$tmp/m.out")"
  done
fi

# --- second wave: the help's exit statuses, /proc, eval's hangup, Skip-Cache in serve's record -----
PY=${PYTHON:-/usr/bin/python3}
# `uvit --help` named only 130 / 143 after train began to exit 129 / 141 on SIGHUP / SIGPIPE.
"$UVIT" --help | tr '\n' ' ' | grep -q '129 / 141 by SIGHUP' && echo "ok: --help names 129 / 141" ||
  fail "uvit --help: $("$UVIT" --help | tail -4)"
# `--out /proc/x` said "folder /proc is not writable (No such file or directory)": the error is of
# the name made in /proc, not of /proc.
expect_error "^uvit: error: --out /proc/x: cannot create folder /proc/x: No such file or directory$" \
  "$UVIT" train --config fmnist_uvit_tiny --out /proc/x --steps 1
expect_error "^uvit: error: --npy /proc/x.npy: cannot create /proc/x.npy: No such file or directory$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 1 --npy /proc/x.npy

# A Skip-DiT model: `eval --skip-cache 2` stopped by SIGHUP (a closed terminal) ended without the
# line SIGINT and SIGTERM print; now it says the finished chunks are kept (exit 129), its manifest
# records the Skip-Cache (so a resume with another is refused), and under nohup it goes on.
run "$UVIT" train --config fmnist_skip_dit_tiny --out "$tmp/sk" --steps 2 "${S[@]}"
SK=$tmp/sk/nnet_ema.safetensors
inception_weights I "${2:-}"
"$PY" scripts/eval_fmnist.py --make-test-samples "$tmp/ref.npy" --n 8 >/dev/null || fail "eval_fmnist.py"
run "$UVIT" fid-stats "$tmp/ref.npy" --out "$tmp/ref.npz" --inception "$I" -q
EV0=(eval --config fmnist_skip_dit_tiny --weights "$SK" --chunk 1 --steps 2 --ref "$tmp/ref.npz"
  --inception "$I" --metrics fid -q)
EV=("${EV0[@]}" --skip-cache 2)
"$UVIT" "${EV[@]}" --n 40 --out "$tmp/ev/s.npz" >/dev/null 2>"$tmp/ev.err" &
p=$!
for _ in $(seq 1200); do compgen -G "$tmp/ev/s.npz.parts/chunk_*.npz" >/dev/null && break; sleep 0.05; done
kill -HUP "$p"
wait "$p"
rc=$?
[ "$rc" = 129 ] && compgen -G "$tmp/ev/s.npz.parts/chunk_*.npz" >/dev/null &&
  [ "$(cat "$tmp/ev.err")" = "interrupted: the finished chunks are kept in $tmp/ev/s.npz.parts; run the same command again to resume" ] &&
  grep -q '"skip_cache": *"2"' "$tmp/ev/s.npz.parts/manifest.json" &&
  echo "ok: SIGHUP of eval: chunks kept and said, exit 129" ||
  fail "SIGHUP of eval: exit $rc, $(ls "$tmp/ev/s.npz.parts" 2>&1): $(cat "$tmp/ev.err")"
expect_error "skip_cache" "$UVIT" "${EV0[@]}" --n 40 --out "$tmp/ev/s.npz"
nohup "$UVIT" "${EV[@]}" --n 3 --out "$tmp/evn/s.npz" --json "$tmp/evn/r.json" >/dev/null 2>"$tmp/evn.err" &
p=$!
for _ in $(seq 1200); do compgen -G "$tmp/evn/s.npz.parts/chunk_*.npz" >/dev/null && break; sleep 0.05; done
kill -HUP "$p"
wait "$p"
rc=$?
[ "$rc" = 0 ] && grep -q '"skip_cache": *"2"' "$tmp/evn/r.json" && echo "ok: nohup eval: SIGHUP ignored" ||
  fail "nohup eval after SIGHUP: exit $rc: $(cat "$tmp/evn.err")"

# `uvit sample` recorded `sampler.skip_cache` in its PNGs, `uvit serve` (and the C API) did not.
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: serve's record (uvit built without cpp-httplib)"
else
  serve_up --config fmnist_skip_dit_tiny --weights "$SK"
  curl -sf -m 120 -H 'Content-Type: application/json' -d '{"prompt": "sneaker", "steps": 2, "skip_cache": 2}' \
    "$B/sdapi/v1/txt2img" >"$tmp/t2i.json" || fail "txt2img with skip_cache: $(cat "$tmp/server.log")"
  "$PY" - "$tmp/t2i.json" <<'PYEOF' && echo "ok: serve records sampler.skip_cache" || fail "serve's PNG record"
import base64, io, json, sys
from PIL import Image
rec = json.loads(Image.open(io.BytesIO(base64.b64decode(json.load(open(sys.argv[1]))["images"][0]))).info["uvit-params"])
assert rec["sampler"].get("skip_cache") == "2", rec
PYEOF
  serve_down TERM
fi

exit $fails
