#!/usr/bin/env bash
# uvit train under mpirun (docs/distributed.md "Checkpoints and resume"): every rank resolves the
# settings itself (its node's presets, its own command line), and the ranks compare them before
# anything is read or made: a rank with another setting is refused in one line from rank 0 naming
# it, all but dataset.path (a node-local copy of the data may lie at another path). And a
# checkpoint saved again while the ranks read it is refused by every rank together, even when one
# rank alone saw the save move. Rank r runs in $tmp/nR (a node-local folder).
set -uo pipefail
source tests/mpi/lib.bash
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
mkdir -p "$tmp/n0" "$tmp/n1"
# ranks R1ARGS: $tmp/node.sh runs uvit in $tmp/nR, rank 1 with R1ARGS (words) after the command's
# own arguments, and with R1ENV (VAR=VALUE words) in its environment.
ranks() {
  cat >"$tmp/node.sh" <<EOF
#!/bin/sh
r=\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-0}}
cd "$tmp/n\$r" || exit 9
[ "\$r" = 1 ] && exec env ${R1ENV:-} "$UVIT" "\$@" $*
exec "$UVIT" "\$@"
EOF
  chmod +x "$tmp/node.sh"
}
refused() { one_error_line "$1" "$tmp/node.sh" "${@:2}"; }  # refused NEEDLE ARGS...
no_run() {  # no_run DIR: nothing was trained or made in DIR
  [ ! -e "$1" ] && echo "ok: nothing made in $1" || fail "the refused job made $1: $(ls "$1")"
}
T=(train --no-grid -q --steps 2)
SETTINGS="the training settings: rank 1 resolved other ones than rank 0"
ADVICE="every rank resolves --config, --set and the other options itself"

# Alike on both ranks: the job trains. dataset.path may differ: rank 1 reads its own copy of the
# data (--data: another path to the same files), and the run records rank 0's (the preset's).
ln -s /usr/share/datasets/fashion-mnist "$tmp/n1/fm"
ranks --data "$tmp/n1/fm"
run timeout -k 10 300 "$MPIRUN" -np 2 "$tmp/node.sh" "${T[@]}" --config "$tmp/tiny.json" \
  --out "$tmp/a"
grep -q '"step":2' "$tmp/a/log.jsonl" && grep -q '"path": "/usr/share/datasets/fashion-mnist"' \
  "$tmp/a/config.json" && echo "ok: another --data path on rank 1 trains, rank 0's recorded" ||
  fail "the job with rank 1's own data path: $(cat "$tmp/err")"

# Rank 1 is given another --set: refused before any step, naming the setting and both values.
ranks --set optimizer.lr=0.0005
refused "$SETTINGS (optimizer.lr 0.0005 on rank 1 against rank 0's 0.001): $ADVICE" \
  "${T[@]}" --config "$tmp/tiny.json" --out "$tmp/b"
no_run "$tmp/b"
# Rank 1's node has another preset behind the same name (a relative --config, or UVIT_CONFIG_DIR).
"$PY" tests/e2e/data/tiny_config.py "$tmp/n0/c.json"
"$PY" tests/e2e/data/tiny_config.py "$tmp/n1/c.json" lr_scheduler.warmup_steps=5
ranks
refused "$SETTINGS (lr_scheduler.warmup_steps 5 on rank 1 against rank 0's 3)" \
  "${T[@]}" --config c.json --out "$tmp/c"
no_run "$tmp/c"
# The same numbers written otherwise on rank 1's node (2 and 0 where rank 0's has 2.0 and 0.0): the
# same settings, compared by value; the job trains. Before, refused as other settings.
"$PY" tests/e2e/data/tiny_config.py "$tmp/n0/v.json"
"$PY" tests/e2e/data/tiny_config.py "$tmp/n1/v.json" nnet.mlp_ratio=2 grad_clip=0
grep -q '"mlp_ratio": 2,' "$tmp/n1/v.json" && grep -q '"mlp_ratio": 2.0,' "$tmp/n0/v.json" ||
  fail "the configs do not write 2 and 2.0"
