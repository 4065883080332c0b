#!/usr/bin/env bash
# Follow-ups of the eighth new-user audit (docs/ux_audit.md, "round 8 (follow-up)"): each check
# failed before its fix (another family's weights named by their preset, train's "starting from"
# line naming the file as typed, README's `uvit info` row).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
F=$tmp/ft
mkdir -p "$F"

# --- another family's weights: the strict load's error says whose file it is ------------------
# A DiT state_dict as torch.save writes it (the twin), given to a U-ViT config: the error named the
# first tensor that differs but not the preset `uvit info off.pt` names. Typed relative to $F.
"$PY" - "$F/off.pt" <<'PYEOF' || fail "writing the DiT state_dict"
import json, sys, torch
sys.path.insert(0, "tests/reference")
import dit_torch
torch.manual_seed(0)
net = dit_torch.build_from_config(json.load(open("configs/fmnist_dit_tiny.json"))["nnet"])
sd = net.state_dict()
torch.save(sd, sys.argv[1])
del sd["final_layer.linear.bias"]
torch.save(sd, sys.argv[1].replace("off.pt", "missing.pt"))
PYEOF
hint="; the file holds preset fmnist_dit_tiny's weights (every tensor's name and shape): --config fmnist_dit_tiny takes it"
cd "$F" || exit 1
expect_error "^uvit: error: off.pt: tensor 'pos_embed' has shape \[1, 49, 128\], the config expects \[1, 51, 128\]$hint$" \
  "$UVIT" train --config fmnist_uvit_tiny --init off.pt --out x --steps 1 --batch 2 --no-grid
expect_error "^uvit: error: off.pt: tensor 'pos_embed' has shape \[1, 49, 128\], the config expects \[1, 51, 128\]$hint$" \
  "$UVIT" sample --config fmnist_uvit_tiny --weights off.pt --class 1 --steps 2 --out x.png
# A file no preset has exactly (a tensor missing) keeps the loader's words alone.
expect_error "^uvit: error: missing.pt: missing tensor 'final_layer.linear.bias' \[32\] (71 of 72 tensors present)$" \
  "$UVIT" train --config fmnist_dit_tiny --init missing.pt --out x --steps 1 --batch 2 --no-grid
[ ! -e x ] && [ ! -e x.png ] || fail "a refused load left a file"

# --- train --init names the file as typed; the run records its absolute path ----------------------
# It printed "starting from /abs/path/off.pt" where its errors say "off.pt".
run "$UVIT" train --config fmnist_dit_tiny --init off.pt --out run --steps 1 --batch 2 --no-grid
sha=$(sha256sum off.pt | cut -d' ' -f1)
grep -qx "starting from off.pt (sha256 $sha)" "$tmp/err" ||
  fail "train --init off.pt said: $(grep starting "$tmp/err")"
"$PY" - "$F" "$sha" <<'PYEOF' || fail "the run's record of its --init file"
import json, sys
d, sha = sys.argv[1:3]
t = json.load(open(d + "/run/config.json"))["train"]
assert t["init_weights"] == d + "/off.pt" and t["init_weights_sha256"] == sha, t
row = [json.loads(l) for l in open(d + "/run/log.jsonl") if '"init"' in l][0]
assert row["path"] == d + "/off.pt" and row["sha256"] == sha, row
PYEOF
cd - >/dev/null || exit 1

# --- README.md's `uvit info` row names the kinds of file round 8 added ---------------------------
row=$(grep '^| `uvit info FILE' README.md)
for k in train_state log.jsonl npy_folder extract-features "FiT's latent" "uvit eval" \
  "autoencoder config" quantised; do
  case "$row" in *"$k"*) ;; *) fail "README's uvit info row does not name $k: $row" ;; esac
done
exit $fails
