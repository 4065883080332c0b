#!/usr/bin/env bash
# Regressions from the eighteenth new-user audit (docs/ux_audit.md, "round 18"): permissions on a
# shared machine (umask 000), detached and backgrounded runs (a hangup, nohup, output to a file).
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

exit $fails
