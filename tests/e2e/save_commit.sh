#!/usr/bin/env bash
# A save cut between its moves (docs/cli.md "Resume"): UVIT_TEST_DIE kills the process after a
# save moved nnet.safetensors into place and before the rest, at a step where the folder already
# held another branch's checkpoint of that same step: the run's own files after going back, and a
# snapshot RUN/ckpts/STEP of the branch left. --resume finishes the save from .saving (the files
# byte for byte those of a save that was never cut) or, with .saving gone, refuses the mix by its
# save_id; before save ids, both resumed silently from one training's weights and another's
# optimizer state. Also: a run's very first save cut so (no train_state outside .saving yet) is
# finished too, and a copy taken mid-save (files of two steps) is refused naming the newest complete
# snapshot of the run's branch. The snapshot a refusal names is one whose files agree (a copied mix
# is skipped; a cut one counts by what its .saving holds), and a fork of a cut snapshot of a run
# another uvit train holds (flock here) reads the save from .saving, leaving that run untouched.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.save_interval=4 train.log_interval=2
# dies DIR PHASE: branch B of a copy of A (back to ckpts/4, another learning rate, to step 8 again),
# killed after the first move of the step-8 save PHASE ("rename": the run's files; "snaprename":
# its snapshot ckpts/8).
back=(--steps 8 --set optimizer.lr=0.003 --no-grid -q)
dies() {
  cp -r "$tmp/A" "$1"
  UVIT_TEST_DIE=0:8:$2 "$UVIT" train --out "$1" --resume "$1/ckpts/4" "${back[@]}" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  [ $rc -eq 77 ] && grep -q "UVIT_TEST_DIE: dying at step 8 ($2)" "$tmp/err" ||
    { fail "$1: the death in the save (rc $rc)"; cat "$tmp/err"; }
}
# Branch A: 8 steps (snapshots ckpts/4 and ckpts/8); B: the same branch as dies() trains, uncut.
run "$UVIT" train --config "$tmp/tiny.json" --batch 4 --seed 5 --no-grid -q --steps 8 --out "$tmp/A"
cp -r "$tmp/A" "$tmp/B"
run "$UVIT" train --out "$tmp/B" --resume "$tmp/B/ckpts/4" "${back[@]}"
cmp -s "$tmp/A/nnet.safetensors" "$tmp/B/nnet.safetensors" && fail "branches A and B are not different trainings"
for f in nnet nnet_ema train_state; do
  grep -aq '"save_id":"[0-9a-f]\{16\}"' "$tmp/B/$f.safetensors" || fail "$f.safetensors records no save_id"
done

# --- the run's own files: nnet of B beside nnet_ema and train_state of A, all of step 8 ---------------
dies "$tmp/R" rename
[ -e "$tmp/R/.saving/train_state.safetensors" ] || fail "the cut save left no .saving"
cp -r "$tmp/R" "$tmp/R2"
run "$UVIT" train --out "$tmp/R" --resume --no-grid
grep -q "^note: $tmp/R held a save cut between its moves: finished it (its last files moved in from $tmp/R/.saving), the checkpoint of step 8$" "$tmp/err" ||
  fail "no line for the finished save: $(cat "$tmp/err")"
grep -q "already at step 8: nothing to train" "$tmp/err" || fail "resume after the finish: $(cat "$tmp/err")"
[ -e "$tmp/R/.saving" ] && fail "$tmp/R/.saving left after the finish"
same_files "$tmp/R" "$tmp/B" "the run's files after a cut save, finished by --resume"
cp -r "$tmp/B" "$tmp/B10"
run "$UVIT" train --out "$tmp/B10" --resume --steps 10 --no-grid -q
run "$UVIT" train --out "$tmp/R" --resume --steps 10 --no-grid -q
same_files "$tmp/R" "$tmp/B10" "trained on to 10 after the finished save"
# Without .saving (deleted), the mix is refused, naming the newest complete snapshot of the run's
# branch: ckpts/4 (ckpts/8 is of branch A, not loaded).
rm -r "$tmp/R2/.saving"
expect_error "^uvit: error: $tmp/R2: nnet.safetensors, nnet_ema.safetensors and train_state.safetensors are from different saves of step 8 (save_id [0-9a-f]*, [0-9a-f]*, [0-9a-f]*: a save cut between its moves, its other files gone); resuming would mix two trainings: its newest complete snapshot is $tmp/R2/ckpts/4: --resume $tmp/R2/ckpts/4$" \
  "$UVIT" train --out "$tmp/R2" --resume --steps 10 --no-grid -q

