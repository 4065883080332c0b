#!/usr/bin/env bash
# train.overlap (docs/distributed.md, "Overlap"): the gradient exchange overlapped with backward
# gives the same bytes of nnet, nnet_ema and train_state as the exchange after backward, on 2 and
# 4 ranks, plain and ZeRO-1, for U-ViT, DiT, Skip-DiT, LightningDiT, MDT (its two passes), DiffiT
# and SVG, with the exchange in pieces of 999 floats that cut tensors, shards and the announced
# ranges at odd places. Each overlapped case runs twice: concurrently (the real thing) and with
# UVIT_TEST_OVERLAP_SYNC=1, where every announced range is exchanged before backward goes on, so
# that a range announced (or reduced) before its gradient is final always changes the bits
# (concurrently the tiny models' backward usually wins that race). ZeRO-2 (train.zero=2: the
# gradient's pages released once reduced) gives the same bytes again, range by range in backward
# and overlapped, on 2 and 4 ranks for U-ViT, DiT, Skip-DiT and MDT. The run says which exchange
# and ZeRO level it used (stderr and log.jsonl's start row), ZeRO-2 where it cannot apply runs as
# ZeRO-1 saying why, and a non-boolean train.overlap or a train.zero of 3 is refused in one line.
set -uo pipefail
source tests/mpi/lib.bash
export UVIT_REDUCE_PIECE=999

# overlap NP NAME WHAT ARGS...: NAME.off (train.overlap false, the default), NAME.on and NAME.sync
# the same (train.overlap true).
overlap() {
  local np=$1 name=$2 what=$3; shift 3
  run mpi "$np" "$@" -q --out "$tmp/$name.off" --set train.overlap=false
  run mpi "$np" "$@" -q --out "$tmp/$name.on" --set train.overlap=true
  UVIT_TEST_OVERLAP_SYNC=1 run mpi "$np" "$@" -q --out "$tmp/$name.sync" --set train.overlap=true
  same_files "$tmp/$name.on" "$tmp/$name.off" "$what, overlap on vs off"
  same_files "$tmp/$name.sync" "$tmp/$name.off" "$what, overlap on (synchronised) vs off"
}
# zero2 NP NAME WHAT REF ARGS...: train.zero=2 range by range in backward (train.overlap false),
# overlapped, and overlapped synchronised: each the same files as the run in REF.
zero2() {
  local np=$1 name=$2 what=$3 ref=$4; shift 4
  run mpi "$np" "$@" -q --out "$tmp/$name.in" --set train.zero=2
  run mpi "$np" "$@" -q --out "$tmp/$name.on" --set train.zero=2 --set train.overlap=true
  UVIT_TEST_OVERLAP_SYNC=1 run mpi "$np" "$@" -q --out "$tmp/$name.sync" --set train.zero=2 \
    --set train.overlap=true
  same_files "$tmp/$name.in" "$ref" "$what, ZeRO-2 in backward"
  same_files "$tmp/$name.on" "$ref" "$what, ZeRO-2 overlapped"
  same_files "$tmp/$name.sync" "$ref" "$what, ZeRO-2 overlapped (synchronised)"
}
# start_row DIR EXPECT: log.jsonl's last start row holds EXPECT's fields (JSON).
start_row() {
  "$PY" -c "
import json, sys
row = [r for r in map(json.loads, open(sys.argv[1] + '/log.jsonl')) if r['event'] == 'start'][-1]
want = json.loads(sys.argv[2])
assert all(row.get(k) == v for k, v in want.items()), (row, want)
" "$1" "$2" && echo "ok: $1's start row records $2" || fail "start row of $1 is not $2"
}

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.log_interval=1 train.save_interval=2
T=(train --config "$tmp/tiny.json" --batch 8 --no-grid)

# The run names the exchange it uses (not -q: the data-parallel line); off by default.
run mpi 2 "${T[@]}" --out "$tmp/say" --steps 1 --set train.overlap=true
grep -q "exchange overlapped with backward" "$tmp/err" &&
  echo "ok: 2 ranks with train.overlap=true overlap the exchange with backward" ||
  fail "train.overlap=true: no 'exchange overlapped with backward' line: $(cat "$tmp/err")"
run mpi 2 "${T[@]}" --out "$tmp/say0" --steps 1
grep -q "exchange after backward (train.overlap false)" "$tmp/err" ||
  fail "default: no 'exchange after backward (train.overlap false)' line: $(cat "$tmp/err")"
run mpi 2 "${T[@]}" --out "$tmp/acc" --steps 1 --set train.accum=2 --set train.overlap=true
grep -q "exchange after backward (several slices or micro-batches)" "$tmp/err" ||
  fail "accum 2: no 'after backward (several slices or micro-batches)': $(cat "$tmp/err")"
