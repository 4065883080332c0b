#!/usr/bin/env bash
# `uvit train --init W` opens W twice, as .safetensors and as .pth: once for the load (the
# quantisation check, the checkpoint entry the run records and the tensors, from one reader) and
# once for the SHA-256 the run records; it opened a .safetensors seven times (three readers of two
# opens each, the hash), and a .pth three times (the magic check opened it apart from the archive's
# reader). docs/benchmarks.md, "`uvit train --init W`: opens of the weights file". Counted with
# strace where it is installed; the run's record is checked either way.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_run
run "$UVIT" convert "$tmp/run/nnet.safetensors" "$tmp/run/nnet.pth"
for I in "$tmp/run/nnet.safetensors" "$tmp/run/nnet.pth"; do
  rm -rf "$tmp/ft"
  args=(train --config fmnist_uvit_tiny --init "$I" --out "$tmp/ft" --steps 1 --batch 2 --no-grid)
  if command -v strace >/dev/null; then
    strace -f -e trace=open,openat -o "$tmp/trace" "$UVIT" "${args[@]}" >"$tmp/out" 2>"$tmp/err" ||
      fail "train --init under strace: $(cat "$tmp/err")"
    if grep -q "PTRACE_TRACEME\|Operation not permitted" "$tmp/err"; then
      echo "SKIP: strace may not trace here"
    else
      n=$(grep -c "\"$I\"" "$tmp/trace")
      [ "$n" = 2 ] && echo "ok: --init ${I##*/} opened twice" ||
        fail "--init ${I##*/} opened $n times, want 2"
    fi
  else
    echo "SKIP: no strace (the open count)"
    run "$UVIT" "${args[@]}"
  fi
  sha=$(sha256sum "$I" | cut -d' ' -f1)
  grep -q "^starting from $I (sha256 $sha)$" "$tmp/err" || fail "the starting line: $(cat "$tmp/err")"
  "$PY" - "$tmp/ft" "$I" "$sha" <<'PYEOF' || fail "the run's record of its --init ${I##*/}"
import json, sys
run, path, sha = sys.argv[1:]
t = json.load(open(run + "/config.json"))["train"]
assert t["init_weights"] == path and t["init_weights_sha256"] == sha, t
rows = [json.loads(l) for l in open(run + "/log.jsonl")]
init = [r for r in rows if r.get("event") == "init"]
assert len(init) == 1 and init[0]["path"] == path and init[0]["sha256"] == sha, init
print("ok: config.json and log.jsonl record " + sha)
PYEOF
done
exit $fails
