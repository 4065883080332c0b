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

# --- round 6 (follow-up): every family's official checkpoints, as the releases ship them ---------
# Each tiny preset's initial weights (`train --steps 0`) written in its family's release layout
# (docs/<family>.md): DiT's raw DiT-XL-2-256x256.pt and its train.py {"model", "ema", "opt",
# "args"} (Skip-DiT's DiT-XL-2-skip.pt too), LightningDiT's {"model", "ema", "opt", "config"}, FiT's
# raw model_ema.safetensors and .bin, MDT's raw mdt_xl2_v2_ckpt.pt, DiffiT's raw .safetensors, SVG's
# training checkpoint; MDT's and DiffiT's relative_position_index buffers int64, as theirs are. In the wrappers "model" differs from "ema": the official loaders take "ema"
# (DiT's find_model, LightningDiT's inference.py), and so must we, saying so.
fam_ckpts() {  # fam_ckpts "DIR LAYOUT..."...: DIR/nnet_ema.safetensors in each layout, DIR/<layout>.<ext>
  "$PY" - "$@" <<'PYEOF' || fail "writing the checkpoints of the families"
import argparse, json, struct, sys
from collections import OrderedDict
import numpy as np, torch
# One Python for all families: each torch import costs seconds.
for job in sys.argv[1:]:
    d, *layouts = job.split()
    w = d + "/nnet_ema.safetensors"
    b = open(w, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    dt = {"F32": np.float32, "I64": np.int64, "I32": np.int32, "F16": np.float16}
    sd = OrderedDict()
    for k, v in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            sd[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dt[v["dtype"]]).reshape(v["shape"]).copy())
            if k.endswith("relative_position_index"):  # MDT's and DiffiT's int64 buffers
                sd[k] = sd[k].long()
    ps = [torch.nn.Parameter(v.clone()) for v in sd.values() if v.is_floating_point()]
    opt = torch.optim.AdamW(ps, lr=1e-4, weight_decay=0)
    for p in ps: p.grad = torch.ones_like(p)
    opt.step()
    model = OrderedDict((k, v + 1 if v.is_floating_point() else v) for k, v in sd.items())
    args = argparse.Namespace(model="DiT-XL/2", image_size=256, global_batch_size=256, ckpt=None)
    for l in layouts:
        if l == "raw": torch.save(sd, d + "/raw.pt")
        if l == "bin": torch.save(sd, d + "/raw.bin")
        if l == "st":  # as safetensors' save_file writes it: int64 buffers stay I64
            h, data, at = {}, b"", 0
            for k, v in sd.items():
                x = v.numpy().tobytes()
                h[k] = {"dtype": "I64" if v.dtype == torch.int64 else "F32", "shape": list(v.shape), "data_offsets": [at, at + len(x)]}
                data, at = data + x, at + len(x)
            j = json.dumps(h).encode()
            open(d + "/raw.safetensors", "wb").write(struct.pack("<Q", len(j)) + j + data)
        if l == "train": torch.save({"model": model, "ema": sd, "opt": opt.state_dict(), "args": args}, d + "/train.pt")
        if l == "lightning": torch.save({"model": model, "ema": sd, "opt": opt.state_dict(), "config": {"model": {"model_type": "LightningDiT-XL/1"}}}, d + "/train.pt")
PYEOF
}
before=$fails
fams=("dit raw train" "skip_dit train" "lightningdit lightning" "fit bin st" "mdt raw" "diffit st" "svg train")
for fam in "${fams[@]}"; do
  set -- $fam
  run "$UVIT" train --config fmnist_$1_tiny --out "$tmp/fam_$1" --steps 0 --batch 2 --no-grid -q
done
fam_ckpts "${fams[@]/#/$tmp/fam_}"
for fam in "${fams[@]}"; do
  set -- $fam
  c=fmnist_$1_tiny f=$tmp/fam_$1
  shift
  smp=(sample --config $c --class 1 --n 1 --steps 3 -q)  # (svg: one zero-init step of 3)
  run "$UVIT" "${smp[@]}" --weights "$f/nnet_ema.safetensors" --npy "$f/want.npy"
  for l in "$@"; do
    case $l in raw) x=$f/raw.pt ;; bin) x=$f/raw.bin ;; st) x=$f/raw.safetensors ;; *) x=$f/train.pt ;; esac
    run "$UVIT" info "$x"
    grep -q "^preset        $c " "$tmp/out" || fail "info $c $l: $(cat "$tmp/out")"
    case $l in train | lightning)
      grep -q "^entry         ema (the file holds model, ema, opt, " "$tmp/out" || fail "info $c $l names no entry: $(cat "$tmp/out")" ;;
    esac
    run "$UVIT" "${smp[@]}" --weights "$x" --npy "$f/got.npy"
    cmp -s "$f/want.npy" "$f/got.npy" || fail "sample $c --weights $l: not the ema weights' sample"
    run "$UVIT" train --config $c --init "$x" --out "$f/init_$l" --steps 1 --batch 2 --no-grid
    case $l in train | lightning)
      grep -q "^starting from $x, its \"ema\" entry (sha256 " "$tmp/err" || fail "train --init $c $l: $(cat "$tmp/err")" ;;
    esac
  done
