#!/usr/bin/env bash
# `uvit sample --dir D` writes each sample's PNG as its mini-batch is drawn, and the same command
# again keeps the PNGs already in D (their uvit-params record checked) and draws only the rest: the
# folder, and the --npz beside it, end as a straight run's, byte for byte (docs/cli.md "--dir").
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_run
S=(sample --config fmnist_uvit_tiny --weights "$W" --classes all --steps 4 --batch 2)
# same_pngs A B: the NNNNNN.png files of folders A and B (a killed run may leave a temporary file)
same_pngs() {
  local a b
  a=$(cd "$1" && ls | grep -E '^[0-9]{6}\.png$' | xargs cksum)
  b=$(cd "$2" && ls | grep -E '^[0-9]{6}\.png$' | xargs cksum)
  [ -n "$a" ] && [ "$a" = "$b" ]
}
run "$UVIT" "${S[@]}" --n 16 --dir "$tmp/straight" --npz "$tmp/straight.npz" -q
[ "$(ls "$tmp/straight" | wc -l)" -eq 16 ] || fail "straight run: $(ls "$tmp/straight" | wc -l) files"

# Killed (SIGKILL) once the first mini-batch's files are there: they are kept, and the same command
# draws only the missing ones. Before, every PNG was written after the last evaluation: the
# progress lines then reached 32/32 before the first file.
"$UVIT" "${S[@]}" --n 16 --dir "$tmp/k" 2>"$tmp/kerr" &
kpid=$!
for _ in $(seq 1500); do [ -e "$tmp/k/000001.png" ] && break; sleep 0.02; done
kill -KILL $kpid 2>/dev/null
wait $kpid 2>/dev/null
kept=$(ls "$tmp/k" 2>/dev/null | grep -cE '^[0-9]{6}\.png$')
if [ "$kept" -ge 2 ] && [ "$kept" -lt 16 ] && ! grep -q "32/32" "$tmp/kerr"; then
  echo "ok: killed after the first mini-batch ($(tail -1 "$tmp/kerr")), $kept of 16 PNGs kept"
else
  fail "killed run: $kept PNGs kept (want 2 to 15) at $(tail -1 "$tmp/kerr")"
fi
run "$UVIT" "${S[@]}" --n 16 --dir "$tmp/k" --npz "$tmp/k.npz"
grep -q "^$tmp/k: $kept of 16 samples already there; drawing the $((16 - kept)) missing" \
  "$tmp/err" && echo "ok: $(grep 'already there' "$tmp/err")" || fail "rerun's line: $(cat "$tmp/err")"
# A kill between two files of one mini-batch leaves it to be drawn whole: one sample more.
drawn=$(sed -n 's/^\([0-9]*\) samples in .*/\1/p' "$tmp/err")
[ "${drawn:-0}" -ge $((16 - kept)) ] && [ "${drawn:-0}" -le $((17 - kept)) ] ||
  fail "the rerun drew ${drawn:-?} samples, $((16 - kept)) missing"
same_pngs "$tmp/straight" "$tmp/k" && cmp -s "$tmp/straight.npz" "$tmp/k.npz" &&
  echo "ok: killed + rerun == straight run (16 PNGs, the .npz from the kept PNGs and the new)" ||
  fail "killed + rerun differs from the straight run"

# --n 5 then --n 16: the unit of 4..5 is drawn whole again (its sample 4 is not rewritten).
run "$UVIT" "${S[@]}" --n 5 --dir "$tmp/g" -q
t4=$(stat -c %Y.%i "$tmp/g/000004.png")
run "$UVIT" "${S[@]}" --n 16 --dir "$tmp/g" --out "$tmp/g/img_%02d.png"
grep -q "^$tmp/g: 5 of 16 samples already there; drawing the 11 missing (12 samples in whole mini-batches of 2)$" \
  "$tmp/err" && echo "ok: $(grep 'already there' "$tmp/err")" || fail "--n 16 after 5: $(cat "$tmp/err")"
[ "$(stat -c %Y.%i "$tmp/g/000004.png")" = "$t4" ] || fail "sample 4, already there, was rewritten"
same_pngs "$tmp/straight" "$tmp/g" && echo "ok: --n 5 then --n 16 == straight --n 16" ||
  fail "--n 5 then 16 differs from a straight run"
# The per-image --out files of the kept samples come from their PNGs: the same bytes.
for i in 00 04 15; do
  cmp -s "$tmp/g/img_$i.png" "$tmp/straight/0000$i.png" || fail "--out img_$i.png differs"
done

# Another setting is refused in one line naming the file and the setting; nothing changes.
before=$(cd "$tmp/straight" && ls -l --time-style=+%s.%N | cksum)
expect_error "straight/000000.png was drawn with other settings (--seed 0 there, 1 in this run)" \
  "$UVIT" "${S[@]}" --n 16 --dir "$tmp/straight" --seed 1 -q
