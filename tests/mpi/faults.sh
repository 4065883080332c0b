#!/usr/bin/env bash
# Faults in a 2-rank job (docs/distributed.md): a rank that dies (between steps, or rank 0 inside a
# save) ends the job with its exit status and a message naming it, and the last complete
# checkpoint resumes to the same bits as a run that never failed; SIGTERM to the ranks (what Slurm sends) or SIGUSR1 to mpirun (forwarded) stops every rank
# at the same step with one checkpoint and exit status 0; SIGTERM to mpirun itself (OpenMPI then
# kills the ranks after odls_base_sigkill_timeout, 30 s here) also leaves a complete checkpoint.
set -uo pipefail
source tests/mpi/lib.bash
job=
cleanup() { [ -n "$job" ] && kill -9 "$job" 2>/dev/null; rm -rf "$tmp"; }  # mpirun: SIGKILL
trap cleanup EXIT

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.log_interval=1 train.save_interval=2
T=(train --config "$tmp/tiny.json" --batch 8 --no-grid -q)
state_step() {  # step recorded in a safetensors file's metadata
  "$PY" -c "
import json, struct, sys
d = open(sys.argv[1], 'rb').read(); (n,) = struct.unpack('<Q', d[:8])
print(json.loads(d[8:8 + n]).get('__metadata__', {}).get('step', 'none'))" "$1"
}

# dying NP ARGS: `mpi` for a job one of whose ranks dies. The survivor, blocked in a collective,
# is killed by mpirun (SIGTERM, then SIGKILL after odls_base_sigkill_timeout): it can write
# nothing in either time, so `failing` (lib.bash) puts back OpenMPI's default 1 s.
dying() { failing mpi "$@"; }

# --- rank 1 dies before step 4 (after the checkpoint of step 2) ------------------------------------
run mpi 2 "${T[@]}" --out "$tmp/straight" --steps 6
UVIT_TEST_DIE=1:3 dying 2 "${T[@]}" --out "$tmp/d" --steps 6 >"$tmp/out" 2>"$tmp/err"
rc=$?
# OpenMPI names the rank as "Process name: [[JOB,1],1]" beside "Exit code: 77" (MPICH: "rank 1").
if [ $rc -eq 77 ] && grep -q "rank 1: UVIT_TEST_DIE: dying at step 3" "$tmp/err" &&
  grep -E -q "Process name: \[\[[0-9]+,[0-9]+\],1\]|rank 1 " "$tmp/err"; then
  echo "ok: rank 1 died: mpirun exit status 77, messages name rank 1"
else
  fail "rank death: rc $rc (want 77)"; cat "$tmp/err"
fi
[ "$(state_step "$tmp/d/train_state.safetensors")" = 2 ] && [ "$(state_step "$tmp/d/nnet.safetensors")" = 2 ] ||
  fail "the run left by the dead rank is not the step-2 checkpoint"
run mpi 2 train --out "$tmp/d" --resume -q --no-grid
same_files "$tmp/d" "$tmp/straight" "resumed after a rank died vs never failed"

# --- rank 0 dies inside the checkpoint of step 4, after nnet.safetensors --------------------------
# The files are written into RUN/.saving and moved into RUN only once all three are complete: the
# run's own checkpoint is still step 2's, and --resume continues from it to the straight run's bytes.
UVIT_TEST_DIE=0:4:save dying 2 "${T[@]}" --out "$tmp/s" --steps 6 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 77 ] && grep -q "rank 0: UVIT_TEST_DIE: dying at step 4 (save)" "$tmp/err" &&
  [ "$(state_step "$tmp/s/nnet.safetensors")" = 2 ] && [ "$(state_step "$tmp/s/train_state.safetensors")" = 2 ] ||
  { fail "death inside a save: rc $rc"; cat "$tmp/err"; }
