#!/usr/bin/env bash
# `uvit train --resume [latest|PATH]` as a user types it (docs/cli.md "Resume"): the same command
# with --resume added continues the run (only values that differ are refused), a snapshot
# RUN/ckpts/STEP continues in place or forks into a new --out, bit-identical to a straight run,
# and log.jsonl follows its documented schema.
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
r = rows("R")
assert [x["override"] for x in r if x["event"] == "override"] == [{"train.n_steps": 8}], r
print("ok: log.jsonl rows follow the schema; resumed, rolled-back and forked runs log the straight run's losses")
PYEOF

# Bad paths: one line each, and a fork never overwrites another run.
expect_error "--resume $tmp/nope: not found" "$UVIT" train --out "$tmp/X" --resume "$tmp/nope"
expect_error "not a checkpoint" "$UVIT" train --out "$tmp/X" --resume "$tmp/tiny.json"
expect_error "holds no checkpoint" "$UVIT" train --out "$tmp/X" --resume "$tmp"
expect_error "already holds another run" "$UVIT" train --out "$tmp/R" --resume "$tmp/S/ckpts/4" --steps 8
[ ! -e "$tmp/X" ] || fail "a failed --resume left $tmp/X behind"
exit $fails