done
[ $fails = "$before" ] && echo "ok: every family's official layouts through info, sample --weights and train --init"
# A renamed tensor in the ema of a train.py checkpoint: one line naming the file and the tensor.
"$PY" - "$tmp/fam_dit" <<'PYEOF' || fail "renaming a tensor"
import sys, torch
d = sys.argv[1]
c = torch.load(d + "/train.pt")
c["ema"]["pos_embed_x"] = c["ema"].pop("pos_embed")
torch.save(c, d + "/renamed.pt")
PYEOF
expect_error "^uvit: error: $tmp/fam_dit/renamed.pt: unexpected tensor 'pos_embed_x'" \
  "$UVIT" sample --config fmnist_dit_tiny --weights "$tmp/fam_dit/renamed.pt" --class 1 --n 1 --steps 2 --npy "$tmp/r.npy"
# `train --init X` named the file by its absolute path (/tmp/.../renamed.pth: unexpected tensor),
# where sample --weights X names it as typed.
expect_error "^uvit: error: renamed.pth: unexpected tensor 'module.in_blocks.0.norm1.bias' \[128\]" \
  bash -c "cd '$tmp' && exec '$UVIT' train --config fmnist_uvit_tiny --init renamed.pth --out ri2 --steps 1"
[ ! -e "$tmp/ri2" ] || fail "a refused --init left a run folder"
# A truncated .pth said `not a zip archive (no end of central directory record)`, and a legacy
# (pre-1.6) one that it is not supported; a safetensors file cut inside its data named a tensor's
# data_offsets "outside the data buffer". Each is now called truncated.
head -c 3000 "$tmp/model.pth" >"$tmp/cut.pth"
"$PY" - "$tmp" <<'PYEOF' || fail "writing a legacy checkpoint"
import os, sys, torch
d = sys.argv[1]
torch.save({"w": torch.ones(1000)}, d + "/legacy.pt", _use_new_zipfile_serialization=False)
b = open(d + "/legacy.pt", "rb").read()
open(d + "/cut_legacy.pt", "wb").write(b[:len(b) - 100])
open(d + "/cut_legacy_pickle.pt", "wb").write(b[:40])
PYEOF
head -c $(($(stat -c %s "$W") - 100)) "$W" >"$tmp/cut_data.safetensors"
expect_error "^uvit: error: $tmp/cut.pth: truncated: a zip archive without its end" "$UVIT" info "$tmp/cut.pth"
expect_error "^uvit: error: $tmp/cut.pth: truncated: " \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$tmp/cut.pth" --class 1 --n 1 --steps 2 --out "$tmp/c.png"
expect_error "^uvit: error: $tmp/cut.pth: truncated: " \
  "$UVIT" train --config fmnist_uvit_tiny --init "$tmp/cut.pth" --out "$tmp/ci" --steps 1
expect_error "^uvit: error: $tmp/cut_legacy.pt: truncated: storage " "$UVIT" info "$tmp/cut_legacy.pt"
expect_error "^uvit: error: $tmp/cut_legacy_pickle.pt: truncated: the file ends at byte 40 inside its pickle" \
  "$UVIT" info "$tmp/cut_legacy_pickle.pt"
expect_error "^uvit: error: $tmp/legacy.pt: legacy (pre-1.6) torch serialization is not supported" \
  "$UVIT" info "$tmp/legacy.pt"
expect_error "^uvit: error: $tmp/cut_data.safetensors: truncated: tensor '.*' ends at byte [0-9]* of the data, the file holds [0-9]* (100 bytes missing)$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights "$tmp/cut_data.safetensors" --class 1 --n 1 --steps 2 --out "$tmp/c.png"

# --- a server that runs for days (docs/serve.md) ---------------------------------------------------
# Good, bad and abandoned requests in a loop: each bad one gets its status and a JSON error, the
# server stays up, and its resident memory stays within a bound after the warm-up.
if "$UVIT" serve -c x -w y 2>&1 | grep -q "without cpp-httplib"; then
  echo "SKIP: uvit was built without cpp-httplib"; exit $fails
fi
serve_up --config fmnist_uvit_tiny --weights "$W" --threads 1 -q
head -c 100000 /dev/urandom >"$tmp/noise.bin"
# A body over 8 KiB sent by `curl -d` (application/x-www-form-urlencoded, the default) was 413 "the
# request body is too large" (cpp-httplib's form limit), though the limit is 8 MB: a PNG for
# png-info is larger. The server now reads every POST body itself (docs/serve.md): it is read.
"$PY" -c "import base64, json, sys; print(json.dumps({'image': base64.b64encode(open(sys.argv[1], 'rb').read() * 40).decode()}))" \
  "$tmp/model.pth.png" >"$tmp/big.json"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST "$B/sdapi/v1/png-info" -d "@$tmp/big.json")
[ "$code" = 200 ] && grep -q '"Model":"fmnist_uvit_tiny"' "$tmp/resp" ||
  fail "png-info by curl -d: $code $(head -c 300 "$tmp/resp")"
code=$(curl -s -o "$tmp/resp" -w '%{http_code}' -X POST "$B/sdapi/v1/png-info" -H 'Content-Type: application/json' -d "@$tmp/big.json")
[ "$code" = 200 ] && grep -q '"Model":"fmnist_uvit_tiny"' "$tmp/resp" || fail "png-info as JSON: $code $(head -c 300 "$tmp/resp")"
want() {  # want CODE JSON_KEY CURL_ARGS...: the status, and a JSON body holding the key
  local code=$1 key=$2; shift 2
  local got try
  # A full queue (429) is a right answer while earlier jobs still run (a slow or loaded machine):
  # a client waits and asks again, as this one does, up to a minute.
  for try in $(seq 60); do
    got=$(curl -s -m 60 -o "$tmp/resp" -w '%{http_code}' "$@")
    [ "$got" = 429 ] && [ "$code" != 429 ] || break
    sleep 1
  done
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
  serve_down TERM
fi
exit $fails