# --- a snapshot of the branch left, replaced at its step: ckpts/8 cut after its nnet ---------------
dies "$tmp/S" snaprename
[ -e "$tmp/S/ckpts/8/.saving/train_state.safetensors" ] || fail "the cut snapshot left no .saving"
same_files "$tmp/S" "$tmp/B" "the run's own files, saved before the cut snapshot"
for c in S3 S4 S5; do cp -r "$tmp/S" "$tmp/$c"; done
run "$UVIT" train --out "$tmp/S" --resume "$tmp/S/ckpts/8" --no-grid
grep -q "^note: $tmp/S/ckpts/8 held a save cut between its moves: finished it" "$tmp/err" ||
  fail "no line for the finished snapshot: $(cat "$tmp/err")"
same_files "$tmp/S/ckpts/8" "$tmp/B/ckpts/8" "the snapshot after a cut save, finished by --resume"
# Its log copy is branch B's, the run's log as the cut save copied it: the snapshot is of the run's
# branch again.
cmp -s "$tmp/S/ckpts/8/log.jsonl" "$tmp/S/log.jsonl" || fail "the finished snapshot's log copy is not the run's log"
# A fork of the cut snapshot finishes it too, and trains on as a fork of the uncut one.
run "$UVIT" train --out "$tmp/F" --resume "$tmp/S3/ckpts/8" --steps 10 --no-grid -q
run "$UVIT" train --out "$tmp/Fref" --resume "$tmp/B/ckpts/8" --steps 10 --no-grid -q
same_files "$tmp/F" "$tmp/Fref" "a fork of a cut snapshot vs of the uncut one"
# The same fork while another uvit train holds the run (flock, as it does): the run is not written,
# so the save is read whole from ckpts/8/.saving, not finished there; the fork trains on as one of
# the uncut snapshot. Before, it was refused as a mix of two saves.
cp -r "$tmp/S4" "$tmp/S4was"
run flock "$tmp/S4" "$UVIT" train --out "$tmp/F2" --resume "$tmp/S4/ckpts/8" --steps 10 --no-grid
grep -q "^note: $tmp/S4/ckpts/8 holds a save cut between its moves, and another uvit train is writing $tmp/S4: the fork reads that save from $tmp/S4/ckpts/8/.saving and leaves the folder as it is$" "$tmp/err" ||
  fail "no line for the fork of a cut snapshot of a locked run: $(cat "$tmp/err")"
same_files "$tmp/F2" "$tmp/Fref" "a fork of a cut snapshot of a locked run vs of the uncut one"
# Its log is the fork's of the finished snapshot (rows alike but for times and the path resumed).
"$PY" - "$tmp/F2/log.jsonl" "$tmp/F/log.jsonl" <<'PYEOF' || fail "the locked fork's log differs"
import json, sys
clock = ("t", "elapsed_s", "img_s", "from")
rows = [[{k: v for k, v in json.loads(l).items() if k not in clock} for l in open(p)]
        for p in sys.argv[1:]]
sys.exit(rows[0] != rows[1])
PYEOF
diff -r "$tmp/S4" "$tmp/S4was" >/dev/null || fail "the fork wrote into the locked run $tmp/S4"
# A fork of ckpts/8 while the run holding it re-saves that snapshot (another branch's step 8, its
# files renamed over these in commit order) between the fork's check of the files and its load,
# held there by UVIT_TEST_RESUME_PAUSE: the fork loads the files it checked, one open each, and
# trains on as a fork of the save it read. Before, it opened the weights again by path and loaded
# branch A's beside branch B's optimizer state.
cp -r "$tmp/B" "$tmp/X"
rm -f "$tmp/pause"
UVIT_TEST_RESUME_PAUSE=$tmp/pause "$UVIT" train --out "$tmp/F4" --resume "$tmp/X/ckpts/8" --steps 10 \
  --no-grid -q >"$tmp/out" 2>"$tmp/err" &
