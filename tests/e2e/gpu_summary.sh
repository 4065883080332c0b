#!/usr/bin/env bash
# bench/gpu/summarize.py's issue-17 sections on hand-made device outputs (no GPU needed): the
# autotune A/B from `record --autotune`, the cuDNN SDPA A/B from `record --attention cudnn`, our
# attention timings (flash and cuDNN's) from the gtest log beside torch's
# SDPA backends, the UVIT_CUDA_OPTIME section (the lines tests/unit/test_op_profile.cpp checks on
# the C++ side) and the torch.profiler line, the cuBLASLt rows and GELU verdict, the SD-decoder
# rows, nvidia-smi clocks cut per stage window, and the targets they feed.
set -uo pipefail
PY=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
source tests/e2e/data/lib.sh
S=bench/gpu/summarize.py

echo '{"img_s": 540.0, "config": "imagenet256_uvit_huge", "mode": "train"}' >"$tmp/a.json"
echo '{"img_s": 567.0, "config": "imagenet256_uvit_huge", "mode": "train"}' >"$tmp/b.json"
for t in 0 1; do
  f=$tmp/a.json; [ $t = 1 ] && f=$tmp/b.json
  "$PY" $S record --case train_h --config imagenet256_uvit_huge --mode train --autotune $t --rc 0 \
    --seconds 9 --json "$f" >>"$tmp/ours.jsonl" || fail "record --autotune $t"
done
echo '{"img_s": 600.0, "config": "imagenet256_uvit_huge", "mode": "train"}' >"$tmp/c.json"
"$PY" $S record --case train_h_cudnn --config imagenet256_uvit_huge --mode train --attention cudnn \
  --rc 0 --seconds 9 --json "$tmp/c.json" >>"$tmp/ours.jsonl" || fail "record --attention cudnn"
# DiT-XL/2: ours from `record`, the compiled twin's row carries the FLOP count summarize.py
# cannot derive from a non-uvit config.
echo '{"img_s": 150.0, "config": "dit_xl_2", "mode": "train"}' >"$tmp/d.json"
"$PY" $S record --case train_dit_xl --config dit_xl_2 --mode train --rc 0 --seconds 9 \
  --json "$tmp/d.json" >>"$tmp/ours.jsonl" || fail "record train_dit_xl"
echo '{"impl": "torch_compiled", "config": "dit_xl_2", "mode": "train", "use_checkpoint": false, "img_s": 100.0, "forward_gflop_per_img": 237.242843136}' >"$tmp/twin.jsonl"
cat >"$tmp/gtest.log" <<'LOG'
  attention fwd bf16 unfused  B=128 N=258 H=16 Dh=72: 2.000 ms  45.1 TFLOP/s
  attention fwd bf16 flash    B=128 N=258 H=16 Dh=72: 0.700 ms  128.9 TFLOP/s
  attention bwd bf16 flash    B=128 N=258 H=16 Dh=72: 2.650 ms  85.1 TFLOP/s
  attention fwd bf16 cudnn      B=128 N=258 H=16 Dh=72: 0.450 ms  200.4 TFLOP/s
  attention bwd bf16 cudnn      B=128 N=258 H=16 Dh=72: 1.600 ms  140.9 TFLOP/s
  attention bwd bf16 cudnn      B=128 N=257 H=8 Dh=64: turned down by cuDNN
LOG
cat >"$tmp/profile.txt" <<'LOG'
== uvit bench train_h (--config imagenet256_uvit_huge), UVIT_CUDA_OPTIME=1, 1 warm-up + 3 steps
uvit cuda op profile (UVIT_CUDA_OPTIME): per interval, the mean of 3 intervals between synchronize() calls after the first (construction, uploads, warm-up: 2000.00 ms wall, left out)
  wall 240.000 ms, timed operations 228.000 ms (95.0%), gap 12.000 ms (launch and host overhead, untimed work)
by kind:
       ms     %   calls  kind
    150.000  65.8   400.0  linear
     50.000  21.9    58.0  attention_bwd
by operation and shape:
       ms     %   calls  us/call  operation
     50.000  21.9    58.0    862.1  attention_bwd B=128 N=258 H=16 Dh=72
