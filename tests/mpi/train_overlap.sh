#!/usr/bin/env bash
# train.overlap (docs/distributed.md, "Overlap"): the gradient exchange overlapped with backward
# gives the same bytes of nnet, nnet_ema and train_state as the exchange after backward, on 2 and
# 4 ranks, plain and ZeRO-1, for U-ViT, DiT, Skip-DiT and LightningDiT, with the exchange in pieces
# of 999 floats that cut tensors, shards and the announced ranges at odd places. Each overlapped
# case runs twice: concurrently (the real thing) and with UVIT_TEST_OVERLAP_SYNC=1, where every
# announced range is exchanged before backward goes on, so that a range announced (or reduced)
# before its gradient is final always changes the bits (concurrently the tiny models' backward
# usually wins that race). The run says which exchange it used, and a non-boolean train.overlap
# is refused in one line.
set -uo pipefail
UVIT=$1 MPIRUN=$2 PY=${PYTHON:-/usr/bin/python3}
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

overlap 2 u2 "U-ViT, 2 ranks" "${T[@]}" --steps 3
overlap 2 uz2 "U-ViT, ZeRO-1 on 2 ranks" "${T[@]}" --steps 3 --set train.zero=1
overlap 4 u4 "U-ViT, 4 ranks" "${T[@]}" --steps 3
UVIT_TEST_OVERLAP_SYNC=1 run mpi 4 "${T[@]}" --steps 3 -q --out "$tmp/uz4" --set train.zero=1 \
  --set train.overlap=true
same_files "$tmp/uz4" "$tmp/u4.off" "U-ViT, ZeRO-1 on 4 ranks overlapped vs plain after backward"

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

expect_error "train.overlap must be true or false" "$UVIT" "${T[@]}" --out "$tmp/bad" --steps 1 \
  --set train.overlap=1
exit $fails
