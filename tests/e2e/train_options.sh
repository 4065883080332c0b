#!/usr/bin/env bash
# `uvit train` options around a run: --resume keeps the run's own config (another --config is
# refused), options given with --resume are recorded in the run's files, a resumed log averages the
# same windows as a straight run, runs that cannot start leave no folder, sample grids are cheap and
# configurable, and the progress display suits a log file.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.eval_interval=1000
cp "$tmp/tiny.json" "$tmp/other.json"
meta() {  # meta FILE KEY: a safetensors metadata value
  "$PY" -c 'import json, struct, sys; d = open(sys.argv[1], "rb").read(); (n,) = struct.unpack("<Q", d[:8])
print(json.loads(d[8:8 + n]).get("__metadata__", {}).get(sys.argv[2], "none"))' "$1" "$2"
}
jget() { "$PY" -c 'import json, sys; print(eval("json.load(open(sys.argv[1]))" + sys.argv[2]))' "$1" "$2"; }

# --resume --config: another config is refused and the run keeps its name; the same one is fine.
R=$tmp/r
run "$UVIT" train --config "$tmp/tiny.json" --out "$R" --steps 4 --no-grid -q
expect_error "trained with config tiny" "$UVIT" train --out "$R" --resume --config "$tmp/other.json" --steps 6 -q
[ "$(meta "$R/train_state.safetensors" config)/$(meta "$R/train_state.safetensors" step)" = tiny/4 ] ||
  fail "the refused --config changed the run's checkpoint"
run "$UVIT" train --out "$R" --resume --config "$tmp/tiny.json" --steps 5 --no-grid -q
run "$UVIT" train --out "$R" --resume --config "$R" --steps 5 --no-grid -q  # the run's folder
[ "$(meta "$R/nnet_ema.safetensors" config)" = tiny ] || fail "weights relabelled"

# Options given with --resume are recorded: config.json and a log row at the step they start.
run "$UVIT" train --out "$R" --resume --steps 8 --set optimizer.lr=0.0005 --no-grid -q
[ "$(jget "$R/config.json" '["train"]["n_steps"]')/$(jget "$R/config.json" '["optimizer"]["lr"]')" = 8/0.0005 ] ||
  fail "config.json does not record --steps 8 --set optimizer.lr=0.0005: $(cat "$R/config.json")"
grep -q '"event":"override","override":{"optimizer.lr":0.0005,"train.n_steps":8},"step":5,' "$R/log.jsonl" ||
  fail "log.jsonl does not record the overrides: $(grep override "$R/log.jsonl")"
# A plain --resume keeps them: nothing left to train at step 8, then lr 0.0005 to step 10.
run "$UVIT" train --out "$R" --resume --no-grid
grep -q "already at step 8: nothing to train" "$tmp/err" || fail "finished run: $(cat "$tmp/err")"
run "$UVIT" train --out "$R" --resume --steps 10 --no-grid -q
grep '"step":10' "$R/log.jsonl" | grep -q '"lr":0.0005' ||
  fail "step 10 did not train at lr 0.0005: $(tail -2 "$R/log.jsonl")"
expect_error "already at step 10, past the 6 steps" "$UVIT" train --out "$R" --resume --steps 6 -q

# A run stopped at step 5 and resumed to 10 logs the same windows (2, 4, 6, ...) as a straight
# run, and its progress counts absolute steps on plain lines (stderr is a file here).
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/s" --steps 10 --no-grid -q
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/w" --steps 5 --no-grid -q
run "$UVIT" train --out "$tmp/w" --resume --steps 10 --no-grid
grep -q "^train 10/10 " "$tmp/err" || fail "resumed progress does not end at 10/10: $(cat "$tmp/err")"
if grep -q $'\r' "$tmp/err"; then fail "carriage returns in non-terminal progress"; fi
# At most a line per 10 % of the 10 steps: 5 for steps 6..10.
[ "$(grep -c '^train ' "$tmp/err")" -le 5 ] || fail "progress not throttled: $(cat "$tmp/err")"
"$PY" - "$tmp/s/log.jsonl" "$tmp/w/log.jsonl" <<'PYEOF' || fail "resumed log windows differ"
import json, sys
rows = lambda p: [(r["step"], r["loss"]) for r in map(json.loads, open(p)) if "loss" in r and "window_steps" not in r]
a, b = rows(sys.argv[1]), rows(sys.argv[2])
assert a == b and [s for s, _ in a] == [2, 4, 6, 8, 10], (a, b)
print("ok: the resumed log averages the same windows as a straight run")
PYEOF

