# Shared helpers of the end-to-end scripts (sourced first). A failure is counted in $fails, which
# each script returns as its exit status.
# The scratch folder $tmp (made here unless the script made it), removed at exit, and the
# background processes the script starts (one's id in $pid; servers, serve_up), stopped then.
tmp=${tmp:-$(mktemp -d)}
pid=
cleanup() { kill $pid $(jobs -p) 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }
run() {  # run CMD...: must succeed; stdout in $tmp/out, stderr in $tmp/err
  local rc=0
  "$@" >"$tmp/out" 2>"$tmp/err" || rc=$?
  if [ $rc -ne 0 ]; then fail "exit $rc: $*"; cat "$tmp/err"; fi
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
# serve_up [VAR=VALUE...] ARGS...: `uvit serve ARGS --port 0` in the background (in the environment
# VAR=VALUE...), stderr in ${serve_log:-$tmp/server.log}. Returns once /health answers, with the
# server's id in $pid, the port its startup line names (docs/serve.md: --port 0, kept by -q) in
# $port and its address in $B. A server that exits first, or does not answer within 120 s, ends the
# script with its log: nothing after it could pass.
serve_up() {
  local envs=() log=${serve_log:-$tmp/server.log} end=$((SECONDS + 120))
  while [[ ${1:-} =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do envs+=("$1"); shift; done
  : >"$log"  # there before the server opens it: sed reads it below
  env "${envs[@]}" "$UVIT" serve "$@" --port 0 2>"$log" &
  pid=$! port= B=
  while ((SECONDS < end)) && kill -0 "$pid" 2>/dev/null; do
    [ -n "$B" ] || B=$(sed -n 's|^\[INFO \] serving .* on \(http://.*:[0-9]*\)/$|\1|p' "$log")
    port=${B##*:}
    [ -n "$B" ] && curl -sf -m 5 "$B/health" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid"; wait "$pid" 2>/dev/null
    fail "uvit serve $*: ${B:-no startup line}, no answer from /health in 120 s"
  else
    wait "$pid"; fail "uvit serve $*: exited (status $?) before /health answered"
  fi
  pid=; cat "$log"; exit $fails
}
# serve_down [SIG]: SIG (default TERM) to the server $pid, which must end with status 0 within 10 s
# (docs/serve.md, "Signals"); then $pid is empty.
serve_down() {
  local sig=${1:-TERM} rc
  kill -"$sig" "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    fail "server still running 10 s after SIG$sig"; kill -KILL "$pid"; wait "$pid" 2>/dev/null
  else
    wait "$pid"; rc=$?
    [ $rc -eq 0 ] && echo "ok: SIG$sig stops the server, status 0" || fail "server exit status $rc after SIG$sig"
  fi
  pid=
}
# tiny_run: one step of fmnist_uvit_tiny into $tmp/run; its EMA weights in $W (the audits' model).
tiny_run() {
  run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/run" --steps 1 --batch 2 --no-grid -q
  W=$tmp/run/nnet_ema.safetensors
}
# train_resume CFG NET ARGS...: CFG (with ARGS) trained 3 steps into $tmp/run without warm-up, so
# that a few steps move the zero-initialised output layer off zero, then resumed to step 5; the
# log's losses must be finite and the run's nnet.name NET.
train_resume() {
  local cfg=$1 net=$2; shift 2
  run "$UVIT" train --config "$cfg" "$@" --set lr_scheduler.warmup_steps=0 --out "$tmp/run" \
    --steps 3 --batch 8 --no-grid -q
  run "$UVIT" train --out "$tmp/run" --resume --steps 5 --no-grid -q
  grep -q "at step 5" "$tmp/out" || fail "resume: $(cat "$tmp/out")"
  "$PY" -c "
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
loss = [r['loss'] for r in rows if 'loss' in r]
assert loss and all(math.isfinite(x) and 0.5 < x < 5.0 for x in loss), loss
assert json.load(open(sys.argv[2]))['nnet']['name'] == sys.argv[3]
" "$tmp/run/log.jsonl" "$tmp/run/config.json" "$net" || fail "training log or run config"
}
# straight_matches CFG WHAT ARGS...: CFG (with ARGS) trained 5 steps straight, as train_resume trains
# $tmp/run, must leave the same checkpoint files byte for byte.
straight_matches() {
  local cfg=$1 what=$2; shift 2
  run "$UVIT" train --config "$cfg" "$@" --set lr_scheduler.warmup_steps=0 --out "$tmp/straight" \
    --steps 5 --batch 8 --no-grid -q
  same_files "$tmp/run" "$tmp/straight" "$what: 3 steps + resume to 5"
}
# mixed_npy_folder DIR: twelve [1, h, w] arrays of six sizes for a 28 x 28 canvas with patch 4
# (49, 28, 21, 25, 4, 4 tokens), labels 0..2 by file-name prefix: a variable-size npy_folder.
mixed_npy_folder() {
  "$PY" - "$1" <<'PYEOF' || fail "writing the npy folder $1"
import os, sys, numpy as np
d = sys.argv[1]
os.makedirs(d)
rng = np.random.default_rng(0)
sizes = [(28, 28), (16, 28), (28, 12), (20, 20), (8, 8), (4, 16)]
for i in range(12):
    h, w = sizes[i % len(sizes)]
    np.save(os.path.join(d, "%d_%03d.npy" % (i % 3, i)), rng.uniform(-1, 1, (1, h, w)).astype(np.float32))
PYEOF
}
# packed_resume CFG NET ARGS...: CFG (with ARGS) on a mixed_npy_folder at $tmp/lat (its options in
# $data): train_resume, then straight_matches (FiT's packed batches, docs/fit.md).
packed_resume() {
  local cfg=$1 net=$2; shift 2
  mixed_npy_folder "$tmp/lat"
  data=(--set dataset.name=npy_folder --set "dataset.path=$tmp/lat")
  train_resume "$cfg" "$net" "$@" "${data[@]}"
  grep -q '"name": *"npy_folder"' "$tmp/run/config.json" || fail "run config lost the dataset"
  straight_matches "$cfg" "$net packed" "$@" "${data[@]}"
}
# relative_index_checks NAME INT64 BAD: the fixture $FX/NAME.pth (the twin's real state_dict) holds
# the index buffer INT64 as int64 (loaded as a lookup), and with BAD's entry [3, 4] off by one,
# predict refuses it in one line naming the tensor and the entry.
relative_index_checks() {
  local name=$1 int64=$2 bad=$3
  "$PY" -c "import torch,sys; sd=torch.load(sys.argv[1]); assert sd[sys.argv[2]].dtype == torch.int64" \
    "$FX/$name.pth" "$int64" || fail "$name.pth has no int64 index buffer"
  "$PY" - "$FX/$name.pth" "$tmp/bad.pth" "$bad" <<'PYEOF' || fail "writing bad.pth"
import sys, torch
sd = torch.load(sys.argv[1])
sd[sys.argv[3]][3, 4] += 1
torch.save(sd, sys.argv[2])
PYEOF
  expect_error "$bad\[3, 4\]" \
    "$UVIT" predict --config "$FX/$name.json" --weights "$tmp/bad.pth" --x "$FX/${name}_x.npy" \
    --t "$FX/${name}_t.npy" --y "$FX/${name}_y.npy" --out "$tmp/bad.npy"
}
# predicts_as_twin FIXTURE WHAT [SHAPE]: `uvit predict` on FIXTURE (FIXTURE.json, .pth and
# _x/_t/_y.npy) gives the twin's FIXTURE_out.npy within 1e-5 relative (and the shape SHAPE, a
# Python tuple, when given); the prediction in $tmp/WHAT.npy.
predicts_as_twin() {
  local fx=$1 what=$2 shape=${3:-}
  run "$UVIT" predict --config "$fx.json" --weights "$fx.pth" --x "${fx}_x.npy" --t "${fx}_t.npy" \
    --y "${fx}_y.npy" --out "$tmp/$what.npy"
  "$PY" -c "
import ast, numpy as n, sys
a, b = n.load(sys.argv[1]), n.load(sys.argv[2])
assert a.shape == b.shape, (a.shape, b.shape)
assert not sys.argv[3] or a.shape == ast.literal_eval(sys.argv[3]), a.shape
e = abs(a - b).max() / abs(b).max()
assert e < 1e-5, e
" "$tmp/$what.npy" "${fx}_out.npy" "$shape" || fail "$what: predict against the twin"
}
same() {  # same WHAT A B: the two files hold the same bytes
  cmp -s "$2" "$3" && echo "ok: $1: the same bytes" || fail "$1: $2 and $3 differ"
}
same_files() {  # same_files DIR_A DIR_B WHAT: the three checkpoint files byte for byte
  local f bad=0
  for f in nnet.safetensors nnet_ema.safetensors train_state.safetensors; do
    cmp -s "$1/$f" "$2/$f" || { fail "$3: $f differs"; bad=1; }
  done
  [ $bad -eq 0 ] && echo "ok: $3: identical weights, EMA and optimizer state"
}
same_weights() {  # same_weights DIR_A DIR_B WHAT: nnet and nnet_ema byte for byte
  local f bad=0
  for f in nnet.safetensors nnet_ema.safetensors; do
    cmp -s "$1/$f" "$2/$f" || { fail "$3: $f differs"; bad=1; }
  done
  [ $bad -eq 0 ] && echo "ok: $3: identical weights and EMA"
}
# inception_weights VAR [FIX]: VAR = a random-weight FID Inception in torchvision's layout: the unit
# tests' FIX/fid/inception.pth when present, else one the twin writes under $tmp/fidnet.
inception_weights() {
  local d=${2:+$2/fid}
  if [ -z "$d" ] || [ ! -f "$d/inception.pth" ]; then
    d=$tmp/fidnet
    "$PY" tests/reference/inception_torch.py --out "$d" --net-only >/dev/null || fail "inception twin"
  fi
  printf -v "$1" %s "$d/inception.pth"
}
# tiny_kl_f8 FILE SCALE: a KL autoencoder config in the kl-f8 layout (4 levels, 4 latent channels)
# at width 32, so a 256x256 encode takes a fraction of a second; SCALE is its scale_factor.
tiny_kl_f8() {
  cat >"$1" <<JSON
{"ddconfig": {"double_z": true, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
              "ch": 32, "ch_mult": [1, 1, 2, 2], "num_res_blocks": 1, "attn_resolutions": [],
              "dropout": 0.0},
 "embed_dim": 4, "scale_factor": $2}
JSON
}
# official_keys WHAT MODULE EXPR TENSORS VALUES INFO_ARGS...: `uvit info --json INFO_ARGS` lists
# exactly the state_dict (names, shapes, order) of the twin that EXPR builds in
# tests/reference/MODULE.py (on the meta device), with TENSORS tensors holding VALUES values.
official_keys() {
  local what=$1 module=$2 expr=$3 tensors=$4 values=$5; shift 5
  run "$UVIT" info --json "$@"
  "$PY" - "$tmp/out" "$what" "$module" "$expr" "$tensors" "$values" <<'PYEOF' || fail "$what key set"
import importlib, json, math, sys
out, what, module, expr, tensors, values = sys.argv[1:7]
sys.path.insert(0, "tests/reference")
twin = importlib.import_module(module)
with twin.on_meta():
    sd = eval(expr, vars(twin)).state_dict()
ours = json.load(open(out))
assert ours == [{"name": k, "shape": list(v.shape)} for k, v in sd.items()], \
    "uvit's %s table differs from the official state_dict" % what
n = sum(math.prod(e["shape"]) for e in ours)
assert (len(ours), n) == (int(tensors), int(values)), (len(ours), n)
print("%s: %d tensors, %d values" % (what, len(ours), n))
PYEOF
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
# eval_parts_2026_11 DIR [CHUNK...]: uvit eval's work folder DIR as the uvit of 2026-11 (496a5f8)
# left it: a manifest without precision and weights_sha256, and the chunks named (default: all)
# holding samples, pool3 and logits only (no sFID features, no seconds).
eval_parts_2026_11() {
  "$PY" - "$@" <<'PYEOF' || fail "writing 2026-11 eval chunks in $1"
import glob, json, numpy as np, sys
d, names = sys.argv[1], sys.argv[2:]
m = json.load(open(d + "/manifest.json"))
for k in ("precision", "weights_sha256"):
    del m[k]
json.dump(m, open(d + "/manifest.json", "w"), indent=1)
for p in [d + "/" + n for n in names] or sorted(glob.glob(d + "/chunk_*.npz")):
    z = np.load(p)
    np.savez(p, samples=z["samples"], pool3=z["pool3"], logits=z["logits"])
PYEOF
}