p=$! end=$((SECONDS + 300))
while [ ! -e "$tmp/pause" ] && kill -0 $p 2>/dev/null && ((SECONDS < end)); do sleep 0.05; done
if [ -e "$tmp/pause" ]; then
  for f in nnet.safetensors nnet_ema.safetensors log.jsonl train_state.safetensors; do
    cp "$tmp/A/ckpts/8/$f" "$tmp/X/ckpts/8/$f.new" && mv "$tmp/X/ckpts/8/$f.new" "$tmp/X/ckpts/8/$f"
  done
  rm -f "$tmp/pause"
else
  fail "the resume's pause was not reached"
fi
wait $p || fail "the fork during a re-save (rc $?): $(cat "$tmp/err")"
same_files "$tmp/F4" "$tmp/Fref" "a fork of a snapshot re-saved between its check and its load"
# Its log is of the save it loaded too (read with its step before the load, checked against the
# train_state loaded): the rows of branch B up to step 8, as the fork of B's own snapshot. Before,
# the log copy was read by path after the load: branch A's rows, beside branch B's weights.
same_log() {  # same_log LOG_A LOG_B: the rows alike but for times and the path resumed
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
clock = ("t", "elapsed_s", "img_s", "from")
rows = [[{k: v for k, v in json.loads(l).items() if k not in clock} for l in open(p)]
        for p in sys.argv[1:]]
sys.exit(rows[0] != rows[1])
PYEOF
}
same_log "$tmp/F4/log.jsonl" "$tmp/Fref/log.jsonl" && echo "ok: the re-saved snapshot's fork logs the rows of the save it loaded" ||
  fail "the fork of a re-saved snapshot logs another save's rows: $(diff <(cut -c1-60 "$tmp/F4/log.jsonl") <(cut -c1-60 "$tmp/Fref/log.jsonl"))"
# The hint of a refusal counts the cut snapshot by the save --resume finishes (its .saving: branch
# B's files and log copy), so it names ckpts/8, not ckpts/4 (before: A's log copy in ckpts/8 made it
# a snapshot of the branch left).
rm "$tmp/S5/train_state.safetensors"
expect_error "^uvit: error: $tmp/S5: nothing to resume (no train_state.safetensors; its newest complete snapshot is $tmp/S5/ckpts/8: --resume $tmp/S5/ckpts/8)$" \
  "$UVIT" train --out "$tmp/S5" --resume --no-grid -q
run "$UVIT" train --out "$tmp/S5" --resume "$tmp/S5/ckpts/8" --steps 10 --no-grid -q
same_files "$tmp/S5" "$tmp/B10" "resumed from the cut snapshot the refusal names, to step 10"
# The same cut snapshot made by hand, without .saving (so the check needs no test hook): B's run
# whose ckpts/8 holds B's nnet beside A's nnet_ema, log copy and train_state. Refused by save_id.
cp -r "$tmp/B" "$tmp/S2"
for f in nnet_ema.safetensors log.jsonl train_state.safetensors; do cp "$tmp/A/ckpts/8/$f" "$tmp/S2/ckpts/8/"; done
expect_error "^uvit: error: $tmp/S2/ckpts/8: nnet.safetensors, nnet_ema.safetensors and train_state.safetensors are from different saves of step 8 (.*); resuming would mix two trainings: resume another checkpoint of the run$" \
  "$UVIT" train --out "$tmp/S2" --resume "$tmp/S2/ckpts/8" --steps 10 --no-grid -q
# Such a mix with branch B's log copy kept (so of the run's branch), in a run whose own train_state
# is gone: the refusal names ckpts/4, which resumes, not ckpts/8, which --resume refuses in turn
# (before, the hint took any snapshot holding a train_state).
cp -r "$tmp/B" "$tmp/M"
cp "$tmp/A/ckpts/8/nnet_ema.safetensors" "$tmp/A/ckpts/8/train_state.safetensors" "$tmp/M/ckpts/8/"
rm "$tmp/M/train_state.safetensors"
expect_error "^uvit: error: $tmp/M: nothing to resume (no train_state.safetensors; its newest complete snapshot is $tmp/M/ckpts/4: --resume $tmp/M/ckpts/4)$" \
  "$UVIT" train --out "$tmp/M" --resume --no-grid -q