start_row "$tmp/say" '{"ranks": 2, "zero": 0, "overlap": true}'
start_row "$tmp/acc" '{"ranks": 2, "zero": 0, "overlap": false}'
# ZeRO-2: range by range in backward unless overlapped; as ZeRO-1 (with a note) where it cannot.
run mpi 2 "${T[@]}" --out "$tmp/say2" --steps 1 --set train.zero=2
grep -q "exchange in backward, range by range (train.zero=2; train.overlap false), ZeRO-2" \
  "$tmp/err" || fail "zero=2: no 'in backward, range by range' line: $(cat "$tmp/err")"
start_row "$tmp/say2" '{"ranks": 2, "zero": 2, "overlap": false}'
run mpi 2 "${T[@]}" --out "$tmp/say2o" --steps 1 --set train.zero=2 --set train.overlap=true
grep -q "exchange overlapped with backward, ZeRO-2" "$tmp/err" ||
  fail "zero=2 overlap: no 'overlapped with backward, ZeRO-2' line: $(cat "$tmp/err")"
start_row "$tmp/say2o" '{"ranks": 2, "zero": 2, "overlap": true}'
run mpi 2 "${T[@]}" --out "$tmp/acc2" --steps 1 --set train.accum=2 --set train.zero=2
grep -q "note: train.zero=2 runs as ZeRO-1 here (several slices or micro-batches per process)" \
  "$tmp/err" && grep -q "exchange after backward (train.overlap false), ZeRO-1" "$tmp/err" ||
  fail "zero=2 with accum 2: no note and ZeRO-1 line: $(cat "$tmp/err")"
start_row "$tmp/acc2" '{"ranks": 2, "zero": 1, "overlap": false}'
run "$UVIT" "${T[@]}" --out "$tmp/one" --steps 1 --set train.zero=2
start_row "$tmp/one" '{"ranks": 1, "zero": 0, "overlap": false}'

overlap 2 u2 "U-ViT, 2 ranks" "${T[@]}" --steps 3
overlap 2 uz2 "U-ViT, ZeRO-1 on 2 ranks" "${T[@]}" --steps 3 --set train.zero=1
overlap 4 u4 "U-ViT, 4 ranks" "${T[@]}" --steps 3
UVIT_TEST_OVERLAP_SYNC=1 run mpi 4 "${T[@]}" --steps 3 -q --out "$tmp/uz4" --set train.zero=1 \
  --set train.overlap=true
same_files "$tmp/uz4" "$tmp/u4.off" "U-ViT, ZeRO-1 on 4 ranks overlapped vs plain after backward"
zero2 2 u2z2 "U-ViT on 2 ranks" "$tmp/u2.off" "${T[@]}" --steps 3
zero2 4 u4z2 "U-ViT on 4 ranks" "$tmp/u4.off" "${T[@]}" --steps 3

# The DiT family (a tiny one: 2 blocks of width 32, patch 7; Skip-DiT's fused skips). Its
# zero-initialised final layer and gates leave the blocks' gradients zero until the first updates
# (no warm-up) have moved them: 3 steps.
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.patch_size=7
  --set lr_scheduler.warmup_steps=0 --steps 3)
for cfg in fmnist_dit_tiny fmnist_skip_dit_tiny fmnist_lightningdit_tiny; do
  overlap 2 "$cfg" "$cfg, 2 ranks" train --config $cfg "${small[@]}" --batch 8 --no-grid
done
overlap 4 sdz4 "Skip-DiT, ZeRO-1 on 4 ranks" train --config fmnist_skip_dit_tiny "${small[@]}" \
  --batch 8 --no-grid --set train.zero=1
zero2 2 dz2 "DiT on 2 ranks" "$tmp/fmnist_dit_tiny.off" train --config fmnist_dit_tiny \
  "${small[@]}" --batch 8 --no-grid
zero2 4 sdz2 "Skip-DiT on 4 ranks" "$tmp/sdz4.off" train --config fmnist_skip_dit_tiny \
  "${small[@]}" --batch 8 --no-grid

# MDT (two passes a step, the masked one announcing its side block), DiffiT and SVG; small widths.
mdt=(--set nnet.hidden_size=32 --set nnet.depth=4 --set nnet.num_heads=2 --set nnet.patch_size=7
  --set lr_scheduler.warmup_steps=0 --steps 3)
overlap 2 mdt "MDT, 2 ranks" train --config fmnist_mdt_tiny "${mdt[@]}" --batch 8 --no-grid
zero2 2 mdtz2 "MDT on 2 ranks" "$tmp/mdt.off" train --config fmnist_mdt_tiny "${mdt[@]}" --batch 8 \
  --no-grid
for cfg in fmnist_diffit_tiny fmnist_svg_tiny; do
  overlap 2 "$cfg" "$cfg, 2 ranks" train --config $cfg --set lr_scheduler.warmup_steps=0 --steps 3 \
    --batch 8 --no-grid
done

expect_error "train.overlap must be true or false" "$UVIT" "${T[@]}" --out "$tmp/bad" --steps 1 \
  --set train.overlap=1
expect_error "train.zero must be 0 (off), 1 (moments) or 2 (moments and gradient), got 3" "$UVIT" "${T[@]}" --out "$tmp/bad" --steps 1 --set train.zero=3
exit $fails
