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
exit $fails
