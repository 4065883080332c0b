#!/usr/bin/env bash
# A snapshot that fails (a full disk in RUN/ckpts: a 1 MB tmpfs there, below one file's 6 MB) after
# the run's own checkpoint of that step was written (docs/ux_audit.md, round 10): the error names the
# snapshot folder and the step of the run's checkpoint, exit 1; the log holds that checkpoint's row
# and the loss window since the last `train` row, so that --resume goes on as if the run had never
# stopped (its next row's loss equals an uninterrupted run's).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
if ! unshare -rm true 2>/dev/null; then
  echo "SKIP: no user and mount namespaces here (unshare -rm) for the small tmpfs"
  exit 0
fi
S=(--config fmnist_uvit_tiny --batch 2 --no-grid -q --threads 1 --set train.save_interval=4
  --set train.log_interval=3)
run "$UVIT" train --out "$tmp/whole" --steps 6 "${S[@]}"
run "$UVIT" train --out "$tmp/full" --steps 3 "${S[@]}"
mkdir -p "$tmp/full/ckpts"
# shellcheck disable=SC2016  # $0 and $@ are the inner shell's
expect_error "^uvit: error: snapshot $tmp/full/ckpts/4 not written (.*No space left on device.*); the run's checkpoint is at step 4 in $tmp/full: continue with --resume$" \
  unshare -rm sh -c 'mount -t tmpfs -o size=1m tmpfs "$0/ckpts" && exec "$@"' "$tmp/full" \
  "$UVIT" train --out "$tmp/full" --resume --steps 6 "${S[@]}"
[ -z "$(ls "$tmp/full/ckpts")" ] || fail "ckpts/ holds $(ls "$tmp/full/ckpts")"
"$PY" - "$tmp/full/log.jsonl" <<'PYEOF' && echo "ok: the run's checkpoint and the loss window are logged" || fail "log: $(cat "$tmp/full/log.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
last = [(r["event"], r["step"], r.get("path"), r.get("window_steps")) for r in rows[-2:]]
assert last == [("checkpoint", 4, ".", None), ("train", 4, None, 1)], last
PYEOF
run "$UVIT" train --out "$tmp/full" --resume --steps 6 "${S[@]}"
"$PY" - "$tmp/whole/log.jsonl" "$tmp/full/log.jsonl" <<'PYEOF' && echo "ok: the resumed run's row at step 6 averages steps 4..6" || fail "logs differ: $(cat "$tmp/full/log.jsonl")"
import json, sys
def train6(p):
    return [r["loss"] for l in open(p) for r in [json.loads(l)] if r["event"] == "train" and r["step"] == 6]
a, b = train6(sys.argv[1]), train6(sys.argv[2])
assert len(a) == 1 and a == b, (a, b)
PYEOF
# A snapshot that fails, and then the log's checkpoint row too (the disk full for both): the
# snapshot's error is the one said. Before, the log row's error, thrown in the snapshot's handler,
# replaced it. A tiny network (files < 11 KB), a file-size limit of 11 KB for the log, whose last
# row is padded so that the rows before the checkpoint's fit and that row does not.
N=(--set nnet.embed_dim=8 --set nnet.depth=1 --set nnet.num_heads=1 --set nnet.mlp_ratio=1)
L=(--no-grid -q --batch 1 --threads 1 --set train.log_interval=1 --set train.save_interval=3)
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/sl" --steps 2 "${L[@]}" "${N[@]}"
cp -a "$tmp/sl" "$tmp/sl_dry"
run "$UVIT" train --out "$tmp/sl_dry" --resume --steps 3 "${L[@]}"
# The bytes the resume appends before its first checkpoint row.
before=$("$PY" -c '
import sys
t = open(sys.argv[1]).read()[len(open(sys.argv[2]).read()):]
print(t.index("\"event\":\"checkpoint\"") - t[:t.index("\"event\":\"checkpoint\"")][::-1].index("\n"))' \
  "$tmp/sl_dry/log.jsonl" "$tmp/sl/log.jsonl")
"$PY" - "$tmp/sl/log.jsonl" $((11 * 1024 - before - 30)) <<'PYEOF' || fail "padding the log"
import sys
p, size = sys.argv[1], int(sys.argv[2])
t = open(p).read()
open(p, "w").write(t[:-1] + " " * (size - len(t)) + "\n")
PYEOF
mkdir -p "$tmp/sl/ckpts"
# shellcheck disable=SC2016  # $0 and $@ are the inner shell's
expect_error "^uvit: error: snapshot $tmp/sl/ckpts/3 not written (.*No space left on device.*); the run's checkpoint is at step 3 in $tmp/sl: continue with --resume$" \
  unshare -rm bash -c 'mount -t tmpfs -o size=4k tmpfs "$0/ckpts" && ulimit -f 11 && trap "" XFSZ && exec "$@"' "$tmp/sl" \
  "$UVIT" train --out "$tmp/sl" --resume --steps 3 "${L[@]}"
run "$UVIT" train --out "$tmp/sl" --resume --steps 4 "${L[@]}"
grep -q "at step 4" "$tmp/out" && echo "ok: the run resumes after the snapshot and its log row failed" ||
  fail "resume after a failed snapshot and log row: $(cat "$tmp/out" "$tmp/err")"
exit $fails
