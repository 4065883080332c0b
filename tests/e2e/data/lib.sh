# Shared helpers of the end-to-end scripts (sourced; they set $tmp first). A failure is counted in
# $fails, which each script returns as its exit status.
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
run() {  # run CMD...: must succeed; stdout in $tmp/out, stderr in $tmp/err
  if ! "$@" >"$tmp/out" 2>"$tmp/err"; then fail "exit $?: $*"; cat "$tmp/err"; fi
}
expect_error() {  # expect_error NEEDLE CMD...: exit 1 with one line of stderr holding NEEDLE
  local needle=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  local lines; lines=$(wc -l <"$tmp/err")
  if [ $rc -ne 1 ] || [ "$lines" -ne 1 ] || ! grep -q -- "$needle" "$tmp/err"; then
    fail "(rc=$rc, $lines lines, want '$needle'): $*"; cat "$tmp/err"
  else
    echo "ok: $(cat "$tmp/err")"
  fi
}
# check_checkpoint FX CONFIG FILE: convert FILE (an official-layout checkpoint) to safetensors;
# predictions from both must be identical and within 1e-5 of the twin's $FX/CONFIG_out.npy.
check_checkpoint() {
  local fx=$1 c=$2 f=$3
  local pargs=(--config "$fx/$c.json" --x "$fx/${c}_x.npy" --t "$fx/${c}_t.npy" --y "$fx/${c}_y.npy")
  run "$UVIT" convert "$f" "$f.safetensors" --config "$fx/$c.json"
  run "$UVIT" predict "${pargs[@]}" --weights "$f" --out "$f.npy"
  run "$UVIT" predict "${pargs[@]}" --weights "$f.safetensors" --out "$f.st.npy"
  "$PY" - "$f.npy" "$f.st.npy" "$fx/${c}_out.npy" <<'PYEOF' || fail "$f: predictions"
import sys, numpy as np
a, b, ref = (np.load(p) for p in sys.argv[1:4])
assert a.shape == ref.shape and np.array_equal(a, b), "checkpoint and safetensors predictions differ"
err = np.abs(a - ref).max() / np.abs(ref).max()
assert err <= 1e-5, f"relative error {err} (the wrong entry loaded?)"
print(sys.argv[1], "ok, rel err", err)
PYEOF
}
