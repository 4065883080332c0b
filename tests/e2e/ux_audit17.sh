#!/usr/bin/env bash
# Regressions from the seventeenth new-user audit (docs/ux_audit.md, "round 17"): a disk that fills
# (a small tmpfs in a mount namespace of its own, a file-size limit) under `train`, `eval`,
# `extract-features` and `sample`, then the rerun once there is room. Each fix's check failed before
# it; the others keep what the audit found fine.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
ns=(unshare -m)
[ "$(id -u)" = 0 ] || ns=(unshare -rm)
# small_disk SIZE SCRIPT ARGS...: bash SCRIPT (a string; $1... = ARGS) in a mount namespace where
# $tmp/disk is a tmpfs of SIZE, which the script may grow (`mount -o remount,size=...`). What it
# must keep it copies out of $tmp/disk: the tmpfs goes with the namespace.
small_disk() {
  local size=$1 script=$2; shift 2
  mkdir -p "$tmp/disk"
  "${ns[@]}" bash -c 'mount -t tmpfs -o size="$0" tmpfs "$1" && script=$2 && shift 2 &&
    eval "$script"' "$size" "$tmp/disk" "$script" "$@"
}
if ! "${ns[@]}" bash -c 'mount -t tmpfs tmpfs /mnt' 2>/dev/null; then
  echo "SKIP: no mount namespace here (${ns[*]}) for the small tmpfs"
  exit 0
fi
export UVIT tmp
S=(--no-grid -q --batch 8 --set lr_scheduler.warmup_steps=0)

# --- a save on a disk without room for a second checkpoint ---------------------------------------
# A save writes the whole checkpoint into RUN/.saving before it replaces the last one (round 10), so
# it needs a second checkpoint's room. Without it, `train --resume` trained its steps, then said
# only `RUN/.saving/train_state.safetensors: write error: No space left on device`: not that the
# steps were lost, that RUN still held step 2's checkpoint, nor the room needed. Now a warning at
# the start, and the error says where the run stands and how to go on.
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/straight" --steps 4 "${S[@]}"
small_disk 40m '
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/disk/r" --steps 2 "${@}" || exit 9
  "$UVIT" train --out "$tmp/disk/r" --resume --steps 4 "${@}" 2>"$tmp/save.err"
  echo $? >"$tmp/save.rc"
  mount -o remount,size=80m "$tmp/disk"  # room again: the same run continues from step 2
  "$UVIT" train --out "$tmp/disk/r" --resume --steps 4 "${@}" 2>"$tmp/again.err"
  echo $? >"$tmp/again.rc"
  cp -a "$tmp/disk/r" "$tmp/r"' "${S[@]}" >/dev/null
grep -q "^uvit: warning: a save writes a whole checkpoint (22.8 MiB) before it replaces the last one, and the disk of $tmp/disk/r has 1[0-9].[0-9] MiB free: the first save will fail" \
  "$tmp/save.err" && echo "ok: $(head -1 "$tmp/save.err")" ||
  fail "no warning of the room a save needs: $(cat "$tmp/save.err")"
[ "$(cat "$tmp/save.rc")" = 1 ] && grep -q "^uvit: error: the checkpoint of step 4 was not written ($tmp/disk/r/.saving/[a-z_]*.safetensors: write error: No space left on device); $tmp/disk/r still holds its checkpoint of step 2 (the steps since are lost); a save writes a whole checkpoint (22.8 MiB) .*: free space, then continue with uvit train --out $tmp/disk/r --resume$" \
  "$tmp/save.err" && echo "ok: $(tail -1 "$tmp/save.err")" ||
  fail "a save on a full disk (rc $(cat "$tmp/save.rc")): $(cat "$tmp/save.err")"
[ "$(cat "$tmp/again.rc")" = 0 ] || fail "resume once there is room: $(cat "$tmp/again.err")"
same_files "$tmp/r" "$tmp/straight" "a save failed on a full disk, then --resume with room"

# A first save that writes a snapshot (train.save_interval within the call's steps) lands the run's
# files, then RUN/ckpts/STEP: two checkpoints on a new run. The warning counted one, so a disk with
# room for one and not two trained to that save unwarned, then stopped on the snapshot. Now the
# start says so (a resumed run, whose files the save replaces, needs the snapshot's room only).
small_disk 40m '
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/disk/n" --steps 2 "${@}" 2>"$tmp/snap.err"
  echo $? >"$tmp/snap.rc"' "${S[@]}" --set train.save_interval=2 >/dev/null
