#!/usr/bin/env bash
# LightningDiT checkpoints as released (docs/lightningdit.md): the XL/1 key set and shapes, RoPE
# buffers included, equal `uvit info --json` for the official configuration; a raw state_dict and a
# train.py checkpoint {"model", "ema", "opt", "config"} ("ema" is read, as inference.py does) of the
# fixture networks convert and predict the twin's output; a checkpoint without the RoPE buffers is a
# one-line error (the official load is strict).
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# XL/1: the twin's state_dict names and shapes (built on the meta device: nothing allocated).
"$PY" -c 'import json, sys; sys.path.insert(0, "tests/reference"); import lightningdit_torch as L
json.dump(L.preset("xl", 1), open(sys.argv[1], "w"))' "$tmp/xl1.json" || fail "writing the XL/1 config"
official_keys XL/1 lightningdit_torch 'build_from_config(preset("xl", 1))' 351 675293600 --config "$tmp/xl1.json"

for c in ldit_p1 ldit_p2_qknorm_sigma; do
  "$PY" - "$FX/$c.json" "$FX/$c.pth" "$tmp/$c" <<'PYEOF' || fail "$c: writing the checkpoints"
import collections, json, sys
sys.path.insert(0, "tests/reference")
import torch
import lightningdit_torch
cfg, pth, out = sys.argv[1:4]
sd = torch.load(pth)
net = lightningdit_torch.build_from_config(json.load(open(cfg)))
net.load_state_dict(sd)
opt = torch.optim.AdamW(net.parameters(), lr=1e-2, weight_decay=0)
for p in net.parameters():
    if p.requires_grad:
        p.grad = torch.ones_like(p)
opt.step()  # "model" moves away from "ema" (whose output the fixture holds)
torch.save({"model": net.state_dict(), "ema": sd, "opt": opt.state_dict(), "config": {"model": {"model_type": "x"}}},
           out + "_train.pt")
torch.save(dict(sd), out + ".pt")
torch.save(collections.OrderedDict((k, v) for k, v in sd.items() if not k.startswith("feat_rope.")),
           out + "_norope.pt")
PYEOF
  for f in "$c.pt" "${c}_train.pt"; do check_checkpoint "$FX" "$c" "$tmp/$f"; done
done
expect_error "ldit_p1_norope.pt: missing tensor 'feat_rope.freqs_cos'" \
  "$UVIT" convert "$tmp/ldit_p1_norope.pt" "$tmp/x.safetensors" --config "$FX/ldit_p1.json"
[ ! -e "$tmp/x.safetensors" ] || fail "convert wrote a file despite the error"
exit $fails
