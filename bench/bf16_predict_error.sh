#!/usr/bin/env bash
# The output error of `uvit predict --precision bf16` against fp32 on official-layout models at
# random init (the PyTorch twins' initialisation plus N(0, 0.02^2) on every parameter, so that
# DiT's zero-initialised adaLN and final layers matter; saved as .pth): max and mean |bf16 - fp32|
# relative to max|fp32| and to mean|fp32|, per preset. docs/quality.md records the result.
# Usage: bench/bf16_predict_error.sh [BATCH] [PRESET ...]   (after a build into build/)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-4}
PRESETS=("${@:2}")
[ ${#PRESETS[@]} -gt 0 ] || PRESETS=(cifar10_uvit_small imagenet64_uvit_mid dit_s_2 dit_b_4 lightningdit_b_1)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '| preset | batch | max err / max|fp32| | mean err / mean|fp32| | bf16 vs twin max | fp32 vs twin max |\n'
printf '|---|---|---|---|---|---|\n'
for p in "${PRESETS[@]}"; do
  # Twin weights and inputs (seeded), the twin's fp32 output.
  /usr/bin/python3 - "configs/$p.json" "$tmp" "$B" <<'PYEOF'
import sys, numpy as np, torch
sys.path.insert(0, "tests/reference")
from bench_torch import load_net_config, make_batch
cfg, out, B = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.manual_seed(0)
cls, kw, family = load_net_config(cfg)
net = cls(**kw).eval()
with torch.no_grad():
    for q in net.parameters():
        q.add_(0.02 * torch.randn(q.shape, generator=torch.Generator().manual_seed(q.numel())))
g = torch.Generator().manual_seed(1)
x, t, extra = make_batch(kw, family, B, g)
torch.save(net.state_dict(), out + "/w.pth")
np.save(out + "/x.npy", x.numpy()); np.save(out + "/t.npy", t.numpy())
if extra: np.save(out + "/y.npy", extra[0].numpy().astype(np.int64))
with torch.no_grad():
    np.save(out + "/ref.npy", net(x, t, *extra).numpy())
PYEOF
  args=(-c "$p" -w "$tmp/w.pth" --x "$tmp/x.npy" --t "$tmp/t.npy" --threads 2)
  [ -f "$tmp/y.npy" ] && args+=(--y "$tmp/y.npy")
  build/uvit predict "${args[@]}" --out "$tmp/fp32.npy"
  build/uvit predict "${args[@]}" --precision bf16 --out "$tmp/bf16.npy"
  /usr/bin/python3 - "$tmp" "$p" "$B" <<'PYEOF'
import sys, numpy as np
d, p, B = sys.argv[1:4]
f, b, r = (np.load(f"{d}/{n}.npy").astype(np.float64) for n in ("fp32", "bf16", "ref"))
e = np.abs(b - f)
print(f"| {p} | {B} | {e.max() / np.abs(f).max():.3g} | {e.mean() / np.abs(f).mean():.3g} | "
      f"{np.abs(b - r).max() / np.abs(r).max():.3g} | {np.abs(f - r).max() / np.abs(r).max():.3g} |")
PYEOF
  rm -f "$tmp"/*
done