head -1 "$tmp/snap.err" | grep -q "^uvit: warning: the first save, at step 2, writes the run's checkpoint and a snapshot of it ($tmp/disk/n/ckpts/2), which take 45.[0-9] MiB more than the run holds now, and the disk of $tmp/disk/n has [34][0-9].[0-9] MiB free: the snapshot will fail unless space is freed (the run then stops at step 2, its checkpoint written)$" &&
  [ "$(cat "$tmp/snap.rc")" = 1 ] && grep -q "^uvit: error: snapshot $tmp/disk/n/ckpts/2 not written" "$tmp/snap.err" &&
  echo "ok: $(head -1 "$tmp/snap.err")" ||
  fail "no warning of the room a first save with a snapshot needs (rc $(cat "$tmp/snap.rc")): $(cat "$tmp/snap.err")"

# A call that ends at its snapshot's step (--steps 2, train.save_interval=2) wrote the run's files
# and the snapshot, then its final save wrote the run's files again into RUN/.saving: room for three
# checkpoints (68 MiB), so a disk that the warning passed (45.7 MiB) stopped the run at its end. Now
# the final save is skipped where the snapshot save of its step wrote those files (the same bytes).
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/snap_straight" --steps 2 "${S[@]}" \
  --set train.save_interval=2
small_disk 60m '
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/disk/s" --steps 2 "${@}" 2>"$tmp/twice.err"
  echo $? >"$tmp/twice.rc"
  cp -a "$tmp/disk/s" "$tmp/s"' "${S[@]}" --set train.save_interval=2 >/dev/null
[ "$(cat "$tmp/twice.rc")" = 0 ] && [ ! -s "$tmp/twice.err" ] &&
  grep -q '"event":"checkpoint","path":".","step":2' "$tmp/s/log.jsonl" &&
  echo "ok: a call that ends at its snapshot's step fits two checkpoints" ||
  fail "a call ending at its snapshot's step on a disk for two checkpoints (rc $(cat "$tmp/twice.rc")): $(cat "$tmp/twice.err")"
same_files "$tmp/s" "$tmp/snap_straight" "the run's files, saved once at the snapshot's step"
same_files "$tmp/s/ckpts/2" "$tmp/snap_straight/ckpts/2" "its snapshot"

# --- a log row that cannot be written ------------------------------------------------------------
# A disk that fills between saves (another program's files) failed log.jsonl's appends: the
# ofstream wrote nothing more, so every later row, the final checkpoint's included, was lost, and
# the run ended with exit 0 (and the first fix's line did not say that the steps since the last
# checkpoint were lost). A file-size limit stands in for the disk (deterministic): a tiny network
# whose checkpoint files fit in 11 KB, a row per step; the log passes 11 KB near step 65.
T=(--no-grid -q --batch 1 --set train.log_interval=1)
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/t" --steps 2 "${T[@]}" \
  --set nnet.embed_dim=8 --set nnet.depth=1 --set nnet.num_heads=1 --set nnet.mlp_ratio=1
expect_error "^uvit: error: $tmp/t/log.jsonl: write error: File too large (its row of step [0-9]*); the run stops, as its log would lose rows: $tmp/t still holds its checkpoint of step 2 (the steps since are lost): free space, then continue with uvit train --out $tmp/t --resume$" \
  bash -c 'ulimit -f 11; trap "" XFSZ; exec "$@"' - "$UVIT" train --out "$tmp/t" --resume --steps 80 "${T[@]}"
run "$UVIT" train --out "$tmp/t" --resume --steps 3 "${T[@]}"
grep -q "at step 3" "$tmp/out" && echo "ok: the run resumes after a log row that failed" ||
  fail "resume after a failed log row: $(cat "$tmp/out" "$tmp/err")"

# A sample grid between steps (--grid-every) on a full disk stopped the run with the write error
# alone: nothing said that the steps trained were lost, nor how to go on. (Before it, the warning
# of the room a save needs.)
small_disk 8k '"$UVIT" train --config fmnist_uvit_tiny --out "$tmp/disk/g" --steps 2 --grid-every 1 \
  --grid-n 1 -q --batch 8 2>"$tmp/grid.err"; echo $? >"$tmp/grid.rc"'
[ "$(cat "$tmp/grid.rc")" = 1 ] && tail -1 "$tmp/grid.err" | grep -q "^uvit: error: $tmp/disk/g/samples/step_0000001.png: write error: No space left on device; the run stops: $tmp/disk/g holds no checkpoint yet (the steps trained are lost): free space, then run the same command again$" &&
  echo "ok: $(tail -1 "$tmp/grid.err")" ||
  fail "a grid on a full disk (rc $(cat "$tmp/grid.rc")): $(cat "$tmp/grid.err")"

# --- eval, extract-features and sample on a full disk, then the rerun ----------------------------
# (Held before this round, kept: one line naming the file, the finished chunks and feature files
# kept, the rerun with room ends with the bytes of a straight run.)
inception_weights I "${2:-}"
run "$UVIT" sample --config "$tmp/straight" --weights "$tmp/straight/nnet_ema.safetensors" --n 8 \
  --classes all --steps 2 --npy "$tmp/s.npy" -q
