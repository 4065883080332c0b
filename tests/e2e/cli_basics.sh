#!/usr/bin/env bash
# The program's basics: --version, unknown commands, `uvit help CMD`, --threads anywhere, readable
# range errors, presets by name or NAME.json and their listing, compact `info --json`, a hint for
# prompts that start with '-', and `bench` options checked against the mode.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

run "$UVIT" --version
grep -q '^uvit [0-9]' "$tmp/out" || fail "--version: $(cat "$tmp/out")"
expect_error "unknown command 'foo' (commands: info, convert" "$UVIT" foo
expect_error "give a command: info" "$UVIT"
expect_error "unknown command 'autoencoder foo' (commands: encode, decode)" "$UVIT" autoencoder foo
expect_error "gpu not in {cpu,cuda} (uvit help autoencoder decode)" "$UVIT" autoencoder decode --device gpu -w x --in x --out y
run "$UVIT" help sample
grep -q "^Usage: uvit sample" "$tmp/out" && grep -q -- "--cfg-scale" "$tmp/out" && grep -q -- "--threads" "$tmp/out" ||
  fail "help sample: $(head -3 "$tmp/out")"
run "$UVIT" help autoencoder decode
grep -q "^Usage: uvit autoencoder decode" "$tmp/out" || fail "help autoencoder decode: $(head -1 "$tmp/out")"
expect_error "help: unknown command 'nope'" "$UVIT" help nope
# Every help line fits in 100 columns.
for c in train sample eval bench fid; do
  "$UVIT" help $c | awk -v c=$c 'length > 100 { print "FAIL: help " c ": " length " columns: " $0; bad = 1 } END { exit bad }' ||
    fails=$((fails+1))
done
run "$UVIT" info --config fmnist_uvit_tiny --threads 1
run "$UVIT" --threads 1 info --config fmnist_uvit_tiny.json
grep -q "^config        fmnist_uvit_tiny" "$tmp/out" || fail "NAME.json is not the preset: $(head -1 "$tmp/out")"
expect_error "--threads must be >= 0, got -2" "$UVIT" info --config fmnist_uvit_tiny --threads -2
expect_error "--batch must be >= 1, got 0" "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/r" --batch 0
[ "$(wc -c <"$tmp/err")" -lt 120 ] || fail "range error is $(wc -c <"$tmp/err") bytes long"

run "$UVIT" info --presets
grep -qx "fmnist_uvit_tiny" "$tmp/out" && grep -qx "cifar10_uvit_small" "$tmp/out" || fail "info --presets: $(cat "$tmp/out")"
expect_error "presets: .*fmnist_uvit_tiny" "$UVIT" info --config fmnist_uvit_tinyy
run "$UVIT" info --config fmnist_uvit_tiny --json
[ "$(wc -l <"$tmp/out")" = 1 ] || fail "info --json: $(wc -l <"$tmp/out") lines"
"$PY" -c 'import json, sys; assert json.load(open(sys.argv[1]))[0]["name"]' "$tmp/out" || fail "info --json is not JSON"

expect_error "put -- before a prompt that starts with '-': uvit tokenize -- -dash" "$UVIT" tokenize -dash
run "$UVIT" tokenize -- -dash

expect_error "--steps does not apply to --mode forward" "$UVIT" bench --config fmnist_uvit_tiny --steps 5
expect_error "--iters does not apply to --mode sample" "$UVIT" bench --config fmnist_uvit_tiny --mode sample --n 1 --steps 1 --iters 2
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
run "$UVIT" bench --config "$tmp/tiny.json" --mode sample --n 2 --batch 2
"$PY" -c 'import json, sys; j = json.loads(open(sys.argv[1]).read())
assert (j["sampler"], j["steps"], j["network_calls"]) == ("dpm-solver", 4, 4) and j["img_s"] > 0, j' "$tmp/out" ||
  fail "bench sample: $(cat "$tmp/out")"
grep -q "^sample (network evaluations) 4/4" "$tmp/err" || fail "bench sample progress: $(cat "$tmp/err")"
exit $fails
