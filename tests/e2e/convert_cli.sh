#!/usr/bin/env bash
# `uvit convert` never writes over its input (same path, ./path, a hard link, a symbolic link),
# writes only under a .safetensors (or .pth/.pt: tests/e2e/convert_pth.sh) name, and its output
# loads; weights saved from a DistributedDataParallel model ("module." names) load as they are; a
# training state given as weights says which file to give instead.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
c=cond_p2
cp "$FX/$c.pth" "$tmp/w.pth"
cp "$FX/$c.safetensors" "$tmp/w.safetensors"
ln "$tmp/w.pth" "$tmp/hard.safetensors"
ln -s w.pth "$tmp/link.safetensors"
sums() { md5sum "$tmp/w.pth" "$tmp/w.safetensors"; }
before=$(sums)
expect_error "is the input" "$UVIT" convert "$tmp/w.pth" "$tmp/w.pth"
expect_error "is the input" "$UVIT" convert "$tmp/w.safetensors" "$tmp/w.safetensors"
expect_error "is the input" "$UVIT" convert "$tmp/w.safetensors" "$tmp/./w.safetensors"
expect_error "is the input" "$UVIT" convert "$tmp/w.pth" "$tmp/hard.safetensors"
expect_error "is the input" "$UVIT" convert "$tmp/w.pth" "$tmp/link.safetensors"
expect_error "writes .safetensors or .pth or .pt only" "$UVIT" convert "$tmp/w.pth" "$tmp/out.npz"
expect_error "writes .safetensors or .pth or .pt only" "$UVIT" convert "$tmp/w.pth" "$tmp/out2.bin"
[ "$before" = "$(sums)" ] || fail "a refused convert changed its input"
for f in out.npz out2.bin; do [ ! -e "$tmp/$f" ] || fail "a refused convert wrote $f"; done

# A good conversion (into a new folder) predicts exactly as the .pth does.
run "$UVIT" convert "$tmp/w.pth" "$tmp/new/w.safetensors"
p=(predict --config "$FX/$c.json" --x "$FX/${c}_x.npy" --t "$FX/${c}_t.npy" --y "$FX/${c}_y.npy")
run "$UVIT" "${p[@]}" --weights "$tmp/w.pth" --out "$tmp/eps_pth.npy"
run "$UVIT" "${p[@]}" --weights "$tmp/new/w.safetensors" --out "$tmp/eps_st.npy"
cmp -s "$tmp/eps_pth.npy" "$tmp/eps_st.npy" || fail "converted weights predict differently"

# DDP names and a training state, written from the converted file's tensors.
"$PY" - "$tmp/new/w.safetensors" "$tmp/ddp.safetensors" "$tmp/train_state.safetensors" <<'PYEOF'
import json, struct, sys
d = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", d[:8])
head, body = json.loads(d[8:8 + n]), d[8 + n:]
def write(path, h):
    b = json.dumps(h).encode()
    open(path, "wb").write(struct.pack("<Q", len(b)) + b + body)
write(sys.argv[2], {("module." + k if k != "__metadata__" else k): v for k, v in head.items()})
write(sys.argv[3], {("adamw.exp_avg" if k == "pos_embed" else k): v for k, v in head.items()})
PYEOF
run "$UVIT" "${p[@]}" --weights "$tmp/ddp.safetensors" --out "$tmp/eps_ddp.npy"
cmp -s "$tmp/eps_pth.npy" "$tmp/eps_ddp.npy" || fail "module.-prefixed weights predict differently"
expect_error "nnet_ema.safetensors" "$UVIT" "${p[@]}" --weights "$tmp/train_state.safetensors" --out "$tmp/e.npy"
[ $fails -eq 0 ] && echo "ok: convert protects its input; converted and DDP weights predict identically"
exit $fails
