#!/usr/bin/env bash
# Fine-tuning on 2 CPU ranks (docs/cli.md "Fine-tuning"): every rank starts from --init W, and a
# partial fine-tune (train.finetune partial) gives the bits of one process with
# train.dp_virtual=2, also under ZeRO-1 (frozen parameters: zero gradient, no update) and resumed;
# the replica check runs at every step (log_interval 1).
set -uo pipefail
source tests/mpi/lib.bash

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.log_interval=1 train.save_interval=2
T=(train --config "$tmp/tiny.json" --batch 8 --no-grid -q)
run "$UVIT" "${T[@]}" --out "$tmp/w" --steps 2 --seed 11
W=$tmp/w/nnet_ema.safetensors

run mpi 2 "${T[@]}" --out "$tmp/f2" --steps 3 --init "$W"
run "$UVIT" "${T[@]}" --out "$tmp/fv" --steps 3 --init "$W" --set train.dp_virtual=2
same_files "$tmp/f2" "$tmp/fv" "--init on 2 ranks vs dp_virtual=2"

P=(--init "$W" --set train.finetune=partial --set 'train.ignore_keys=["bias","mlp"]')
run mpi 2 "${T[@]}" "${P[@]}" --out "$tmp/r2" --steps 4
run "$UVIT" "${T[@]}" "${P[@]}" --out "$tmp/v2" --steps 4 --set train.dp_virtual=2
same_files "$tmp/r2" "$tmp/v2" "partial fine-tune on 2 ranks vs dp_virtual=2"
run mpi 2 "${T[@]}" "${P[@]}" --out "$tmp/z" --steps 2 --set train.zero=1
run mpi 2 train --out "$tmp/z" --resume --steps 4 -q --no-grid
same_files "$tmp/z" "$tmp/v2" "partial fine-tune under ZeRO-1 on 2 ranks, resumed, vs dp_virtual=2"
# The logged gradient norms leave the frozen parameters out on every path (ZeRO-1 adds the shards'
# sums of squares in rank order: last-bit differences allowed).
"$PY" - "$tmp/r2" "$tmp/z" "$tmp/v2" <<'PYEOF' || fail "partial: logged gradient norms"
import json, sys
def norms(run):
    return [r["grad_norm"] for r in map(json.loads, open(run + "/log.jsonl")) if "grad_norm" in r]
ref = norms(sys.argv[3])
assert len(ref) == 4, ref
for run in sys.argv[1:3]:
    got = norms(run)
    assert len(got) == 4 and all(abs(a - b) <= 1e-6 * b for a, b in zip(got, ref)), (run, got, ref)
print("ok: partial: the gradient norms of 2 ranks and ZeRO-1 match one process:", ref)
PYEOF
exit $fails
