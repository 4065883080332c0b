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