ranks
run timeout -k 10 300 "$MPIRUN" -np 2 "$tmp/node.sh" "${T[@]}" --config v.json --out "$tmp/v"
grep -q '"step":2' "$tmp/v/log.jsonl" 2>/dev/null &&
  echo "ok: 2 and 2.0, 0 and 0.0 on the two ranks: alike, trained" ||
  fail "the job with the same numbers written otherwise: $(cat "$tmp/err")"
# A setting only one rank has.
ranks --set train.dp_virtual=2
refused "$SETTINGS (train.dp_virtual 2 on rank 1 against rank 0's unset)" \
  "${T[@]}" --config "$tmp/tiny.json" --out "$tmp/d"
no_run "$tmp/d"
# --resume: the run's own settings, then each rank's options (rank 1: another --set).
ranks --set train.log_interval=1
refused "$SETTINGS (train.log_interval 1 on rank 1 against rank 0's 2)" \
  train --no-grid -q --out "$tmp/a" --resume --steps 4
[ -f "$tmp/a/log.jsonl" ] && ! grep -q '"step":4' "$tmp/a/log.jsonl" && ! grep -q '"step":3' "$tmp/a/log.jsonl" &&
  echo "ok: the refused resume trained nothing" || fail "the refused resume trained"

# A checkpoint saved again while the ranks read it (another uvit train writing the run): rank 1
# sees it and rank 0 does not, and every rank refuses with rank 0's one line. Rank 1 waits between
# the checkpoint's record and its load (UVIT_TEST_RECORD_PAUSE) and rank 0 after opening the files
# it loads (UVIT_TEST_RESUME_PAUSE) while another save's files are moved in: rank 0 reads the old
# save whole whenever the moves come, rank 1 the new one after its record of the old. Before, a
# rank that saw it exited alone ("uvit: error: rank R: ...", MPI_Abort) and mpirun ended the job
# with its own lines.
run "$UVIT" "${T[@]}" --config "$tmp/tiny.json" --out "$tmp/q" --seed 9
cp -r "$tmp/a" "$tmp/x"
rm -f "$tmp/pause0" "$tmp/pause1"
cat >"$tmp/node.sh" <<EOF
#!/bin/sh
r=\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-0}}
cd "$tmp/n\$r" || exit 9
[ "\$r" = 1 ] && exec env UVIT_TEST_RECORD_PAUSE="$tmp/pause1" "$UVIT" "\$@"
exec env UVIT_TEST_RESUME_PAUSE="$tmp/pause0" "$UVIT" "\$@"
EOF
failing timeout -k 10 300 "$MPIRUN" -np 2 "$tmp/node.sh" train --no-grid -q --resume "$tmp/x" \
  --out "$tmp/f" --steps 4 >"$tmp/out" 2>"$tmp/err" &
p=$! end=$((SECONDS + 300))
while ! { [ -e "$tmp/pause0" ] && [ -e "$tmp/pause1" ]; } && kill -0 $p 2>/dev/null &&
  ((SECONDS < end)); do sleep 0.05; done
if [ -e "$tmp/pause0" ] && [ -e "$tmp/pause1" ]; then
  for f in nnet.safetensors nnet_ema.safetensors train_state.safetensors; do
    cp "$tmp/q/$f" "$tmp/x/$f.new" && mv "$tmp/x/$f.new" "$tmp/x/$f"
  done
  rm -f "$tmp/pause0" "$tmp/pause1"
else
  fail "the ranks' pauses were not reached: $(cat "$tmp/err")"
fi
wait $p
rc=$? n=$(grep -c '^uvit: error:' "$tmp/err")
if [ $rc -eq 1 ] && [ "$n" -eq 1 ] && grep -q "^uvit: error: $tmp/x: saved again while this call read it (another uvit train is writing its run); run the command again$" "$tmp/err" &&
  ! grep -q "MPI_ABORT\|rank 1:" "$tmp/err"; then
  echo "ok: $(grep '^uvit: error:' "$tmp/err")"
else
  fail "the checkpoint saved again under rank 1 (rc=$rc, $n error lines): $(cat "$tmp/err")"
fi
[ ! -e "$tmp/f/train_state.safetensors" ] && echo "ok: the refused fork trained nothing" ||
  fail "the refused fork trained"
exit $fails
