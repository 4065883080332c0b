#!/usr/bin/env bash
# The run's log.jsonl as --resume reads it (docs/cli.md "Resume"): the history a resume or a fork
# takes (the rows up to the checkpoint, the precision the run trained in). One that cannot be read
# was taken for an empty history without a word (a fork then held only its own rows, and a bf16 run
# went on in the default precision); now it is refused in one line naming the file and what to do.
# A missing one is refused where the run's snapshots keep copies of it (the run had one); a run
# folder with no sign of a log (checkpoint files and config.json put together) resumes as before.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.save_interval=1 train.log_interval=1
T=(--no-grid -q --threads 1)
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/r" --steps 2 --batch 2 "${T[@]}"
WHY="--resume takes the run's history from it (its rows up to the checkpoint, the precision it trained in)"

# Another user's run whose log this user cannot read (mode 0600): root runs the fork as nobody
# (root passes every permission check); anyone else as themselves, whom chmod binds alike.
chmod 755 "$tmp"
mkdir -m 777 "$tmp/u"
AS=()
[ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
chmod 600 "$tmp/r/log.jsonl"
[ ${#AS[@]} -gt 0 ] || chmod 000 "$tmp/r/log.jsonl"
expect_error "^uvit: error: $tmp/r/log.jsonl: cannot read it (Permission denied); $WHY: give this user read access to it (its owner can)$" \
  "${AS[@]}" "$UVIT" train --resume "$tmp/r" --out "$tmp/u/f" --steps 3 "${T[@]}"
[ ! -e "$tmp/u/f/train_state.safetensors" ] && echo "ok: the refused fork trained nothing" ||
  fail "the refused fork trained"
chmod 644 "$tmp/r/log.jsonl"
# Readable again: the fork goes on, with the run's rows.
run "${AS[@]}" "$UVIT" train --resume "$tmp/r" --out "$tmp/u/f" --steps 3 "${T[@]}"
grep -q '"event":"train".*"step":1,' "$tmp/u/f/log.jsonl" && echo "ok: the fork holds the run's rows" ||
  fail "the fork's log lacks the run's rows: $(cat "$tmp/u/f/log.jsonl")"

# A folder in its place (any user): the same refusal.
cp -r "$tmp/r" "$tmp/d" && rm "$tmp/d/log.jsonl" && mkdir "$tmp/d/log.jsonl"
expect_error "^uvit: error: $tmp/d/log.jsonl: cannot read it (Is a directory); $WHY: " \
  "$UVIT" train --resume "$tmp/d" --out "$tmp/g" --steps 3 "${T[@]}"
[ ! -e "$tmp/g" ] && echo "ok: nothing made in $tmp/g" || fail "the refused fork made $tmp/g"

# Missing from a run whose snapshots keep copies of it: refused, naming the newest copy.
cp -r "$tmp/r" "$tmp/m" && rm "$tmp/m/log.jsonl"
expect_error "^uvit: error: $tmp/m/log.jsonl: missing, though the run's snapshots keep copies of it ($tmp/m/ckpts/2/log.jsonl); $WHY: put it back (that copy holds its rows up to step 2)$" \
  "$UVIT" train --out "$tmp/m" --resume --steps 3 "${T[@]}"
[ ! -e "$tmp/m/log.jsonl" ] && [ ! -e "$tmp/m/ckpts/3" ] && echo "ok: the refused resume trained nothing" ||
  fail "the refused resume trained"
# Missing from a run folder without snapshots: nothing says it had a log; it resumes as before, its
# log starting with this call.
mkdir "$tmp/h" && cp "$tmp/r/config.json" "$tmp/r/"*.safetensors "$tmp/h/"
run "$UVIT" train --out "$tmp/h" --resume --steps 3 "${T[@]}"
grep -q '"event":"train".*"step":3,' "$tmp/h/log.jsonl" && echo "ok: a run folder without a log resumes" ||
  fail "the run folder without a log: $(cat "$tmp/err")"
exit $fails
