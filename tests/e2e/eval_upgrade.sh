#!/usr/bin/env bash
# An older uvit's half-done `uvit eval` resumed by today's (docs/formats.md, "Across versions"):
# chunks of 2026-11 hold samples, pool3 and logits but no sFID features. Their features are computed
# from the stored samples, nothing is sampled again (the weights are replaced by ones that would
# sample differently, and the stored samples must stay the same bytes), and every metric equals a
# fresh eval's with the same settings.
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_run  # $tmp/run at step 1, $W its EMA weights
inception_weights I "${2:-}"
T=(--threads 1)
run "$UVIT" "${T[@]}" sample --config fmnist_uvit_tiny --weights "$W" --n 5 --steps 2 --class 1 -q \
  --npy "$tmp/s.npy"
run "$UVIT" "${T[@]}" fid-stats "$tmp/s.npy" --out "$tmp/ref.npz" --inception "$I" -q
run "$UVIT" "${T[@]}" fid-features "$tmp/s.npy" --out "$tmp/ref_f.npy" --inception "$I" -q
# Every metric (Inception Score from the logits, FID from pool3, sFID from the spatial features,
# precision/recall): 5 samples in chunks of 2, 2 and 1.
ev() {  # ev NAME ARGS...: eval into $tmp/NAME.npz (chunks in $tmp/NAME.npz.parts), $tmp/NAME.json
  local name=$1; shift
  run "$UVIT" "${T[@]}" eval --config fmnist_uvit_tiny --weights "$W" --n 5 --chunk 2 --steps 2 \
    --sampler dpm-solver --seed 1 --ref "$tmp/ref.npz" --ref-features "$tmp/ref_f.npy" \
    --inception "$I" --metrics all --out "$tmp/$name.npz" --json "$tmp/$name.json" "$@"
}
ev fresh -q

# The fresh eval's folder as the uvit of 2026-11 would have left it, all three chunks.
cp -a "$tmp/fresh.npz.parts" "$tmp/old.npz.parts"
eval_parts_2026_11 "$tmp/old.npz.parts"
# Weights that sample other images (every float doubled), unchanged since the old manifest as far as
# its modification time says: a chunk sampled again now would hold other samples.
"$PY" - "$W" <<'PYEOF' || fail "rewriting the weights"
import json, struct, sys
import numpy as np
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
for k, v in h.items():
    if k != "__metadata__" and v["dtype"] == "F32":
        s, e = v["data_offsets"]
        a = np.frombuffer(bytes(b[8 + n + s:8 + n + e]), np.float32) * 2
        b[8 + n + s:8 + n + e] = a.tobytes()
open(p, "wb").write(bytes(b))
PYEOF
touch -d '1 hour ago' "$W"
ev old
n=$(grep -c "made by an older uvit without the sFID features" "$tmp/err")
grep -q "^$tmp/old.npz.parts/chunk_0.npz: made by an older uvit without the sFID features; the features of its chunks are computed again from their stored samples, not sampled again" "$tmp/err" &&
  [ "$n" -eq 1 ] && echo "ok: $(grep 'older uvit without' "$tmp/err")" ||
  fail "upgrade line ($n times): $(cat "$tmp/err")"
# The upgraded chunks: the stored samples (same bytes as the fresh run's: nothing sampled with the
# new weights) and the fresh run's features bit for bit; no time (the chunk was not made now).
"$PY" - "$tmp" <<'PYEOF' && echo "ok: the old chunks keep their samples and get the fresh run's features" || fail "upgraded chunks"
import glob, numpy as np, os, sys
t = sys.argv[1]
fresh = sorted(glob.glob(t + "/fresh.npz.parts/chunk_*.npz"))
assert len(fresh) == 3, fresh
for p in fresh:
    a, b = np.load(p), np.load(t + "/old.npz.parts/" + os.path.basename(p))
    assert set(b.files) == {"samples", "pool3", "logits", "spatial"}, (p, b.files)
    for k in b.files:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, (p, k)
        assert a[k].tobytes() == b[k].tobytes(), (p, k)
assert np.load(t + "/fresh.npz")["arr_0"].tobytes() == np.load(t + "/old.npz")["arr_0"].tobytes()
PYEOF
same_metrics() {  # same_metrics NAME: $tmp/NAME.json's metrics are the fresh eval's, exactly
  "$PY" - "$tmp/fresh.json" "$tmp/$1.json" <<'PYEOF' && echo "ok: $1: every metric is the fresh eval's" || fail "$1 metrics: $(cat "$tmp/$1.json")"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
keys = ("inception_score", "fid", "sfid", "precision", "recall")
for k in keys:
    assert k in a and a[k] == b[k], (k, a.get(k), b.get(k))
assert b["resumed_chunks"] == 3 and b["chunk_seconds"] is None, b
PYEOF
}
same_metrics old
# Once upgraded, the chunks are today's: resumed without a word.
ev old
! grep -q "older uvit" "$tmp/err" && echo "ok: upgraded chunks resume without the line" ||
  fail "second resume: $(cat "$tmp/err")"
same_metrics old

exit $fails