expect_error "(--seed 0 there, [0-9]* in this run): .* (--seed -1 drew a new seed: give the one" \
  "$UVIT" "${S[@]}" --n 16 --dir "$tmp/straight" --seed -1 -q
expect_error "(--steps 4 there, 3 in this run)" "$UVIT" sample --config fmnist_uvit_tiny \
  --weights "$W" --classes all --steps 3 --n 16 --dir "$tmp/straight" -q
expect_error "(class (--class/--classes) 0 there, 3 in this run)" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$W" --class 3 --steps 4 --n 2 \
  --dir "$tmp/straight" -q
# The precision changes the samples: refused like the seed (a CPU without bf16 units runs fp32).
cp -r "$tmp/straight" "$tmp/prec"
if "$UVIT" "${S[@]}" --n 16 --dir "$tmp/prec" --precision bf16 -q 2>"$tmp/perr"; then
  grep -q "without bf16" "$tmp/perr" && echo "skip: --precision bf16 ran fp32 on this CPU" ||
    fail "--precision bf16 on an fp32 folder was not refused: $(cat "$tmp/perr")"
elif grep -q "^uvit: error: $tmp/prec/000000.png was drawn with other settings (--precision fp32 there, bf16 in this run): .*(nothing was drawn or overwritten)$" "$tmp/perr"; then
  echo "ok: $(cat "$tmp/perr")"
else
  fail "--precision bf16 on an fp32 folder: $(cat "$tmp/perr")"
fi
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run2" --steps 2 --batch 2 --no-grid -q
expect_error "(--weights (contents) " "$UVIT" sample --config fmnist_uvit_tiny \
  --weights "$tmp/run2/nnet_ema.safetensors" --classes all --steps 4 --n 16 --dir "$tmp/straight" -q
[ "$(cd "$tmp/straight" && ls -l --time-style=+%s.%N | cksum)" = "$before" ] &&
  echo "ok: the refused runs left the folder as it was" || fail "a refused run changed the folder"

# Skip-DiT's cache approximates the network: a folder drawn without it is refused with it.
run "$UVIT" train --config fmnist_skip_dit_tiny --out "$tmp/skiprun" --steps 2 --batch 2 --no-grid -q
SK=(sample --config fmnist_skip_dit_tiny --weights "$tmp/skiprun/nnet_ema.safetensors" --class 0 --steps 4)
run "$UVIT" "${SK[@]}" --n 2 --dir "$tmp/sk" -q
expect_error "sk/000000.png was drawn with other settings (--skip-cache none there, 2 in this run)" \
  "$UVIT" "${SK[@]}" --n 4 --dir "$tmp/sk" --skip-cache 2 -q
[ "$(ls "$tmp/sk" | wc -l)" -eq 2 ] || fail "the refused --skip-cache run wrote files"

# Another --batch changes only the last bits: the missing samples are drawn, with one line saying
# they are not a straight run's bytes; nothing to draw, nothing said.
cp -r "$tmp/straight" "$tmp/b4"
rm "$tmp/b4/000014.png" "$tmp/b4/000015.png"
S4=(sample --config fmnist_uvit_tiny --weights "$W" --classes all --steps 4 --batch 4)
run "$UVIT" "${S4[@]}" --n 16 --dir "$tmp/b4"
grep -q "^uvit: warning: $tmp/b4/000000.png was drawn with --batch 2, this run's is 4: the 4 samples drawn now differ in their last bits from a straight run's (give --batch 2 for the same bytes)$" \
  "$tmp/err" && [ -e "$tmp/b4/000015.png" ] && echo "ok: $(grep 'batch 2' "$tmp/err")" ||
  fail "--batch 4 on a --batch 2 folder: $(cat "$tmp/err")"
run "$UVIT" "${S4[@]}" --n 16 --dir "$tmp/straight"
grep -q "warning" "$tmp/err" && fail "--batch 4, nothing to draw: $(cat "$tmp/err")"
# A folder grown past an --n under the mini-batch (--n 2, then --n 4, --batch 4 both times) is not
# one of another --batch: the record holds the --batch given, not the 2 drawn (the warning named a
# --batch 2 never given, and advised it).
run "$UVIT" "${S4[@]}" --n 2 --dir "$tmp/grow" -q
run "$UVIT" "${S4[@]}" --n 4 --dir "$tmp/grow"
! grep -q "warning" "$tmp/err" && [ -e "$tmp/grow/000003.png" ] &&
  echo "ok: --n 2 grown to --n 4 at --batch 4: no --batch warning" ||
  fail "--n grown under the mini-batch: $(cat "$tmp/err")"