run "$UVIT" train --out "$tmp/M" --resume "$tmp/M/ckpts/4" --steps 8 --no-grid -q
same_files "$tmp/M" "$tmp/B" "resumed from the snapshot the refusal names (branch B again)"

# --- at a new step (no mix of one step): the cut save of step 4 is finished, not skipped -----------
"$PY" tests/e2e/data/tiny_config.py "$tmp/t2.json" train.save_interval=2 train.log_interval=2
T2=(train --config "$tmp/t2.json" --batch 4 --seed 5 --no-grid -q)
run "$UVIT" "${T2[@]}" --steps 6 --out "$tmp/straight"
UVIT_TEST_DIE=0:4:rename "$UVIT" "${T2[@]}" --steps 6 --out "$tmp/N" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 77 ] || fail "the death at step 4: $(cat "$tmp/err")"
run "$UVIT" train --out "$tmp/N" --resume --no-grid
grep -q "finished it .*, the checkpoint of step 4$" "$tmp/err" || fail "step 4's cut save: $(cat "$tmp/err")"
same_files "$tmp/N" "$tmp/straight" "resumed after a cut save of step 4 vs never cut"
# A new snapshot cut so (ckpts/4 holds only its nnet, the rest in .saving), forked while another
# uvit train holds the run: read from .saving (before: "nothing to resume").
UVIT_TEST_DIE=0:4:snaprename "$UVIT" "${T2[@]}" --steps 6 --out "$tmp/N2" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 77 ] || fail "the death in the snapshot of step 4: $(cat "$tmp/err")"
[ -e "$tmp/N2/ckpts/4/train_state.safetensors" ] && fail "the cut snapshot holds a train_state"
run flock "$tmp/N2" "$UVIT" train --out "$tmp/F3" --resume "$tmp/N2/ckpts/4" --no-grid -q
same_files "$tmp/F3" "$tmp/straight" "a fork of a new cut snapshot of a locked run vs never cut"
[ -e "$tmp/N2/ckpts/4/.saving/train_state.safetensors" ] || fail "the fork finished the locked run's snapshot"

# --- the run's very first save cut: no train_state in the run yet, only in .saving ------------------
UVIT_TEST_DIE=0:2:rename "$UVIT" "${T2[@]}" --steps 6 --out "$tmp/first" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 77 ] || fail "the death at step 2: $(cat "$tmp/err")"
[ -e "$tmp/first/train_state.safetensors" ] && fail "the first cut save left a train_state in the run"
[ -e "$tmp/first/.saving/train_state.safetensors" ] || fail "the first cut save left no .saving"
run "$UVIT" train --out "$tmp/first" --resume --no-grid
grep -q "finished it .*, the checkpoint of step 2$" "$tmp/err" || fail "the first save, cut: $(cat "$tmp/err")"
same_files "$tmp/first" "$tmp/straight" "resumed after the run's first save was cut vs never cut"

# --- a copy taken while the run saved (cp -a during the save of step 12): nnet* of step 8 beside
# train_state of step 12, no .saving, ckpts/12 not copied. The refusal names the newest complete
# snapshot of the run's branch, which resumes (to the bytes of the run it was copied from).
cp -r "$tmp/A" "$tmp/C"
run "$UVIT" train --out "$tmp/C" --resume --steps 12 --no-grid -q
cp -r "$tmp/C" "$tmp/Ccopy"
rm -r "$tmp/Ccopy/ckpts/12"
cp "$tmp/A/nnet.safetensors" "$tmp/A/nnet_ema.safetensors" "$tmp/Ccopy/"
expect_error "^uvit: error: $tmp/Ccopy: nnet.safetensors, nnet_ema.safetensors and train_state.safetensors are from different steps (an interrupted save?); its newest complete snapshot is $tmp/Ccopy/ckpts/8: --resume $tmp/Ccopy/ckpts/8$" \
  "$UVIT" train --out "$tmp/Ccopy" --resume --steps 14 --no-grid -q
run "$UVIT" train --out "$tmp/Ccopy" --resume "$tmp/Ccopy/ckpts/8" --steps 12 --no-grid -q
same_files "$tmp/Ccopy" "$tmp/C" "the copy resumed from the snapshot the refusal names"
exit $fails