# Where stderr is a file: plain lines, no '\r', one per 10 % of the steps (or 30 s) and the last.
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/plain" --steps 40 --no-grid
"$PY" - "$tmp/err" <<'PYEOF' || fail "plain progress: $(cat "$tmp/err")"
import re, sys
t = open(sys.argv[1], newline="").read()
assert "\r" not in t and "\033" not in t, "terminal control characters in a log"
lines = [s for s in t.split("\n") if re.match(r"train \d+/40 ", s)]
assert 2 <= len(lines) <= 12 and lines[-1].startswith("train 40/40 (100%)"), lines
print("ok: plain progress,", len(lines), "lines for 40 steps")
PYEOF

# On a terminal (script(1) provides one): tqdm's bar redrawn in place, each redraw clearing the
# rest of the line, and the first rate shown is not the absurd one of a few microseconds.
if command -v script >/dev/null; then
  script -qec "$UVIT train --config $tmp/tiny.json --out $tmp/tty --steps 40 --no-grid" /dev/null >"$tmp/tty.txt" 2>&1
  "$PY" - "$tmp/tty.txt" <<'PYEOF' || fail "terminal progress: $(tr '\r' '|' <"$tmp/tty.txt")"
import re, sys
t = open(sys.argv[1], newline="", errors="replace").read()
assert "\r" in t, "no in-place redraw"
lines = [s for s in re.split(r"[\r\n]", t) if s.startswith("train ")]
assert lines and all(s.endswith("\033[K") for s in lines), "a redraw that does not clear the line"
assert lines[-1].startswith("train 100%|██████████| 40/40 ["), lines[-1:]
assert re.match(r"train +\d+%\|[█▏▎▍▌▋▊▉ ]{10}\| \d+/40 \[\d\d:\d\d<", lines[0]), lines[0]
rates = [float(r) for r in re.findall(r"([0-9.]+) img/s", t)]
assert all(r < 1e5 for r in rates), rates
print("ok: terminal progress redrawn in place,", len(lines), "redraws")
PYEOF
  script -qec "$UVIT sample --config $tmp/tiny.json --weights $R/nnet_ema.safetensors --classes all --n 2 --npy $tmp/tty.npy" \
    /dev/null >"$tmp/tty.txt" 2>&1
  "$PY" - "$tmp/tty.txt" <<'PYEOF' || fail "sample progress: $(tr '\r' '|' <"$tmp/tty.txt")"
import re, sys
t = open(sys.argv[1], newline="", errors="replace").read()
rates = [float(r) for r in re.findall(r"([0-9.]+) ?it/s", t)]
assert "sample (network evaluations) 100%|██████████| 4/4 [" in t and all(r < 1e5 for r in rates), rates
PYEOF
else
  echo "skip: no script(1) for a terminal test"
fi

# Runs that cannot start leave no folder behind.
expect_error "nodata" "$UVIT" train --config "$tmp/tiny.json" --data "$tmp/nodata" --out "$tmp/f1" -q
expect_error "holds no training run" "$UVIT" train --resume --out "$tmp/f2" -q
for d in f1 f2; do [ ! -e "$tmp/$d" ] || fail "a failed train left $d behind"; done
expect_error "--steps must be >= 0, got -1" "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/f3" --steps -1
expect_error "--minutes must be a finite number" "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/f3" --minutes nan
expect_error "expects a number" "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/f3" --set optimizer.lr=nan

# Grids: every --grid-every steps and at the end, --grid-n images by 25 dpm-solver++ steps, with a
# progress line; by default 4 per class at the end; none with --no-grid or on a finished run.
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/g" --steps 4 --grid-every 2 --grid-n 10
[ "$(ls "$tmp/g/samples" | xargs)" = "step_0000002.png step_0000004.png" ] ||
  fail "grids: $(ls "$tmp/g/samples" | xargs)"
grep -q "^grid samples/step_0000004.png 25/25" "$tmp/err" || fail "no grid progress line: $(cat "$tmp/err")"
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/g2" --steps 2 -q
run "$UVIT" train --out "$tmp/g2" --resume -q
size() { "$PY" -c 'import struct, sys; print(*struct.unpack(">II", open(sys.argv[1], "rb").read()[16:24]))' "$1"; }
[ "$(size "$tmp/g/samples/step_0000004.png")" = "32 302" ] || fail "--grid-n 10: $(size "$tmp/g/samples/step_0000004.png")"
[ "$(size "$tmp/g2/samples/step_0000002.png")" = "122 302" ] || fail "default grid: $(size "$tmp/g2/samples/step_0000002.png")"
[ "$(ls "$tmp/g2/samples" | xargs)" = step_0000002.png ] || fail "resumed finished run drew: $(ls "$tmp/g2/samples")"
[ ! -e "$tmp/r/samples" ] || fail "--no-grid drew grids"
exit $fails