# A folder of uvit before the precision and mini-batch were recorded (stop 48): their absence is no
# difference, and it is resumed to a straight run's bytes.
"$PY" - "$tmp/straight" "$tmp/old" <<'PYEOF' || fail "writing the old records"
import json, os, struct, sys, zlib
os.makedirs(sys.argv[2])
for name in sorted(os.listdir(sys.argv[1])):
    b = open(os.path.join(sys.argv[1], name), "rb").read()
    out, pos = b[:8], 8
    while pos < len(b):
        n, t = struct.unpack(">I", b[pos:pos + 4])[0], b[pos + 4:pos + 8]
        d = b[pos + 8:pos + 8 + n]
        pos += 12 + n
        if t == b"tEXt" and d.startswith(b"uvit-params\0"):
            rec = json.loads(d[12:])
            del rec["precision"], rec["mini_batch"]
            d = b"uvit-params\0" + json.dumps(rec, separators=(",", ":")).encode()
        out += struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    open(os.path.join(sys.argv[2], name), "wb").write(out)
PYEOF
rm "$tmp/old/000015.png"
run "$UVIT" "${S[@]}" --n 16 --dir "$tmp/old"
grep -q "^$tmp/old: 15 of 16 samples already there; drawing the 1 missing" "$tmp/err" &&
  cmp -s "$tmp/old/000015.png" "$tmp/straight/000015.png" &&
  echo "ok: an old folder (records without precision, mini_batch) resumed" ||
  fail "old folder: $(cat "$tmp/err")"

# A PNG of another program (no uvit-params record) where a sample goes: refused, kept.
"$PY" - "$tmp/foreign/000002.png" <<'PYEOF' || fail "writing a foreign PNG"
import os, struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
raw = b"".join(b"\0" + bytes(28) for _ in range(28))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
PYEOF
sum=$(cksum <"$tmp/foreign/000002.png")
expect_error "foreign/000002.png: a PNG without uvit sample's metadata (uvit-params)" \
  "$UVIT" "${S[@]}" --n 4 --dir "$tmp/foreign" -q
[ "$(cksum <"$tmp/foreign/000002.png")" = "$sum" ] || fail "the foreign PNG was changed"

# A cut PNG (a copy interrupted) is drawn again and replaced, with a warning naming it.
cp -r "$tmp/straight" "$tmp/cut"
head -c 300 "$tmp/straight/000003.png" >"$tmp/cut/000003.png"
run "$UVIT" "${S[@]}" --n 16 --dir "$tmp/cut"
grep -q "^uvit: warning: $tmp/cut/000003.png: truncated PNG.*: drawn again and replaced$" "$tmp/err" &&
  grep -q "^$tmp/cut: 15 of 16 samples already there; drawing the 1 missing (2 samples in whole mini-batches of 2)$" \
    "$tmp/err" && echo "ok: $(head -1 "$tmp/err")" || fail "cut PNG: $(cat "$tmp/err")"
same_pngs "$tmp/straight" "$tmp/cut" && echo "ok: the cut PNG redrawn, the folder a straight run's" ||
  fail "the cut PNG's folder differs from the straight run"

# The scan skips a large image chunk by its length (docs/cli.md "--dir"): PNGs of ~150 KB are
# kept, and one cut inside its image data is drawn again and replaced.
S0=(sample --config fmnist_uvit_tiny --weights "$W" --class 0 --steps 4 --batch 2)
run "$UVIT" "${S0[@]}" --n 1 --dir "$tmp/c0" -q
"$PY" bench/sample_dir_folder.py "$tmp/c0/000000.png" "$tmp/big" 4 || fail "writing large PNGs"
head -c 100000 "$tmp/big/000002.png" >"$tmp/big/cut" && mv "$tmp/big/cut" "$tmp/big/000002.png"
run "$UVIT" "${S0[@]}" --n 4 --dir "$tmp/big"
grep -q "^uvit: warning: $tmp/big/000002.png: truncated PNG chunk IDAT .*: drawn again and replaced$" \
  "$tmp/err" && grep -q "^$tmp/big: 3 of 4 samples already there; drawing the 1 missing" "$tmp/err" &&
  [ "$(stat -c %s "$tmp/big/000003.png")" -gt 150000 ] &&
  echo "ok: large PNGs kept, the one cut in its image data redrawn" || fail "large PNGs: $(cat "$tmp/err")"

# Everything there: nothing drawn, the .npz from the PNGs alone.
run "$UVIT" "${S[@]}" --n 16 --dir "$tmp/straight" --npz "$tmp/again.npz"
grep -q "16 of 16 samples already there; nothing to draw$" "$tmp/err" &&
  grep -q "^0 samples in .* (0 network evaluations)$" "$tmp/err" &&
  cmp -s "$tmp/straight.npz" "$tmp/again.npz" && echo "ok: a finished folder draws nothing" ||
  fail "finished folder: $(cat "$tmp/err")"
exit $fails
