#!/usr/bin/env bash
# Regressions from the sixth new-user audit (docs/ux_audit.md, "round 6"): each fix's check failed
# before it; the others keep what the audit found fine (a server soak, official checkpoint
# wrappers, the docs against the help texts).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
tiny_run

# --- ZeRO (docs/distributed.md) --------------------------------------------------------------------
# `--set train.zero=3` said `train.dp_virtual must be >= 0 and train.zero 0, 1 or 2`: a setting the
# user did not give, and not the value given.
expect_error "^uvit: error: config fmnist_uvit_tiny: train.zero must be 0 (off), 1 (moments) or 2 (moments and gradient), got 3 (docs/distributed.md)$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/z" --steps 1 --set train.zero=3
expect_error "^uvit: error: config fmnist_uvit_tiny: train.dp_virtual must be >= 0, got -2$" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/z" --steps 1 --set train.dp_virtual=-2
[ ! -e "$tmp/z" ] || fail "a refused train.zero left a run folder"

# --- help and docs ---------------------------------------------------------------------------------
cmds=$("$UVIT" --help | sed -n '/^Subcommands:/,/^$/p' | sed -n 's/^  \([a-z][a-z-]*\) .*/\1/p')
# Every number option of every command says its default (--guidance, eval --max-chunks and the two
# --repeat did not): the option's whole help entry holds "default" (or it is REQUIRED).
before=$fails
for c in $cmds "autoencoder encode" "autoencoder decode"; do
  # shellcheck disable=SC2086
  "$UVIT" help $c 2>/dev/null | awk '
    function flush() { if (o ~ / (INT|FLOAT|UINT)( |$)/ && o !~ /default|REQUIRED/) print o; o = "" }
    /^  -/ { flush(); o = $0; next }
    /^   +[^ ]/ { o = o " " $0; next }
    { flush() }
    END { flush() }' | sed 's/  */ /g' >"$tmp/nodefault"
  [ -s "$tmp/nodefault" ] && fail "uvit help $c: no default said: $(cat "$tmp/nodefault")"
done
[ $fails = "$before" ] && echo "ok: every number option of every command says its default"
# Every command README.md and docs/ name (`uvit CMD` in code) exists, and every option docs/cli.md
# or README.md names is an option of some command.
before=$fails
named=$({
  grep -ohE '`uvit [a-z][a-z-]*' README.md docs/*.md | sed 's/^`uvit //'
  grep -hE '^\s*(\$ )?(\S*/)?uvit [a-z]' README.md docs/*.md | sed -E 's/^\s*(\$ )?(\S*\/)?uvit ([a-z][a-z-]*).*/\3/'
} | sort -u)
for c in $named; do
  case $c in keeps | run | uvit) continue ;; esac  # prose: "uvit keeps", "uvit run", `uvit uvit_cuda_tests`
  grep -qx -- "$c" <<<"$cmds" || fail "README/docs name 'uvit $c', not a command of uvit --help"
done
opts=$(for c in $cmds "autoencoder encode" "autoencoder decode"; do
  # shellcheck disable=SC2086
  "$UVIT" help $c 2>/dev/null; done | grep -oE -- '--[a-z0-9][a-z0-9-]*' | sort -u)
for o in $(grep -ohE -- '(^|[ `(])--[a-z][a-z0-9-]*' docs/cli.md | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u); do
  case $o in --version | --bogus) continue ;; esac  # uvit --version; the page's example of a typo
  grep -qx -- "$o" <<<"$opts" || fail "docs/cli.md names $o, an option of no command"
done
[ $fails = "$before" ] && echo "ok: the commands and options the docs name exist"

# --- official checkpoints, as the releases wrap them -----------------------------------------------
"$PY" - "$W" "$tmp" <<'PYEOF' || fail "writing the checkpoints"
import json, struct, sys
from collections import OrderedDict
import numpy as np, torch
w, d = sys.argv[1:3]
b = open(w, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
sd = OrderedDict()
for k, v in json.loads(b[8:8 + n]).items():
    if k != "__metadata__":
        s, e = v["data_offsets"]
        sd[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(v["shape"]).copy())
torch.save({"model": sd, "epoch": 3}, d + "/model.pth")
torch.save({"ema": sd}, d + "/ema.pt")
k = list(sd)[5]
torch.save(OrderedDict(("module." + x if x == k else x, y) for x, y in sd.items()), d + "/renamed.pth")
PYEOF
for f in model.pth ema.pt; do
  run "$UVIT" info "$tmp/$f"
  grep -q "^preset        fmnist_uvit_tiny " "$tmp/out" || fail "info $f: $(cat "$tmp/out")"
  run "$UVIT" sample --config fmnist_uvit_tiny --weights "$tmp/$f" --class 1 --n 1 --steps 2 --out "$tmp/$f.png" -q
done
expect_error "^uvit: error: .*renamed.pth: unexpected tensor 'module.in_blocks.0.norm1.bias' \[128\]" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$tmp/renamed.pth" --class 1 --n 1 --steps 2 --out "$tmp/r.png"
expect_error "^uvit: error: .*renamed.pth: unexpected tensor 'module.in_blocks.0.norm1.bias' \[128\]" \
  "$UVIT" train --config fmnist_uvit_tiny --init "$tmp/renamed.pth" --out "$tmp/ri" --steps 1
[ ! -e "$tmp/ri" ] || fail "a refused --init left a run folder"

# --- a server that runs for days (docs/serve.md) ---------------------------------------------------
# Good, bad and abandoned requests in a loop: each bad one gets its status and a JSON error, the
# server stays up, and its resident memory stays within a bound after the warm-up.
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib"; exit $fails
fi
port=$("$PY" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
"$UVIT" serve --config fmnist_uvit_tiny --weights "$W" --port "$port" --threads 1 -q 2>"$tmp/server.log" &
pid=$!
B=http://127.0.0.1:$port
for _ in $(seq 300); do curl -sf "$B/health" >/dev/null 2>&1 && break; sleep 0.1; done
head -c 100000 /dev/urandom >"$tmp/noise.bin"
# A body over 8 KiB sent by `curl -d` (application/x-www-form-urlencoded, the default) was 413 "the
# request body is too large" (cpp-httplib's form limit), though the limit is 8 MB: a PNG for
# png-info is larger. The message now names the type and the header that sends it as JSON.
"$PY" -c "import base64, json, sys; print(json.dumps({'image': base64.b64encode(open(sys.argv[1], 'rb').read() * 40).decode()}))" \
  "$tmp/model.pth.png" >"$tmp/big.json"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST "$B/sdapi/v1/png-info" -d "@$tmp/big.json")
[ "$code" = 413 ] && grep -q "sent as application/x-www-form-urlencoded (curl -d's default), which is limited to 8192 bytes; send it as JSON: -H 'Content-Type: application/json'" "$tmp/resp" ||
  fail "png-info by curl -d: $code $(cat "$tmp/resp")"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST "$B/sdapi/v1/png-info" -H 'Content-Type: application/json' -d "@$tmp/big.json")