if mpi 2 train --out "$tmp/s" --resume --no-grid >"$tmp/out" 2>"$tmp/err" && [ ! -e "$tmp/s/.saving" ]; then
  same_files "$tmp/s" "$tmp/straight" "resumed after a death inside a save vs never failed"
else
  fail "resume after a death inside a save"; cat "$tmp/err"
fi
# ... and between the renames, after nnet.safetensors: train_state (renamed last) still says step 2,
# the save's other files are in .saving; --resume finishes the save and continues from step 4.
UVIT_TEST_DIE=0:4:rename dying 2 "${T[@]}" --out "$tmp/r" --steps 6 >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 77 ] && grep -q "rank 0: UVIT_TEST_DIE: dying at step 4 (rename)" "$tmp/err" &&
  [ "$(state_step "$tmp/r/nnet.safetensors")" = 4 ] && [ "$(state_step "$tmp/r/train_state.safetensors")" = 2 ] ||
  { fail "death between the renames: rc $rc"; cat "$tmp/err"; }
if mpi 2 train --out "$tmp/r" --resume --no-grid >"$tmp/out" 2>"$tmp/err" &&
  grep -q "held a save cut between its moves: finished it .*, the checkpoint of step 4$" "$tmp/err"; then
  same_files "$tmp/r" "$tmp/straight" "resumed after a death between the renames vs never failed"
else
  fail "resume after a death between the renames"; cat "$tmp/err"
fi

# --- signals ---------------------------------------------------------------------------------------
# start DIR ARGS: a long 2-rank run in the background; waits until it has logged 3 steps.
start() {
  local dir=$1; shift
  "$MPIRUN" -np 2 "$UVIT" "${T[@]}" --out "$dir" --steps 1000000 "$@" >"$tmp/out" 2>"$tmp/err" &
  job=$!
  local waited=0
  until [ -f "$dir/log.jsonl" ] && [ "$(grep -c loss "$dir/log.jsonl")" -ge 3 ]; do
    if ! kill -0 "$job" 2>/dev/null || [ $waited -ge 1200 ]; then
      fail "run in $dir ended or stalled"; cat "$tmp/err"; return 1
    fi
    sleep 0.1; waited=$((waited + 1))
  done
}
finish() {  # finish WANT_RC WHAT DIR: wait for the job, check its status and checkpoint
  local rc
  timeout 120 tail --pid="$job" -f /dev/null; wait "$job"; rc=$?; job=
  local k; k=$(sed -n 's/.*checkpoint written at step \([0-9]*\);.*/\1/p' "$tmp/err")
  local s; s=$(state_step "$3/train_state.safetensors")
  if { [ "$1" = any ] || [ $rc -eq "$1" ]; } && [ -n "$k" ] && [ "$s" = "$k" ] &&
    [ "$(state_step "$3/nnet_ema.safetensors")" = "$k" ] &&
    [ "$(grep -c "checkpoint written" "$tmp/err")" -eq 1 ]; then
    echo "ok: $2: rc $rc, one checkpoint at step $k"
  else
    fail "$2: rc $rc (want $1), reported step '$k', train_state step $s"; cat "$tmp/err"
  fi
}
start "$tmp/t" && { pkill -TERM -P "$job"; finish 0 "SIGTERM to both ranks" "$tmp/t"; }
# The stopped run continues and stays bit-identical to a straight run to the same step.
k=$(state_step "$tmp/t/train_state.safetensors")
run mpi 2 train --out "$tmp/t" --resume --steps $((k + 2)) -q --no-grid
run mpi 2 "${T[@]}" --out "$tmp/t_straight" --steps $((k + 2))
same_files "$tmp/t" "$tmp/t_straight" "SIGTERM-stopped run resumed vs straight"
start "$tmp/u" && { kill -USR1 "$job"; finish 0 "SIGUSR1 to mpirun" "$tmp/u"; }
start "$tmp/m" && { kill -TERM "$job"; finish any "SIGTERM to mpirun" "$tmp/m"; }
exit $fails