run "$UVIT" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=(eval --config "$tmp/straight" --weights "$tmp/straight/nnet_ema.safetensors" --n 8 --chunk 2
  --steps 2 --seed 1 --ref "$tmp/ref.npz" --inception "$I" --metrics fid -q)
run "$UVIT" "${E[@]}" --out "$tmp/e.npz"
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
"$PY" tests/e2e/data/image_folder.py "$tmp/images/train" n01_a:256x256 n02_b:256x256 n03_c:256x256 \
  n04_d:256x256 || fail "writing the images"
X=(extract-features --data "$tmp/images" --config "$tmp/ae.json" --batch 2 --weights "$tmp/ae.pth" -q)
run "$UVIT" "${X[@]}" --out "$tmp/f"
export E_ARGS="${E[*]}" X_ARGS="${X[*]}"
small_disk 120k '
  read -ra E <<<"$E_ARGS"; read -ra X <<<"$X_ARGS"
  "$UVIT" "${E[@]}" --out "$tmp/disk/e.npz" >/dev/null 2>"$tmp/eval.err"; echo $? >"$tmp/eval.rc"
  ls "$tmp/disk/e.npz.parts" >"$tmp/eval.kept"
  mount -o remount,size=2m "$tmp/disk"
  "$UVIT" "${E[@]}" --out "$tmp/disk/e.npz" >/dev/null 2>>"$tmp/eval.err" || echo "eval rerun failed"
  cp "$tmp/disk/e.npz" "$tmp/e2.npz"; rm -rf "$tmp/disk/e.npz" "$tmp/disk/e.npz.parts"
  mount -o remount,size=120k "$tmp/disk"
  "$UVIT" "${X[@]}" --out "$tmp/disk/f" 2>"$tmp/x.err"; echo $? >"$tmp/x.rc"
  ls -A "$tmp/disk/f" >"$tmp/x.kept"
  "$UVIT" sample --config "$tmp/straight" --weights "$tmp/straight/nnet_ema.safetensors" --n 200 \
    --classes all --steps 1 --dir "$tmp/disk/d" -q 2>"$tmp/dir.err"; echo $? >"$tmp/dir.rc"
  ls -A "$tmp/disk/d" >"$tmp/dir.kept"
  rm -rf "$tmp/disk/d"
  mount -o remount,size=2m "$tmp/disk"
  "$UVIT" "${X[@]}" --out "$tmp/disk/f" 2>>"$tmp/x.err" || echo "extract-features rerun failed"
  cp -a "$tmp/disk/f" "$tmp/f2"' >"$tmp/disk.out"
grep -q . "$tmp/disk.out" && fail "$(cat "$tmp/disk.out" "$tmp/eval.err" "$tmp/x.err")"
[ "$(cat "$tmp/eval.rc")" = 1 ] && [ "$(wc -l <"$tmp/eval.err")" = 1 ] &&
  grep -q "e.npz.parts/chunk_[0-9].npz: write error: No space left on device; the finished chunks are kept in $tmp/disk/e.npz.parts: free space, then run the same command again to resume$" "$tmp/eval.err" &&
  grep -q chunk_0.npz "$tmp/eval.kept" && echo "ok: eval on a full disk: $(cat "$tmp/eval.err")" ||
  fail "eval on a full disk (rc $(cat "$tmp/eval.rc")): $(cat "$tmp/eval.err" "$tmp/eval.kept")"
cmp -s "$tmp/e.npz" "$tmp/e2.npz" && echo "ok: eval resumed with room: the straight run's .npz" ||
  fail "eval resumed after a full disk wrote another .npz"
[ "$(cat "$tmp/x.rc")" = 1 ] && ! grep -q tmp "$tmp/x.kept" &&
  echo "ok: extract-features on a full disk: $(head -1 "$tmp/x.err") (no temporary file left)" ||
  fail "extract-features on a full disk (rc $(cat "$tmp/x.rc")): $(cat "$tmp/x.err" "$tmp/x.kept")"
bad=0
for f in "$tmp"/f/*.npy "$tmp/f/.manifest.json"; do cmp -s "$f" "$tmp/f2/${f##*/}" || bad=1; done
[ $bad = 0 ] && [ "$(ls -A "$tmp/f" | wc -l)" = "$(ls -A "$tmp/f2" | wc -l)" ] &&
  echo "ok: extract-features rerun with room: the straight run's files" ||
  fail "extract-features rerun after a full disk differs from a straight run"
[ "$(cat "$tmp/dir.rc")" = 1 ] && [ "$(wc -l <"$tmp/dir.err")" = 1 ] && ! grep -q tmp "$tmp/dir.kept" &&
  echo "ok: sample --dir on a full disk: $(cat "$tmp/dir.err") (no temporary file left)" ||
  fail "sample --dir on a full disk (rc $(cat "$tmp/dir.rc")): $(cat "$tmp/dir.err")"

exit $fails
