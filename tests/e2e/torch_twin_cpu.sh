#!/usr/bin/env bash
# bench/gpu/torch_twin.py (the GPU baseline of scripts/gpu-check.sh) on the CPU at tiny sizes: the
# U-ViT, DiT and Skip-DiT twins build, run forward and a training step and record their rates;
# the twin's FLOP count of each full preset equals `uvit info`'s (issue 17's MFU column for DiT
# comes from it).
set -uo pipefail
UVIT=$1
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

run "$PY" bench/gpu/torch_twin.py --device cpu --tiny --out "$tmp/twin.jsonl" \
  --cases forward:cifar10_uvit_small:eager,forward:dit_xl_2:eager,train:dit_xl_2:eager:nockpt,train:skip_dit_xl_2:eager:nockpt
"$PY" - "$tmp/twin.jsonl" <<'PYEOF' || fail "twin records"
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 4, recs
for r in recs:
    assert "error" not in r and "skipped" not in r, r
    assert r["img_s"] > 0 and r["forward_gflop_per_img"] > 0, r
print("ok: 4 twin cases ran")
PYEOF
# A case the twin cannot run is recorded with its reason, and the run goes on.
run "$PY" bench/gpu/torch_twin.py --device cpu --tiny --out "$tmp/ck.jsonl" --cases train:dit_xl_2:eager:ckpt
grep -q '"error": "ValueError: bad case .*the DiT twin has no activation checkpointing' "$tmp/ck.jsonl" &&
  echo "ok: ckpt refused for DiT" || fail "DiT ckpt case not refused: $(cat "$tmp/ck.jsonl")"
for c in dit_xl_2 skip_dit_xl_2 imagenet256_uvit_huge; do
  ours=$("$UVIT" info -c $c | awk '/^forward/ {print $2}')
  twin=$(cd bench/gpu && "$PY" -c "import torch_twin as t; print('%.3f' % (t.forward_flops(t.load_net_kwargs('$c', False)) / 1e9))")
  [ -n "$ours" ] && [ "$ours" = "$twin" ] && echo "ok: $c forward $ours GFLOP" || fail "$c: uvit info $ours GFLOP, twin $twin"
done
exit $fails
