#!/usr/bin/env bash
# `uvit train --resume [latest|PATH]` as a user types it (docs/cli.md "Resume"): the same command
# with --resume added continues the run (only values that differ are refused), a snapshot
# RUN/ckpts/STEP continues in place or forks into a new --out, bit-identical to a straight run,
# a snapshot of a branch the run went back from continues with that branch's log, pruning counts
# the current branch's snapshots only, and log.jsonl follows its documented schema.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.save_interval=4 train.log_interval=2
same_tensors() {  # same_tensors A B WHAT: nnet_ema and train_state tensors byte for byte (metadata aside)
  "$PY" - "$1" "$2" <<'PYEOF' || fail "$3: weights differ"
import json, struct, sys
def tensors(p):
    d = open(p, "rb").read(); (n,) = struct.unpack("<Q", d[:8]); h = json.loads(d[8:8 + n])
    h.pop("__metadata__", None)
    return {k: d[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
for f in ("nnet_ema.safetensors", "train_state.safetensors"):
    assert tensors(sys.argv[1] + "/" + f) == tensors(sys.argv[2] + "/" + f), f
PYEOF
}

# The straight run: 8 steps.
cmd=(train --config "$tmp/tiny.json" --batch 16 --seed 5 --set optimizer.lr=0.002 --no-grid -q)
run "$UVIT" "${cmd[@]}" --steps 8 --out "$tmp/S"

# The issue's case: 4 steps, then the very same command with --steps 8 and --resume added.
run "$UVIT" "${cmd[@]}" --steps 4 --out "$tmp/R"
run "$UVIT" "${cmd[@]}" --steps 8 --out "$tmp/R" --resume
grep -q "at step 8" "$tmp/out" || fail "re-run with --resume: $(cat "$tmp/out" "$tmp/err")"
same_tensors "$tmp/S" "$tmp/R" "the same command with --resume"
# Only values that differ from the run's own are refused.
expect_error "--seed 6 differs from the run's seed 5" "$UVIT" train --config "$tmp/tiny.json" --batch 16 --seed 6 \
  --set optimizer.lr=0.002 --steps 9 --out "$tmp/R" --resume
expect_error "--batch 4 differs from the run's batch 16" "$UVIT" train --out "$tmp/R" --resume --batch 4 --steps 9
"$PY" tests/e2e/data/tiny_config.py "$tmp/deeper.json" nnet.depth=3
expect_error "was trained with config tiny" "$UVIT" train --config "$tmp/deeper.json" --out "$tmp/R" --resume --steps 9
expect_error "nnet.\* cannot change" "$UVIT" train --config "$tmp/tiny.json" --set nnet.depth=3 --out "$tmp/R" --resume --steps 9
# `--resume latest` is the plain --resume: nothing left to train at the run's own 8 steps.
run "$UVIT" train --out "$tmp/R" --resume latest --no-grid
grep -q "already at step 8: nothing to train" "$tmp/err" || fail "--resume latest: $(cat "$tmp/err")"

# A snapshot in place: back to step 4 of the straight run's copy, trained again to 8.
cp -r "$tmp/S" "$tmp/B"
run "$UVIT" train --out "$tmp/B" --resume "$tmp/B/ckpts/4" --steps 8 --no-grid
grep -q "continuing from the checkpoint of step 4" "$tmp/err" || fail "rollback: $(cat "$tmp/err")"
same_tensors "$tmp/S" "$tmp/B" "--resume RUN/ckpts/4 in place"
# A fork: another run's snapshot (its train_state.safetensors named) continued in a new folder.
run "$UVIT" train --out "$tmp/F" --resume "$tmp/S/ckpts/4/train_state.safetensors" --steps 8 --no-grid -q
same_tensors "$tmp/S" "$tmp/F" "--resume S/ckpts/4 --out F (a fork)"
cmp -s "$tmp/S/config.json" "$tmp/F/config.json" || fail "the fork's config.json differs from its run's"

# Back to a stale branch: B2 goes back from 8 to 4 and trains another branch to 6; its ckpts/8 is
# then a snapshot of the branch left. Resuming it continues that branch (S's to 10, as S10) with
# that branch's log, and the rows of the branch it leaves go to log_dropped.jsonl.
cp -r "$tmp/S" "$tmp/S10" && run "$UVIT" train --out "$tmp/S10" --resume --steps 10 --no-grid -q
cp -r "$tmp/S" "$tmp/B2"
run "$UVIT" train --out "$tmp/B2" --resume "$tmp/B2/ckpts/4" --steps 6 --no-grid
grep -q "^note: snapshot 8 in $tmp/B2/ckpts is of a branch the run went back from: train.keep_snapshots does not count it" \
  "$tmp/err" || fail "going back: no line on the stale snapshot: $(cat "$tmp/err")"
cp -r "$tmp/B2" "$tmp/B4" && cp -r "$tmp/B2" "$tmp/B3" && rm -f "$tmp/B3/ckpts/8/log.jsonl"
run "$UVIT" train --out "$tmp/B2" --resume "$tmp/B2/ckpts/8" --steps 10 --no-grid
grep -q "^$tmp/B2/ckpts/8 is a snapshot of a branch its run went back from: $tmp/B2/log.jsonl now holds that branch's rows" \
  "$tmp/err" || fail "stale resume: $(cat "$tmp/err")"
same_tensors "$tmp/S10" "$tmp/B2" "--resume of a stale snapshot"
# A fork of the stale snapshot takes its branch's log too.
run "$UVIT" train --out "$tmp/F2" --resume "$tmp/B4/ckpts/8" --steps 10 --no-grid -q
same_tensors "$tmp/S10" "$tmp/F2" "a fork of a stale snapshot"
# A snapshot written before snapshots kept their log: one line says what is not restored.
run "$UVIT" train --out "$tmp/B3" --resume "$tmp/B3/ckpts/8" --steps 10 --no-grid
grep -q "^note: $tmp/B3/ckpts/8 holds no copy of its log .* are not restored" "$tmp/err" ||
  fail "stale resume without a log copy: $(cat "$tmp/err")"

# Pruning counts the current branch's snapshots only: back from 8 to 6 with a snapshot every step,
# keep_snapshots 2 keeps 6 and 7 of this branch and the stale 8; this branch's save at 8 replaces
# the stale one, saying so.
P=(--config "$tmp/tiny.json" --batch 16 --seed 5 --set train.save_interval=2 --set train.keep_snapshots=2 --no-grid)
run "$UVIT" train "${P[@]}" --out "$tmp/P" --steps 8 -q
run "$UVIT" train --out "$tmp/P" --resume "$tmp/P/ckpts/6" --steps 7 --set train.save_interval=1 --no-grid -q
[ "$(ls "$tmp/P/ckpts" | sort -n | xargs)" = "6 7 8" ] || fail "P/ckpts after going back holds: $(ls "$tmp/P/ckpts" | xargs)"
run "$UVIT" train --out "$tmp/P" --resume --steps 8 --no-grid
grep -q "^note: replacing $tmp/P/ckpts/8, a snapshot of a branch the run went back from" "$tmp/err" ||
  fail "replacing a stale snapshot: $(cat "$tmp/err")"
[ "$(ls "$tmp/P/ckpts" | sort -n | xargs)" = "7 8" ] || fail "P/ckpts at 8 holds: $(ls "$tmp/P/ckpts" | xargs)"

"$PY" - "$tmp" <<'PYEOF' || fail "log.jsonl"
import json, math, sys
t = sys.argv[1]
def rows(run):
    out = [json.loads(l) for l in open(f"{t}/{run}/log.jsonl")]
    for r in out:  # the schema of docs/cli.md
        assert r["event"] in ("start", "train", "override", "checkpoint", "sample", "resume"), r
        assert isinstance(r["step"], int) and isinstance(r["t"], float) and r["t"] > 1.7e9, r
        if r["event"] == "train":
            assert math.isfinite(r["loss"]) and ("lr" in r or "window_steps" in r), r
        if r["event"] == "start":
            assert r["device"] == "cpu" and r["precision"] in ("fp32", "bf16"), r
        if r["event"] == "checkpoint":
            assert r["path"] in (".", f"ckpts/{r['step']}"), r
    return out
losses = lambda rs: [(r["step"], r["loss"]) for r in rs if r["event"] == "train" and "lr" in r]
s = rows("S")
assert [r["step"] for r in s if r["event"] == "checkpoint"] == [4, 8, 8], s
for run in ("R", "B", "F"):
    assert losses(rows(run)) == losses(s), (run, losses(rows(run)), losses(s))
b = rows("B")  # cut back to step 4, then the resume row, then steps 6 and 8 again
assert [r["step"] for r in b if r["event"] == "train"] == [2, 4, 6, 8], b
res = [r for r in b if r["event"] == "resume"]
assert len(res) == 1 and res[0]["step"] == 4 and res[0]["from"].endswith("B/ckpts/4"), res
assert [r["event"] for r in rows("F")].count("resume") == 1
# The rows cut from B's log (steps 5 to 8 of S, which B was a copy of) are kept beside it.
d = [json.loads(l) for l in open(f"{t}/B/log_dropped.jsonl")]
assert d[0]["event"] == "dropped" and d[0]["step"] == 4 and d[0]["from"].endswith("B/ckpts/4"), d[0]
assert d[1:] == [r for r in s if r["step"] > 4], d
import os
assert not os.path.exists(f"{t}/F/log_dropped.jsonl") and not os.path.exists(f"{t}/S/log_dropped.jsonl")
assert not os.path.exists(f"{t}/F2/log_dropped.jsonl")
# Back to the stale branch: B2's log is S's rows up to the save of ckpts/8 (the snapshot's copy),
# a restored resume row, then steps 9 and 10: S10's losses.
s10, b2 = rows("S10"), rows("B2")
for run in ("B2", "F2"):
    assert losses(rows(run)) == losses(s10), (run, losses(rows(run)), losses(s10))
i = [k for k, r in enumerate(b2) if r["event"] == "resume"][-1]
assert b2[i]["step"] == 8 and b2[i]["restored"] is True and b2[:i] == s[:i], b2
assert b2[i - 1]["event"] == "train" and b2[i - 1]["step"] == 8, b2[i - 1]
f2 = rows("F2")
assert [r for r in f2 if r["event"] == "resume"][0]["restored"] is True, f2
# Every row stays somewhere: B2's log before (B4) is S's rows up to step 4 followed by the rows
# moved out in the second `dropped` block.
d = [json.loads(l) for l in open(f"{t}/B2/log_dropped.jsonl")]
marks = [k for k, r in enumerate(d) if r["event"] == "dropped"]
assert len(marks) == 2 and d[marks[1]]["step"] == 8 and d[marks[1]]["from"].endswith("B2/ckpts/8"), d
b4 = rows("B4")
assert b4 == [r for r in s if r["step"] <= 4] + d[marks[1] + 1:], (b4, d)
assert d[marks[1] + 1]["event"] == "resume" and d[marks[1] + 1]["step"] == 4, d
r = rows("R")
assert [x["override"] for x in r if x["event"] == "override"] == [{"train.n_steps": 8}], r
print("ok: log.jsonl rows follow the schema; resumed, rolled-back, forked and restored runs log the straight run's losses")
PYEOF

# Bad paths: one line each, and a fork never overwrites another run.
expect_error "--resume $tmp/nope: not found" "$UVIT" train --out "$tmp/X" --resume "$tmp/nope"
expect_error "not a checkpoint" "$UVIT" train --out "$tmp/X" --resume "$tmp/tiny.json"
expect_error "holds no checkpoint" "$UVIT" train --out "$tmp/X" --resume "$tmp"
expect_error "already holds another run" "$UVIT" train --out "$tmp/R" --resume "$tmp/S/ckpts/4" --steps 8
[ ! -e "$tmp/X" ] || fail "a failed --resume left $tmp/X behind"
exit $fails
