#!/usr/bin/env bash
# The U-ViT ablation variants (docs/configs.md) train through the CLI with --set, and N steps +
# --resume to 2N give bit-identical weights, EMA and optimizer state; bad values are one line.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
N=2
for v in skip_mode=add skip_mode=add_linear skip_mode=linear_add pos_embed=sincos_2d \
         pos_embed=none conv_position=before_linear time_cond=adaln patch_embed=conv_stack; do
  A=$tmp/A_$v B=$tmp/B_$v
  # conv_stack needs a power-of-two patch size (tiny.json's is 7).
  pre=(); [[ $v == patch_embed=* ]] && pre=(--set nnet.patch_size=4)
  common=(--config "$tmp/tiny.json" --batch 4 "${pre[@]}" --set "nnet.$v" -q)
  run "$UVIT" train "${common[@]}" --out "$A" --steps $((2 * N))
  run "$UVIT" train "${common[@]}" --out "$B" --steps $N
  run "$UVIT" train --out "$B" --resume --steps $((2 * N)) -q
  grep -q "\"${v%%=*}\": *\"${v#*=}\"" "$A/config.json" || fail "$v: not in the run's config.json"
  same_files "$A" "$B" "$v: straight vs resumed"
  cmp -s "$A/nnet.safetensors" "$A/nnet_ema.safetensors" && fail "$v: weights equal their EMA (no update?)"
  echo "ok: $v trains and resumes exactly"
done

# Variants change the checkpoint's tensors as documented.
"$PY" - "$tmp" <<'PYEOF' || fails=$((fails+1))
import json, struct, sys
def names(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return {k: v["shape"] for k, v in json.loads(f.read(n)).items() if k != "__metadata__"}
t = sys.argv[1]
bad = 0
checks = [("skip_mode=add", "out_blocks.0.skip_linear.weight", None),
          ("skip_mode=linear_add", "out_blocks.0.skip_linear.weight", [32, 32]),
          ("pos_embed=none", "pos_embed", None),
          ("conv_position=before_linear", "token_conv.weight", [32, 32, 3, 3]),
          ("time_cond=adaln", "mid_block.adaLN_modulation.weight", [128, 32]),
          ("time_cond=adaln", "pos_embed", [1, 17, 32]),  # label + 16 patches, no time token
          ("patch_embed=conv_stack", "patch_embed.convs.1.weight", [32, 16, 3, 3]),
          ("patch_embed=conv_stack", "patch_embed.proj.weight", [32, 32, 1, 1])]
for v, k, shape in checks:
    got = names("%s/A_%s/nnet.safetensors" % (t, v)).get(k)
    if got != shape:
        print("FAIL: %s: %s has shape %s, want %s" % (v, k, got, shape)); bad += 1
print("ok: variant checkpoints hold the documented tensors" if not bad else "")
sys.exit(bad)
PYEOF

expect_error 'nnet.skip_mode "sum" is not one of: concat_linear, add, add_linear, linear_add' \
  "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/bad" --steps 1 --set nnet.skip_mode=sum -q
expect_error 'nnet.time_cond "adaLN" is not one of: token, adaln' \
  "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/bad" --steps 1 --set nnet.time_cond=adaLN -q
expect_error 'nnet.patch_embed "conv" is not one of: linear, conv_stack' \
  "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/bad" --steps 1 --set nnet.patch_embed=conv -q
exit $fails
