#!/usr/bin/env bash
# Regressions from the fourteenth new-user audit (docs/ux_audit.md, "round 14"): each fix's check
# failed before it; the others keep what the audit found fine (the environment: umask, files of
# another user, read-only runs and weights, names with line breaks; the installed tree run by
# another user from another folder, without the source tree).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
SRC=$PWD
source tests/e2e/data/lib.sh
T=(--threads 1)
# Another user: root runs the checks as nobody (root passes every permission check); anyone else
# as themselves, whom chmod binds alike. Their scratch folder is $tmp/u.
chmod 755 "$tmp"
mkdir -m 777 "$tmp/u"
AS=()
[ "$(id -u)" = 0 ] && AS=(setpriv --reuid=65534 --regid=65534 --clear-groups)
as_user() { (cd "$tmp/u" && umask 022 && "${AS[@]}" "$@"); }
tiny_run

# --- a run's files that the user cannot write ------------------------------------------------
# log.jsonl not writable (another user's file in a run folder shared by a group, a chmod -w): the
# resume trained, saved and exited 0 while every row of the call was lost without a word.
as_user "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out r --steps 1 --batch 2 --no-grid -q \
  >/dev/null 2>&1 || fail "train as $(id -un 65534 2>/dev/null || id -un)"
chmod a-w "$tmp/u/r/log.jsonl"
expect_error "r/log.jsonl: cannot append to it (Permission denied); the run's log would lose this call's rows: make it writable, or continue in a new folder with --resume r --out NEW" \
  as_user "$UVIT" "${T[@]}" train --out r --resume --steps 2 --no-grid -q
[ "$(wc -l <"$tmp/u/r/log.jsonl")" = 3 ] && ! grep -q '"step":2' "$tmp/u/r/log.jsonl" &&
  as_user "$UVIT" info r/train_state.safetensors | grep -q "step 1, " &&
  echo "ok: nothing trained before the refusal" || fail "the refused resume trained: $(cat "$tmp/u/r/log.jsonl")"
# The way out it names: a fork of the run into a new folder, its log whole.
as_user "$UVIT" "${T[@]}" train --resume r --out r2 --steps 2 --no-grid -q >"$tmp/out" 2>"$tmp/err"
grep -q "at step 2" "$tmp/out" && grep -q '"event":"train".*"step":2' "$tmp/u/r2/log.jsonl" &&
  echo "ok: --resume r --out NEW continues it" || fail "the fork: $(cat "$tmp/err")"

# What another user's save left when it died before its moves (their .saving, mode 755): the next
# user's resume trained, then stopped at its first save with std::filesystem's own words and no
# way out; now it is refused before anything trains, naming the folder and the way out.
as_user "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out d --steps 1 --batch 2 --no-grid -q \
  >/dev/null 2>&1 || fail "train d"
