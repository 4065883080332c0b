#!/usr/bin/env bash
# Two `uvit eval` on one --out (docs/evaluation.md, "Two evals on one work folder"): they split
# the chunks, each made once by one of them, and both end with the samples and the FID of one
# eval alone. One killed (SIGKILL) while it makes a chunk leaves that chunk to the other, which
# waits for it, makes it and ends with the same result. Before the claims each made every chunk.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_run  # $W
inception_weights I "${2:-}"
T=(--threads 1)
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 5 --steps 2 --class 1 -q \
  --npy "$tmp/s.npy"
run "$UVIT" "${T[@]}" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
E=("$UVIT" "${T[@]}" eval --config fmnist_uvit_tiny --weights "$W" --n 6 --chunk 1 --steps 2
  --seed 1 --ref "$tmp/ref.npz" --inception "$I" --metrics fid)
run "${E[@]}" --out "$tmp/one.npz" --json "$tmp/one.json" -q
fid=$(sed -n 's/^FID: //p' "$tmp/out")

# --- two at once. Every atomic write (each chunk's) pauses 0.7 s (a test hook), so that the two
# overlap for sure: six chunks take either of them 4 s or more.
for x in a b; do
  UVIT_TEST_WRITE_PAUSE_MS=700 "${E[@]}" --out "$tmp/two.npz" --json "$tmp/$x.json" \
    >"$tmp/$x.out" 2>"$tmp/$x.err" &
  eval "p$x=\$!"
done
wait "$pa"; ra=$?; wait "$pb"; rb=$?
[ $ra -eq 0 ] && [ $rb -eq 0 ] || fail "two evals: exit $ra and $rb: $(cat "$tmp/a.err" "$tmp/b.err")"
"$PY" - "$tmp" <<'PYEOF' && echo "ok: two evals on one --out made each of the 6 chunks once ($(grep -h '^samples ->' "$tmp/a.err" "$tmp/b.err" | tr '\n' ' '))" || fail "two evals split: $(grep -h '^samples ->' "$tmp/a.err" "$tmp/b.err")"
import json, sys
t = sys.argv[1]
a, b = (json.load(open("%s/%s.json" % (t, x))) for x in "ab")
assert a["chunks"] == b["chunks"] == 6, (a, b)
# Each took from the work folder exactly the chunks the other made.
made = (6 - a["resumed_chunks"]) + (6 - b["resumed_chunks"])
assert made == 6, ("chunks made in all", made)
PYEOF
for x in a b; do
  [ "$(sed -n 's/^FID: //p' "$tmp/$x.out")" = "$fid" ] || fail "eval $x: FID $(cat "$tmp/$x.out") != $fid"
done
"$PY" -c "
import numpy as np, sys
assert np.load(sys.argv[1])['arr_0'].tobytes() == np.load(sys.argv[2])['arr_0'].tobytes()" \
  "$tmp/one.npz" "$tmp/two.npz" && echo "ok: their samples and FID are one eval's ($fid)" ||
  fail "the shared eval's samples differ from one eval's"
ls "$tmp/two.npz.parts" | grep -q claim && fail "claim files left: $(ls "$tmp/two.npz.parts")"

# --- one killed while it makes chunk 0. The work folder's manifest is there already (as after
# any first start), so that the paused write is chunk 0's.
K=$tmp/k.npz.parts
mkdir "$K" && cp "$tmp/two.npz.parts/manifest.json" "$K/"
UVIT_TEST_WRITE_PAUSE_MS=600000 "${E[@]}" --out "$tmp/k.npz" -q >/dev/null 2>&1 &
pa=$!
for _ in $(seq 600); do ls "$K" | grep -q '^chunk_0.npz.tmp' && break; sleep 0.1; done
"${E[@]}" --out "$tmp/k.npz" --json "$tmp/k.json" >"$tmp/k.out" 2>"$tmp/k.err" &
pb=$!
for _ in $(seq 600); do [ -e "$K/chunk_5.npz" ] && break; sleep 0.1; done
for _ in $(seq 600); do grep -q "chunk 0 is being made" "$tmp/k.err" && break; kill -0 $pb 2>/dev/null || break; sleep 0.1; done
grep -q "^$K: chunk 0 is being made by pid $pa on .*, another eval of this work folder; waiting for it$" "$tmp/k.err" &&
  echo "ok: $(grep 'is being made' "$tmp/k.err")" || fail "no wait for the held chunk: $(cat "$tmp/k.err")"
kill -KILL $pa; wait $pa 2>/dev/null
wait $pb; rb=$?
[ $rb -eq 0 ] && [ "$(sed -n 's/^FID: //p' "$tmp/k.out")" = "$fid" ] &&
  cmp -s <("$PY" -c "import numpy as np; import sys; sys.stdout.buffer.write(np.load('$tmp/one.npz')['arr_0'].tobytes())") \
    <("$PY" -c "import numpy as np; import sys; sys.stdout.buffer.write(np.load('$tmp/k.npz')['arr_0'].tobytes())") &&
  echo "ok: the killed eval's chunk made by the other, which ends with one eval's samples and FID" ||
  fail "after the kill: exit $rb, $(cat "$tmp/k.out" "$tmp/k.err")"
pid=
exit $fails