[ "$code" = 200 ] && grep -q '"Model":"fmnist_uvit_tiny"' "$tmp/resp" || fail "png-info as JSON: $code $(head -c 300 "$tmp/resp")"
want() {  # want CODE JSON_KEY CURL_ARGS...: the status, and a JSON body holding the key
  local code=$1 key=$2; shift 2
  local got; got=$(curl -s -m 60 -o "$tmp/resp" -w '%{http_code}' "$@")
  if [ "$got" != "$code" ] || ! "$PY" -c "import json, sys; assert '$key' in json.load(open(sys.argv[1]))" "$tmp/resp" 2>/dev/null; then
    fail "want $code with '$key', got $got: $* -> $(head -c 300 "$tmp/resp")"
  fi
}
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
before=$fails rss0=
for i in $(seq 1 ${UX6_REQUESTS:-48}); do
  case $((i % 12)) in
    0) want 200 images -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Sneaker", "steps": 2, "batch_size": 2}' ;;
    1) want 400 error -X POST "$B/sdapi/v1/txt2img" -d '{"prompt":' ;;
    2) want 422 error -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Sneaker", "batch_size": 100000}' ;;
    3) want 200 data -X POST "$B/v1/images/generations" -d '{"prompt": "Bag", "steps": 2, "size": "512x512"}' ;;
    4) want 422 error -X POST "$B/v1/images/generations" -d '{"prompt": "Bag", "n": 1e12}' ;;
    5) curl -s -m 0.3 -o /dev/null -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Bag", "steps": 50, "batch_size": 4}' ;;
    6) want 202 id -X POST "$B/uvit/v1/jobs" -d '{"class": "Sneaker", "steps": 2, "n": 2}' ;;
    7) want 422 error -X POST "$B/uvit/v1/jobs" -d '{"class": "snaeker", "steps": 2}' ;;
    8) want 404 error "$B/uvit/v1/jobs/nope" ;;
    9) want 400 error -X POST "$B/sdapi/v1/txt2img" -H 'Content-Type: application/json' --data-binary "@$tmp/noise.bin" ;;
    10) for _ in 1 2 3; do curl -s -m 60 -o /dev/null -X POST "$B/sdapi/v1/txt2img" -d '{"prompt": "Bag", "steps": 2}' & done
        wait $(jobs -p | grep -vx "$pid") ;;
    11) id=$(curl -s -m 20 -X POST "$B/uvit/v1/jobs" -d '{"class": "Bag", "steps": 40, "n": 4}' | "$PY" -c "import json, sys; print(json.load(sys.stdin)['id'])")
        curl -s -m 20 -o /dev/null -X POST "$B/uvit/v1/jobs/$id/cancel"
        curl -s -m 0.5 -o /dev/null "$B/uvit/v1/jobs/$id/events" ;;
  esac
  kill -0 "$pid" 2>/dev/null || { fail "the server died at request $i: $(tail -3 "$tmp/server.log")"; break; }
  [ "$i" = 12 ] && rss0=$(rss)  # after the warm-up
done
if kill -0 "$pid" 2>/dev/null; then
  rss1=$(rss)
  # 64 finished jobs are kept (docs/serve.md); beyond them memory must not follow the requests.
  [ $((rss1 - rss0)) -lt 65536 ] || fail "server RSS grew from $rss0 kB to $rss1 kB over $((i - 12)) requests"
  [ $fails = "$before" ] && echo "ok: $i requests, every bad one a JSON error; RSS $rss0 kB -> $rss1 kB"
  kill -TERM "$pid"; wait "$pid"; rc=$?; pid=
  [ $rc = 0 ] || fail "server exit $rc after SIGTERM"
fi
exit $fails