== torch.profiler: train:imagenet256_uvit_huge:eager:nockpt, 2 steps: wall 260.000 ms per step, GPU kernels 250.000 ms per step (96.2%), gap 10.000 ms (the profiler itself adds host time)
LOG
cat >"$tmp/anchors.jsonl" <<'LOG'
{"what": "gemm", "net": "uvit_h2", "gemm": "fc1", "pass": "fwd", "M": 33024, "N": 4608, "K": 1152, "heuristic_ms": 0.5, "heuristic_tflops": 700.0, "tuned_ms": 0.4, "tuned_tflops": 875.0, "pick": "#3 of 16"}
{"what": "gelu_epilogue", "max_abs_vs_erf": 0.0003, "max_abs_vs_tanh": 1e-07, "erf_vs_tanh": 0.0003, "computes": "tanh"}
{"what": "attn_anchor", "impl": "torch_sdpa", "backend": "flash", "B": 128, "H": 16, "N": 258, "Dh": 72, "fwd_tflops": 150.0, "bwd_tflops": 110.0}
{"what": "attn_anchor", "impl": "torch_sdpa", "backend": "cudnn", "B": 128, "H": 16, "N": 258, "Dh": 72, "error": "RuntimeError: No available kernel"}
{"what": "vae_anchor", "impl": "torch", "variant": "fp16_autocast_channels_last", "batch": 50, "img_s": 400.0}
{"what": "vae_anchor", "impl": "uvit", "variant": "tf32_nchw", "batch": 50, "images": 150, "seconds": 1.0, "img_s": 240.0}
LOG
printf 'bench\t1000\t1010\nanchors\t1010\t1020\n' >"$tmp/windows.tsv"
# 80 samples 250 ms apart from t = 1000 s: SM clock 1980 falling by 1 MHz a sample.
"$PY" - "$tmp/clocks.csv" <<'PYEOF' || fail "clocks"
import datetime, sys
with open(sys.argv[1], "w") as f:
    for i in range(80):
        t = datetime.datetime.fromtimestamp(1000 + i * 0.25).strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
        f.write(f"{t}, {1980 - i}, 3201, {600 + i}.5, {50 + i // 10}\n")
PYEOF
run "$PY" $S table --ours "$tmp/ours.jsonl" --twin "$tmp/twin.jsonl" --anchors "$tmp/anchors.jsonl" --gtest-log "$tmp/gtest.log" \
  --profile "$tmp/profile.txt" --clocks "$tmp/clocks.csv" --windows "$tmp/windows.tsv" --out "$tmp/results.json"
want() { grep -qF -- "$1" "$tmp/out" && echo "ok: $1" || fail "summary lacks: $1"; }
want "| imagenet256_uvit_huge | train | no | 540.0 |"  # the main table keeps the heuristic run
want "| imagenet256_uvit_huge | train | 540.0 | 567.0 | +5.0% |"
want "| imagenet256_uvit_huge | train | 540.0 | 600.0 | +11.1% |"  # cuDNN SDPA vs ours
want "| train_h | uvit | 240.00 | 228.00 | 12.00 | linear 150.0 (66%), attention_bwd 50.0 (22%) |"
want "| train:imagenet256_uvit_huge:eager:nockpt | torch | 260.00 | 250.00 | 10.00 | - |"
want "| uvit_h2 | fc1 | fwd | 33024 | 4608 | 1152 | 700.0 | 875.0 | 1.250x | #3 of 16 |"
want "it computes tanh GELU"
want "| 128, 16, 258, 72 | fwd | 128.9 | 200.4 | 150.0 | n/a | error | n/a | n/a |"
want "| 128, 16, 258, 72 | bwd | 85.1 | 140.9 | 110.0 | n/a | error | n/a | n/a |"
want "| uvit | tf32_nchw | 50 | 240.0 |"
# bench window [1000, 1011]: samples 0..44; anchors [1010, 1021]: samples 40..79.
want "| bench | 45 | 1936 / 1958 / 1980 | 3201 / 3201 / 3201 | 600 / 622 / 644 | 50 / 52 / 54 |"
want "| anchors | 40 | 1901 / 1921 / 1940 |"
want "| imagenet256_uvit_huge train >= 700 img/s | 540 | FAIL |"
want "| attention fwd at (128, 16, 258, 72) >= 250 TFLOP/s | 129 | FAIL |"
want "| attention fwd at (128, 16, 258, 72), cuDNN SDPA >= 250 TFLOP/s | 200 | FAIL |"
want "| SD decoder 256 px, exact tf32 path >= 230 img/s | 240 | PASS |"
# 3 * 237.24 GFLOP * 150 img/s / 989 TFLOP/s = 10.8%; U-ViT-H/2's 540 img/s is 43.6%.
want "| dit_xl_2 | train | no | 150.0 | n/a | 100.0 | n/a | 1.50x | 10.8% |"
want "| dit_xl_2 train MFU >= imagenet256_uvit_huge train MFU (43.6%) | 10.8% | FAIL |"
want "| dit_xl_2 train >= 1.3x compiled twin | 1.50x | PASS |"
"$PY" - "$tmp/results.json" <<'PYEOF' || fail "results.json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["autotune"][0]["gain"] == 567.0 / 540.0, d["autotune"]
assert d["cudnn_sdpa"][0]["gain"] == 600.0 / 540.0, d["cudnn_sdpa"]
assert all(r.get("attention") != "cudnn" for r in d["autotune"]), d["autotune"]
assert d["profile"][0]["kinds"][0] == {"kind": "linear", "ms": 150.0, "pct": 65.8}, d["profile"]
assert d["clocks"][0]["sm_mhz"] == {"min": 1936.0, "median": 1958.0, "max": 1980.0}, d["clocks"]
assert d["gelu_epilogue"]["computes"] == "tanh"
print("ok: results.json")
PYEOF
exit $fails
