#!/usr/bin/env bash
# DiT / Skip-DiT checkpoints as released, with the official key sets (the fixtures' small configs):
# a raw state_dict .pt (DiT-XL-2-256x256.pt), a train.py checkpoint {"model", "ema", "opt", "args"}
# (DiT-XL-2-skip.pt; its "ema" is read, as download.py:find_model does) and a DDP-prefixed state_dict.
# Each converts with --config and predicts the twin's output; mismatches are one-line errors.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
for c in dit_p2 skipdit_p2; do
  "$PY" - "$FX/$c.json" "$FX/$c.pth" "$tmp/$c" <<'PYEOF' || fail "$c: writing the checkpoints"
import argparse, collections, json, sys
sys.path.insert(0, "tests/reference")
import torch
import dit_torch
cfg, pth, out = sys.argv[1:4]
sd = torch.load(pth)
net = dit_torch.build_from_config(json.load(open(cfg)))
net.load_state_dict(sd)
# One AdamW step moves "model" away from "ema" (the fixture weights the twin's output belongs to).
opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0)
for p in net.parameters():
    if p.requires_grad:
        p.grad = torch.ones_like(p)
opt.step()
# train.py's argparse arguments (argparse.Namespace pickles as NEWOBJ + BUILD)
args = argparse.Namespace(data_path="/data/imagenet/train", results_dir="results", model="DiT-XL/2",
                          image_size=256, num_classes=1000, epochs=1400, global_batch_size=256,
                          global_seed=0, vae="ema", num_workers=4, log_every=100, ckpt_every=50000)
torch.save({"model": net.state_dict(), "ema": sd, "opt": opt.state_dict(), "args": args}, out + "_train.pt")
torch.save(dict(sd), out + ".pt")
torch.save(collections.OrderedDict(("module." + k, v) for k, v in sd.items()), out + "_ddp.pt")
PYEOF
  for f in "$c.pt" "${c}_train.pt" "${c}_ddp.pt"; do check_checkpoint "$FX" "$c" "$tmp/$f"; done
done
# A Skip-DiT checkpoint against a DiT config, and the reverse: one line naming the file and tensor.
expect_error "skipdit_p2_train.pt: unexpected tensor 'blocks.2.attn.qkv.weight'" \
  "$UVIT" convert "$tmp/skipdit_p2_train.pt" "$tmp/x.safetensors" --config "$FX/dit_p2.json"
expect_error "dit_p2_train.pt: missing tensor 'blocks.2.attn.qkv.weight'" \
  "$UVIT" convert "$tmp/dit_p2_train.pt" "$tmp/x.safetensors" --config "$FX/skipdit_p2.json"
[ ! -e "$tmp/x.safetensors" ] || fail "convert wrote a file despite the error"
exit $fails
