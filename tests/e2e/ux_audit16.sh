#!/usr/bin/env bash
# Regressions from the sixteenth new-user audit (docs/ux_audit.md, "round 16"): thread counts above
# 2 on a 2-core machine, latent presets and extracted features across thread counts, the C API's
# context values. Each check failed before its fix (docs/cli.md "Reproducibility" lists what holds).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_CONV_IMPL UVIT_KEPT_WEIGHTS_MB

# --- training at 5 and 7 threads ------------------------------------------------------------------
# fmnist_uvit_tiny at --threads 5 and 7 ended with other weights than at 1 (2 and 3 were equal):
# GELU's backward ran one span of elements per thread, and an element at a span's end took the
# vector loop's remainder, rounded differently. Batch 8: 408 x 512 MLP elements, no multiple of 16
# per thread at 5 or 7.
for t in 1 5 7; do
  run "$UVIT" --threads $t train --config fmnist_uvit_tiny --out "$tmp/u$t" --steps 2 --batch 8 \
    --set lr_scheduler.warmup_steps=0 --no-grid -q
done
same "train fmnist_uvit_tiny --threads 1 and 5" "$tmp/u1/nnet.safetensors" "$tmp/u5/nnet.safetensors"
same "train fmnist_uvit_tiny --threads 1 and 7" "$tmp/u1/nnet.safetensors" "$tmp/u7/nnet.safetensors"
# fmnist_lightningdit_tiny at 7: RMSNorm's weight gradient was summed per thread.
for t in 1 7; do
  run "$UVIT" --threads $t train --config fmnist_lightningdit_tiny --out "$tmp/l$t" --steps 3 \
    --batch 8 --set lr_scheduler.warmup_steps=0 --no-grid -q
done
same "train fmnist_lightningdit_tiny --threads 1 and 7" "$tmp/l1/nnet.safetensors" \
  "$tmp/l7/nnet.safetensors"

# --- latent presets: features and decoded samples -----------------------------------------------
# The autoencoder's mid-block attention at 32 x 32 latents (1024 tokens) ran one multi-threaded
# GEMM, which oneDNN split over the keys by thread count: extract-features wrote other bytes at
# --threads 2, 4 and 7 than at 1 (a rerun at another count mixed them into one folder without a
# word), and `uvit sample` of a latent preset decoded images a grey level apart here and there.
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
"$PY" tests/e2e/data/image_folder.py "$tmp/images/train" n01_a:256x256 n02_b:256x256 ||
  fail "writing the images"
for t in 1 2 7; do
  run "$UVIT" --threads $t extract-features --data "$tmp/images" --config "$tmp/ae.json" --batch 2 \
    --weights "$tmp/ae.pth" --out "$tmp/f$t" -q
done
for t in 2 7; do
  for i in 0 1 2 3; do
    same "extract-features --threads 1 and $t, $i.npy" "$tmp/f1/$i.npy" "$tmp/f$t/$i.npy"
  done
done
run "$UVIT" --threads 2 train --config imagenet256_uvit_large --data "$tmp/f1" --out "$tmp/run" \
  --steps 2 --batch 4 --set nnet.embed_dim=32 --set nnet.depth=2 --set nnet.num_heads=2 \
  --set nnet.use_checkpoint=false --no-grid -q
for t in 1 2 3; do
  run "$UVIT" --threads $t sample --config "$tmp/run/config.json" \
    --weights "$tmp/run/nnet_ema.safetensors" --autoencoder "$tmp/ae.pth" \
    --autoencoder-config "$tmp/ae.json" --n 2 --class 1 --steps 3 --npy "$tmp/s$t.npy" -q
done
same "sample of a latent preset, --threads 1 and 2" "$tmp/s1.npy" "$tmp/s2.npy"
same "sample of a latent preset, --threads 1 and 3" "$tmp/s1.npy" "$tmp/s3.npy"

# --- the C API's device and precision ---------------------------------------------------------
# uvit_ctx_create with device "gpu" or precision "bf17" returned UVIT_ERR_LOAD with the loader's
# words (`unknown backend 'gpu' (expected 'cpu' or 'cuda')`), naming no field; precision "" was
# taken as NULL (the default) while device "" was refused. A value no device takes is now
# UVIT_ERR_INVALID_ARGUMENT naming the field, before any file is read.
lib=$(dirname "$UVIT")
cat >"$tmp/ctx_values.c" <<'CEOF'
#include <stdio.h>
#include <uvit.h>
static void try_ctx(const char* what, const char* device, const char* precision, const char* w) {
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  cp.config = "fmnist_uvit_tiny";
  cp.weights = w;
  cp.device = device;
  cp.precision = precision;
  uvit_ctx* ctx = NULL;
  const uvit_status s = uvit_ctx_create(&cp, &ctx);
  printf("%s: %d %s\n", what, (int)s, s == UVIT_OK ? "ok" : uvit_last_error());
  uvit_ctx_free(ctx);
}
int main(int argc, char** argv) {
  (void)argc;
  try_ctx("device gpu", "gpu", NULL, argv[1]);
  try_ctx("device empty", "", NULL, argv[1]);
  try_ctx("precision bf17", "cpu", "bf17", argv[1]);
  try_ctx("precision empty", NULL, "", argv[1]);
  try_ctx("cpu fp32", "cpu", "fp32", argv[1]);
  return 0;
}
CEOF
cc -std=c99 -Wall -Wextra -pedantic -I include "$tmp/ctx_values.c" -L"$lib" -luvit \
  -Wl,-rpath,"$lib" -o "$tmp/ctx_values" || fail "compiling the C program"
"$tmp/ctx_values" "$tmp/u1/nnet_ema.safetensors" >"$tmp/ctx.out" 2>"$tmp/ctx.err"
cat >"$tmp/ctx.want" <<'EOF'
device gpu: 1 uvit_ctx_params.device must be "cpu" or "cuda" (NULL: cpu), got "gpu"
device empty: 1 uvit_ctx_params.device must be "cpu" or "cuda" (NULL: cpu), got ""
precision bf17: 1 uvit_ctx_params.precision must be "fp32", "bf16" or "tf32" (NULL: the device's default), got "bf17"
precision empty: 1 uvit_ctx_params.precision must be "fp32", "bf16" or "tf32" (NULL: the device's default), got ""
cpu fp32: 0 ok
EOF
diff "$tmp/ctx.want" "$tmp/ctx.out" >"$tmp/ctx.diff" &&
  echo "ok: C API: an unknown device or precision is UVIT_ERR_INVALID_ARGUMENT naming the field" ||
  fail "C API device/precision: $(cat "$tmp/ctx.diff" "$tmp/ctx.err")"
exit $fails
