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

"$PY" - "$tmp" <<'PYEOF' || fail "writing the images and the config"
import json, os, sys
import numpy as np
from PIL import Image
t = sys.argv[1]
rs = np.random.RandomState(0)
os.makedirs(t + "/good")
for i in range(8):
    Image.fromarray(rs.randint(0, 256, (32, 32, 3)).astype(np.uint8)).save(f"{t}/good/{i}.png")
png = open(t + "/good/1.png", "rb").read()
open(t + "/cut.png", "wb").write(png[: len(png) // 2])
c = json.load(open("configs/fmnist_uvit_tiny.json"))
c["nnet"].update(in_chans=3, num_classes=0)
c["train"].update(mode="uncond", save_interval=1000, log_interval=1)
c["sample"].update(cfg=False, scale=0)
c["name"], c["dataset"] = "folder_uvit", {"name": "image_folder", "resolution": 28, "random_flip": False}
json.dump(c, open(t + "/folder.json", "w"))
PYEOF
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
for f in nnet.safetensors nnet_ema.safetensors train_state.safetensors; do
  cmp -s "$tmp/r/$f" "$tmp/straight/$f" && echo "ok: $f = the straight run's" \
    || fail "$f differs from the straight run's"
done
exit $fails
