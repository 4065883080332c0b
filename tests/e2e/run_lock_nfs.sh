#!/usr/bin/env bash
# The run folder's lock on NFS (docs/cli.md "log.jsonl"): there flock is a byte-range lock, which the
# folder's own descriptor (opened read-only) cannot take (EBADF); uvit train locked only the folder,
# took the failure for "no flock here", and let a second training into a running one's folder. Now
# it locks RUN/.lock, opened for writing. NFS is emulated by an LD_PRELOAD shim
# (data/nfs_flock.c). Also: a fork of a cut snapshot of a run this user cannot write (another
# user's, EACCES; a read-only mount, EROFS) reads the save from its .saving and leaves the run as it
# is; before, it failed moving the save's files in.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
${CC:-cc} -shared -fPIC -O -o "$tmp/nfs_flock.so" tests/e2e/data/nfs_flock.c || { echo "FAIL: the shim"; exit 1; }
NFS=(env LD_PRELOAD="$tmp/nfs_flock.so")

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.save_interval=100000 train.log_interval=2
# --- two trainings into one folder on NFS: the second is refused -----------------------------------
R=$tmp/two
"${NFS[@]}" "$UVIT" train --config "$tmp/tiny.json" --out "$R" --steps 1000000 --batch 2 --no-grid -q \
  --threads 1 >"$tmp/a.out" 2>"$tmp/a.err" &
pid=$!
for _ in $(seq 600); do grep -q '"event":"start"' "$R/log.jsonl" 2>/dev/null && break; sleep 0.1; done
grep -q '"event":"start"' "$R/log.jsonl" 2>/dev/null || fail "the first training did not start: $(cat "$tmp/a.err")"
expect_error "^uvit: error: $R: another uvit train is writing this run now; wait for it to end (or stop it), or choose another --out$" \
  "${NFS[@]}" "$UVIT" train --config "$tmp/tiny.json" --out "$R" --steps 1 --batch 2 --no-grid -q --threads 1
[ -e "$R/failed_start" ] && fail "the second training set the first's log aside"
kill -TERM $pid; wait $pid; rc=$?; pid=
[ $rc -eq 143 ] || fail "the first training: exit $rc after SIGTERM: $(cat "$tmp/a.err")"
[ -f "$R/.lock" ] || fail "no $R/.lock"
# An older uvit, which flocks only the folder (flock(1) here, on a local file system), and this one
# exclude each other.
expect_error "^uvit: error: $R: another uvit train is writing this run now" \
  flock -n "$R" "$UVIT" train --out "$R" --resume --steps 1000000 --no-grid -q --threads 1
# The lock died with its process: the file left behind holds nothing.
run "${NFS[@]}" "$UVIT" train --out "$R" --resume --steps $(($(grep -o '"step":[0-9]*' "$R/log.jsonl" | tail -1 | cut -d: -f2) + 2)) \
  --no-grid -q --threads 1

# --- a fork of a cut snapshot of a run this user cannot write ---------------------------------------
"$PY" tests/e2e/data/tiny_config.py "$tmp/t2.json" train.save_interval=2 train.log_interval=2
T2=(train --config "$tmp/t2.json" --batch 4 --seed 5 --no-grid -q --threads 1)
run "$UVIT" "${T2[@]}" --steps 6 --out "$tmp/straight"
UVIT_TEST_DIE=0:4:snaprename "$UVIT" "${T2[@]}" --steps 6 --out "$tmp/N" >"$tmp/out" 2>"$tmp/err"
[ $? -eq 77 ] || fail "the death in the snapshot of step 4: $(cat "$tmp/err")"
[ -e "$tmp/N/ckpts/4/.saving/train_state.safetensors" ] || fail "the cut snapshot left no .saving"
cp -a "$tmp/N" "$tmp/Nwas"
# Another user's run (EACCES): root runs the fork as nobody (root passes every permission check).
chmod 755 "$tmp"
mkdir -m 777 "$tmp/u"
AS=()
[ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
run "${AS[@]}" "$UVIT" train --out "$tmp/u/F" --resume "$tmp/N/ckpts/4" --steps 6 --no-grid --threads 1
grep -q "^note: $tmp/N/ckpts/4 holds a save cut between its moves, and this user cannot write $tmp/N: the fork reads that save from $tmp/N/ckpts/4/.saving and leaves the folder as it is$" "$tmp/err" ||
  fail "no line for the fork of a cut snapshot of a run this user cannot write: $(cat "$tmp/err")"
same_files "$tmp/u/F" "$tmp/straight" "a fork of a cut snapshot of another user's run vs never cut"
diff -r "$tmp/N" "$tmp/Nwas" >/dev/null || fail "the fork wrote into another user's run $tmp/N"
# A snapshot whose log copy this user cannot read (mode 0600, another user's): refused in one line
# naming the file and why. Before, read_checkpoint_record took the failed open for a save moving
# in and retried, then said the checkpoint "kept changing while it was read".
if [ ${#AS[@]} -gt 0 ]; then
  chmod 600 "$tmp/straight/ckpts/4/log.jsonl"
  expect_error "^uvit: error: $tmp/straight/ckpts/4/log.jsonl: cannot open: Permission denied$" \
    "${AS[@]}" "$UVIT" train --out "$tmp/u/H" --resume "$tmp/straight/ckpts/4" --steps 6 --no-grid \
    --threads 1
  chmod 644 "$tmp/straight/ckpts/4/log.jsonl"
fi
# A read-only mount (EROFS), in a mount namespace of its own.
if unshare -m true 2>/dev/null; then
  run unshare -m sh -c 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"' \
    "$tmp/N" "$UVIT" train --out "$tmp/G" --resume "$tmp/N/ckpts/4" --steps 6 --no-grid --threads 1
  grep -q "and this user cannot write $tmp/N: the fork reads that save from" "$tmp/err" ||
    fail "no line for the fork of a cut snapshot of a read-only run: $(cat "$tmp/err")"
  same_files "$tmp/G" "$tmp/straight" "a fork of a cut snapshot of a read-only run vs never cut"
  diff -r "$tmp/N" "$tmp/Nwas" >/dev/null || fail "the fork wrote into the read-only run $tmp/N"
else
  echo "note: no mount namespace here (unshare -m); the read-only mount's check is skipped"
fi
exit $fails
