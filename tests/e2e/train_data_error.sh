#!/usr/bin/env bash
# A damaged image found mid-training (a PNG cut short: its header passes the walk's checks, its
# pixels fail when drawn) ends `uvit train` with exit 1 and one line naming the file, after the
# checkpoint of the last completed step, as SIGTERM's path writes it (docs/formats.md, "Training
# runs"); with the file replaced, --resume continues from that step bit-identically to a run that
# never met it.
set -uo pipefail
UVIT=$1
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/damaged_folder.py "$tmp" || fail "writing the images and the config"
# Batches of 2 in two micro-batches of 1 (train.accum): the loader fails inside a step, after it
# handed out part of it; the checkpoint records where the step began.
T=(train --config "$tmp/folder.json" --no-grid --batch 2 --set train.accum=2 --threads 2)

# The same folder with 1.png cut: the loader fails on the step that draws it, in its second
# micro-batch (the seed's permutation puts it there, in step 4), so the checkpoint holds 3
# trained steps and a loader position the failed step had already moved past.
cp -r "$tmp/good" "$tmp/bad" && cp "$tmp/cut.png" "$tmp/bad/1.png"
expect_error "bad/1.png: .*; checkpoint written at step 3 (continue with --resume" \
  "$UVIT" "${T[@]}" --data "$tmp/bad" --out "$tmp/r" --steps 8 -q
at=$(sed -n 's/.*checkpoint written at step \([0-9]*\).*/\1/p' "$tmp/err")
"$PY" - "$tmp/r" "${at:-0}" <<'PYEOF' && echo "ok: train_state of step $at, the log's last checkpoint row" \
  || fail "no checkpoint of step $at"
import json, struct, sys
r, at = sys.argv[1], sys.argv[2]
with open(r + "/train_state.safetensors", "rb") as f:
    meta = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))["__metadata__"]
assert meta["step"] == at, meta
rows = [json.loads(l) for l in open(r + "/log.jsonl")]
assert [x["step"] for x in rows if x["event"] == "checkpoint"] == [int(at)], rows
PYEOF

# Fixed (the good file back): --resume goes on from that step, to the weights of a straight run.
cp "$tmp/good/1.png" "$tmp/bad/1.png"
run "$UVIT" "${T[@]}" --data "$tmp/bad" --out "$tmp/r" --resume --steps 8
grep -q "steps $at -> 8," "$tmp/err" \
  && echo "ok: --resume continues from step $at" || { fail "resume: not from step $at"; cat "$tmp/err"; }
run "$UVIT" "${T[@]}" --data "$tmp/good" --out "$tmp/straight" --steps 8 -q
same_files "$tmp/r" "$tmp/straight" "resumed after the data error vs a straight run"
exit $fails
