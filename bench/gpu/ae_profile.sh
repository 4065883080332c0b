#!/usr/bin/env bash
# Where the SD kl-f8 decode spends its GPU time, uvit against the PyTorch twin (a tuning aid):
# uvit's per-operation times (UVIT_CUDA_OPTIME=1, every op synchronised) and torch.profiler's
# kernel table for the twin, both decoding N latents 4x32x32 in batches of 8, random weights.
# Usage: bench/gpu/ae_profile.sh UVIT OUT_TXT [N] [PRECISION]   (PYTHON: python with torch)
set -u
UVIT=$1 OUTF=$2 N=${3:-32} P=${4:-tf32}
PY=${PYTHON:-python3}
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" tests/reference/autoencoder_torch.py save --out "$tmp/sd.pth" --seed 0 || exit 1
"$PY" -c "import numpy as np; np.save('$tmp/z.npy', np.random.RandomState(1).randn($N, 4, 32, 32).astype(np.float32))"
{
  echo "== uvit autoencoder decode --precision $P, $N latents, UVIT_CUDA_OPTIME=1"
  UVIT_CUDA_OPTIME=1 "$UVIT" autoencoder decode --device cuda --precision "$P" -w "$tmp/sd.pth" \
    --in "$tmp/z.npy" --out "$tmp/x.npy" --batch 8 -q 2>&1 | head -60
  echo "== torch twin, torch.profiler, $N latents"
  "$PY" - "$N" <<'PYEOF'
import sys, torch
sys.path.insert(0, "tests/reference")
import autoencoder_torch as at
n = int(sys.argv[1])
m = at.sd_model(0).cuda().eval()
z = torch.randn(n, 4, 32, 32, generator=torch.Generator().manual_seed(1)).cuda()
with torch.no_grad():
    m.decode(z[:8])
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for i in range(0, n, 8):
            m.decode(z[i:i + 8])
        torch.cuda.synchronize()
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=90))
PYEOF
} >"$OUTF" 2>&1
tail -5 "$OUTF"
