#!/usr/bin/env bash
# CPU seconds per partial fine-tune step (FiT's HR ignore_keys on fmnist_fit_tiny widened to 384 x 12
# blocks, batch 16): (CPU of a 12-step run - CPU of a 2-step run) / 10, two uvit binaries
# alternated ABBA, one thread, with the peak RSS (docs/benchmarks.md, "Partial fine-tuning").
# bench/partial_finetune.sh OLD_UVIT NEW_UVIT
set -euo pipefail
OLD=${1:?old uvit binary} NEW=${2:?new uvit binary}
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT; cd $D
NET=(--set nnet.hidden_size=384 --set nnet.depth=12 --set nnet.num_heads=6)
P=(--set train.finetune=partial --set 'train.ignore_keys=["x_embedder","bias","LN","final_layer"]')
cpu() {  # cpu BIN STEPS MODE -> user+sys seconds
  local out=$D/c_run; rm -rf $out
  local extra=(); [ "$3" = partial ] && extra=("${P[@]}")
  /usr/bin/time -f "%U %S %M" -o $D/c_time $1 train -c fmnist_fit_tiny --out $out --steps $2 --batch 16 \
    --no-grid -q --threads 1 --set train.save_interval=100000 "${NET[@]}" \
    --init $D/w/nnet_ema.safetensors "${extra[@]}" >/dev/null
  awk '{printf "%.2f %d", $1 + $2, $3 / 1024}' $D/c_time
}
$NEW train -c fmnist_fit_tiny --out w --steps 0 --no-grid -q --threads 1 "${NET[@]}" >/dev/null
uptime
for r in "old $OLD partial" "new $NEW partial" "new $NEW partial" "old $OLD partial" "old $OLD full" "new $NEW full"; do
  set -- $r
  a=$(cpu $2 2 $3); b=$(cpu $2 12 $3)
  python3 -c "import sys; a,ra=map(float,'$a'.split()); b,rb=map(float,'$b'.split()); print(f'$1 $3: CPU per step {(b-a)/10:.3f} s (2 steps {a:.1f} s, 12 steps {b:.1f} s), peak RSS {rb:.0f} MB')"
done
uptime