if [ ${#AS[@]} -gt 0 ]; then mkdir -m 755 "$tmp/u/d/.saving"; else mkdir -m 555 "$tmp/u/d/.saving"; fi
echo x >"$tmp/u/d/.saving/x" 2>/dev/null; [ ${#AS[@]} -gt 0 ] || chmod 555 "$tmp/u/d/.saving"
expect_error "d/.saving: cannot remove what an unfinished save left there (Permission denied): its owner can remove it, or continue in a new folder with uvit train --resume d --out NEW" \
  as_user "$UVIT" "${T[@]}" train --out d --resume --steps 2 --no-grid -q
grep -q '"step":2' "$tmp/u/d/log.jsonl" && fail "the refused resume trained" || echo "ok: nothing trained"
chmod 755 "$tmp/u/d/.saving"

# A snapshot train.keep_snapshots no longer keeps that the user cannot remove (another user's, in a
# shared run folder): the training stopped at that save with `filesystem error: cannot remove all:
# Permission denied [...]`, exit 1, the rest of the run lost for a file that was only to go.
as_user "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out s --steps 1 --batch 2 --no-grid -q \
  --set train.save_interval=1 --set train.keep_snapshots=1 >/dev/null 2>&1 || fail "train s"
chmod a-w "$tmp/u/s/ckpts/1"
as_user "$UVIT" "${T[@]}" train --out s --resume --steps 3 --no-grid -q >"$tmp/out" 2>"$tmp/err"
rc=$?
chmod u+w "$tmp/u/s/ckpts/1"
[ $rc = 0 ] && grep -q "at step 3" "$tmp/out" && [ "$(wc -l <"$tmp/err")" = 1 ] &&
  grep -q "^uvit: warning: s/ckpts/1: not removed (Permission denied), though train.keep_snapshots no longer keeps it; the run goes on$" "$tmp/err" &&
  [ -d "$tmp/u/s/ckpts/3" ] && [ ! -d "$tmp/u/s/ckpts/2" ] &&
  echo "ok: $(cat "$tmp/err")" || fail "a snapshot that cannot be pruned (rc $rc): $(cat "$tmp/err")"

# A config.json the user cannot read said `cannot open for reading`, without the reason.
chmod 000 "$tmp/u/r/config.json"
expect_error "r/config.json: cannot open: Permission denied" as_user "$UVIT" info --config r
chmod 644 "$tmp/u/r/config.json"

# Kept: read-only weights and a run folder of another user sample and describe; outputs into it
# are refused before the work, naming the folder.
chmod -R a-w "$tmp/run"
as_user "$UVIT" "${T[@]}" sample --config "$tmp/run" --weights "$W" --class 1 --n 1 --steps 2 -q \
  --out ro.png >/dev/null 2>"$tmp/err" && [ -s "$tmp/u/ro.png" ] &&
  echo "ok: a read-only run of another user samples" || fail "sample of a read-only run: $(cat "$tmp/err")"
expect_error "--out $tmp/run/x.png: folder $tmp/run is not writable" \
  as_user "$UVIT" "${T[@]}" sample --config "$tmp/run" --weights "$W" --class 1 --n 1 --out "$tmp/run/x.png"
[ -n "${AS[*]}" ] && expect_error "--out $tmp/run: folder $tmp/run is not writable" \
  as_user "$UVIT" "${T[@]}" train --out "$tmp/run" --resume --steps 2 --no-grid -q
chmod -R u+w "$tmp/run"

# Kept: umask 027 is what a run's files and folders, a sample's PNG and .npy get (written as a
# temporary file of mode 0666 & ~umask, then renamed).
(cd "$tmp/u" && umask 027 && "${AS[@]}" "$UVIT" "${T[@]}" train --config fmnist_uvit_tiny --out m \
  --steps 1 --batch 2 --no-grid -q --set train.save_interval=1 >/dev/null 2>&1 &&
  umask 027 && "${AS[@]}" "$UVIT" "${T[@]}" sample --config m --weights m/nnet_ema.safetensors \
    --class 1 --n 1 --steps 2 -q --out m/p.png --npy m/p.npy) || fail "train/sample under umask 027"
odd=$(cd "$tmp/u/m" && find . \( -type f ! -perm 640 \) -o \( -type d ! -perm 750 \))
[ -z "$odd" ] && [ -s "$tmp/u/m/p.png" ] && [ -d "$tmp/u/m/ckpts/1" ] &&
  echo "ok: umask 027: files 640, folders 750" || fail "modes under umask 027: $odd"

# An output that is a symbolic link (`latest.png -> runs/x/grid.png`) was replaced by a file, its
# target left as it was; a file replaced lost its mode (a private 0600 came back 0644).
mkdir -p "$tmp/lk/sub"
echo old >"$tmp/lk/sub/t.png"
chmod 600 "$tmp/lk/sub/t.png"
ln -s sub/t.png "$tmp/lk/latest.png"
ln -s new.npy "$tmp/lk/dangling.npy"
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 1 --steps 2 -q \
  --out "$tmp/lk/latest.png" --npy "$tmp/lk/dangling.npy"
[ -L "$tmp/lk/latest.png" ] && [ -L "$tmp/lk/dangling.npy" ] && [ -s "$tmp/lk/new.npy" ] &&
  [ "$(head -c 4 "$tmp/lk/sub/t.png" | od -An -c | tr -d ' ')" = "211PNG" ] &&
  [ "$(stat -c %a "$tmp/lk/sub/t.png")" = 600 ] && [ -z "$(ls -A "$tmp/lk/sub" | grep -v '^t.png$')" ] &&
  echo "ok: --out through a symbolic link: the link kept, its target written, its mode kept" ||
  fail "--out through a link: $(ls -la "$tmp/lk" "$tmp/lk/sub")"

# --- names with line breaks ---------------------------------------------------------------------
# An error quoting a name that holds a line break was two lines (`uvit: error: no` / `there...`).
expect_error 'no\\nthere.safetensors: cannot open: No such file or directory' \
  "$UVIT" sample --config fmnist_uvit_tiny --weights $'no\nthere.safetensors' --class 1 --n 1 --out "$tmp/x.png"
expect_error "config 'my\\\\nconf' not found" \
  "$UVIT" sample --config $'my\nconf' --weights "$W" --class 1 --n 1 --out "$tmp/x.png"
# Kept: such names are written and read as they are.
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --class 1 --n 1 --steps 2 -q \
  --out "$tmp/new"$'\n'"line/a \"q\" é.png"
run "$UVIT" info "$tmp/new"$'\n'"line/a \"q\" é.png" --json
"$PY" -c "import json, sys; assert json.load(open(sys.argv[1]))['fields']['Class'] == '1'" "$tmp/out" &&
  echo "ok: a PNG under a name with a line break, quotes and é" || fail "info of it: $(cat "$tmp/out")"

# --- README's scripts/uvit in a checkout shared with another user -----------------------------
# It failed whatever it was asked, with ninja's `Error writing to build log: Permission denied`:
# ninja cannot check a build folder it cannot write, even with build/uvit up to date.
if [ -n "${AS[*]}" ] && [ "$(dirname "$UVIT")" = "$SRC/build" ]; then
  as_user "$SRC/scripts/uvit" --version >"$tmp/out" 2>"$tmp/err" && grep -q "^uvit " "$tmp/out" &&
    [ ! -s "$tmp/err" ] && echo "ok: scripts/uvit as another user runs the owner's build" ||
    fail "scripts/uvit as another user: $(cat "$tmp/err")"
fi

# --- the installed tree, run by another user from another folder without the source tree -------
# cmake --install put no presets and no CLIP vocabulary in P: the installed uvit (and a program
# linking the installed libuvit.so) found them only in the source tree compiled in, so that without
# it `--config fmnist_uvit_tiny` was "not found (presets: none in ...)" and `tokenize` had "no CLIP
# vocabulary". The source tree is hidden under empty tmpfs mounts in a mount namespace of its own.
P=$tmp/u/prefix
cmake --install "$(dirname "$UVIT")" --prefix "$P" >"$tmp/install.log" || fail "cmake --install"
LIB=$(dirname "$(find "$P" -name 'libuvit.so.0' | head -1)")
awk '/^```c$/ {k++; on = 1; next} /^```/ {on = 0; next} on && k == 1' docs/c_api.md |
  sed "s|\"run/nnet_ema.safetensors\"|\"$W\"|; s|gp.n = 4;|gp.n = 1; gp.steps = 2;|" >"$tmp/u/ex.c"
cc "$tmp/u/ex.c" -I"$P/include" -L"$LIB" -luvit -Wl,-rpath,"$LIB" -o "$tmp/u/ex" 2>"$tmp/cc.log" ||
  fail "building docs/c_api.md's example: $(head -3 "$tmp/cc.log")"
hidden() {  # hidden CMD...: CMD as the other user in $tmp/u, the source tree's presets and data gone
  local ns=(unshare -m)
  [ "$(id -u)" = 0 ] || ns=(unshare -rm)
  "${ns[@]}" bash -c 'mount -t tmpfs tmpfs "$1/configs" && mount -t tmpfs tmpfs "$1/data" && shift &&
    cd "$0" && exec env -u UVIT_CONFIG_DIR -u UVIT_CLIP_VOCAB "$@"' "$tmp/u" "$SRC" "${AS[@]}" "$@"
}
if hidden true 2>/dev/null; then
  hidden "$P/bin/uvit" info --config fmnist_uvit_tiny >"$tmp/out" 2>"$tmp/err" &&
    grep -q "^config  *fmnist_uvit_tiny" "$tmp/out" && echo "ok: the installed uvit's presets" ||
    fail "installed uvit info --config fmnist_uvit_tiny: $(cat "$tmp/err")"
  hidden "$P/bin/uvit" tokenize "a photo of a cat" >"$tmp/out" 2>"$tmp/err" &&
    grep -q "^49406 320 1125 539 320 2368 49407" "$tmp/out" && echo "ok: the installed CLIP vocabulary" ||
    fail "installed uvit tokenize: $(cat "$tmp/err")"
  hidden "$tmp/u/ex" >"$tmp/out" 2>"$tmp/err" && grep -q "^Steps: 2, .*Class: 7, " "$tmp/out" &&
    echo "ok: docs/c_api.md's example against the installed libuvit.so" ||
    fail "the C API example with the installed presets: $(cat "$tmp/err")"
  # The installed presets come before the source tree's (which may have changed since the build).
  sed -i 's/"embed_dim": 128/"embed_dim": 64/' "$P/share/uvit/configs/fmnist_uvit_tiny.json"
  "${AS[@]}" env -u UVIT_CONFIG_DIR "$P/bin/uvit" info --config fmnist_uvit_tiny >"$tmp/out" 2>&1
  grep -q "embed_dim 64" "$tmp/out" && echo "ok: the installed presets first" ||
    fail "installed uvit took another preset: $(grep embed_dim "$tmp/out")"
else
  echo "note: no mount namespace here (unshare -m); the installed tree's checks are skipped"
fi
ls "$P/share/uvit/configs/fmnist_uvit_tiny.json" "$P/share/uvit/clip/bpe_simple_vocab_16e6.txt.gz" \
  >/dev/null 2>&1 || fail "cmake --install: no presets or CLIP vocabulary under P/share/uvit"

exit $fails
