#!/usr/bin/env bash
# train.overlap (docs/distributed.md, "Overlap"): the gradient exchange overlapped with backward
# gives the same bytes of nnet, nnet_ema and train_state as the exchange after backward, on 2 and
# 4 ranks, plain and ZeRO-1, for U-ViT, DiT, Skip-DiT and LightningDiT, with the exchange in pieces
# of 999 floats that cut tensors, shards and the announced ranges at odd places. The run says
# which exchange it used, and a non-boolean train.overlap is refused in one line.
set -uo pipefail
UVIT=$1 MPIRUN=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/mpi/lib.bash
export UVIT_REDUCE_PIECE=999

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.log_interval=1 train.save_interval=2
T=(train --config "$tmp/tiny.json" --batch 8 --no-grid)
S=3

# The run names the exchange it uses (not -q: the data-parallel line).
run mpi 2 "${T[@]}" --out "$tmp/on" --steps $S
grep -q "exchange overlapped with backward" "$tmp/err" &&
  echo "ok: 2 ranks overlap the exchange with backward by default" ||
  fail "2 ranks, default: no 'exchange overlapped with backward' line: $(cat "$tmp/err")"
run mpi 2 "${T[@]}" --out "$tmp/off" --steps $S --set train.overlap=false
grep -q "exchange after backward (train.overlap false)" "$tmp/err" ||
  fail "train.overlap=false: no 'exchange after backward' line: $(cat "$tmp/err")"
same_files "$tmp/on" "$tmp/off" "U-ViT, 2 ranks, overlap on vs off"

run mpi 2 "${T[@]}" -q --out "$tmp/zon" --steps $S --set train.zero=1
run mpi 2 "${T[@]}" -q --out "$tmp/zoff" --steps $S --set train.zero=1 --set train.overlap=false
same_files "$tmp/zon" "$tmp/zoff" "U-ViT, ZeRO-1 on 2 ranks, overlap on vs off"
same_files "$tmp/zon" "$tmp/on" "U-ViT, ZeRO-1 overlapped vs plain overlapped"

run mpi 4 "${T[@]}" -q --out "$tmp/on4" --steps $S
run mpi 4 "${T[@]}" -q --out "$tmp/off4" --steps $S --set train.overlap=false
same_files "$tmp/on4" "$tmp/off4" "U-ViT, 4 ranks, overlap on vs off"
run mpi 4 "${T[@]}" -q --out "$tmp/zon4" --steps $S --set train.zero=1
same_files "$tmp/zon4" "$tmp/off4" "U-ViT, ZeRO-1 on 4 ranks overlapped vs plain after backward"

# Accumulation keeps the exchange after backward (and says so).
run mpi 2 "${T[@]}" --out "$tmp/acc" --steps 1 --set train.accum=2
grep -q "exchange after backward (several slices or micro-batches)" "$tmp/err" ||
  fail "accum 2: no 'after backward (several slices or micro-batches)': $(cat "$tmp/err")"

# The DiT family (a tiny one: 2 blocks of width 32, patch 7; Skip-DiT's fused skips).
small=(--set nnet.hidden_size=32 --set nnet.depth=2 --set nnet.num_heads=2 --set nnet.patch_size=7)
for cfg in fmnist_dit_tiny fmnist_skip_dit_tiny fmnist_lightningdit_tiny; do
  D=(train --config $cfg "${small[@]}" --batch 8 --no-grid -q --steps 2)
  run mpi 2 "${D[@]}" --out "$tmp/$cfg.on"
  run mpi 2 "${D[@]}" --out "$tmp/$cfg.off" --set train.overlap=false
  same_files "$tmp/$cfg.on" "$tmp/$cfg.off" "$cfg, 2 ranks, overlap on vs off"
done
D=(train --config fmnist_skip_dit_tiny "${small[@]}" --batch 8 --no-grid -q --steps 2)
run mpi 4 "${D[@]}" --out "$tmp/sd4.on" --set train.zero=1
run mpi 4 "${D[@]}" --out "$tmp/sd4.off" --set train.overlap=false
same_files "$tmp/sd4.on" "$tmp/sd4.off" "Skip-DiT, ZeRO-1 on 4 ranks overlapped vs plain after"

expect_error "train.overlap must be true or false" "$UVIT" "${T[@]}" --out "$tmp/bad" --steps 1 \
  --set train.overlap=1
exit $fails
