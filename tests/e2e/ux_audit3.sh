#!/usr/bin/env bash
# Regressions from the third new-user audit (docs/ux_audit.md, "round 3"): each check failed
# before its fix.
set -uo pipefail
UVIT=$1 FX=${2:-} PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# --- an SVG preset sets zero-init steps (cfg_star) that dopri5 and euler_maruyama refuse: the
# error said "apply to the euler and heun grids only", not how to drop them.
S=$tmp/svg
run "$UVIT" train --config fmnist_svg_tiny --out "$S" --steps 1 --batch 2 --no-grid -q
SV=(sample --config "$S" --weights "$S/nnet_ema.safetensors" --class 0 --n 1 --out "$tmp/s.png" -q)
for s in dopri5 euler_maruyama; do
  expect_error "^uvit: error: config fmnist_svg_tiny sets sample.zero_init_steps 1 (cfg_star), which sampler $s does not take: add --zero-init-steps 0" \
    "$UVIT" "${SV[@]}" --sampler "$s" --steps 3
done
expect_error "which leaves none of the 1 steps of --steps 2: add --zero-init-steps 0" \
  "$UVIT" "${SV[@]}" --steps 2
run "$UVIT" "${SV[@]}" --sampler dopri5 --zero-init-steps 0 --steps 3
[ -s "$tmp/s.png" ] || fail "dopri5 with --zero-init-steps 0 wrote no grid"

# --- an unknown autoencoder config listed the built-in ones but not lavin_stvae, which
# `uvit autoencoder` takes; other commands named it "unknown".
expect_error "^uvit: error: unknown autoencoder config 'nope' (not a file; built-in: sd_kl_f8, vavae_f16d32, svg_decoder_z392; lavin_stvae (LaVin-DiT's ST-VAE) in \`uvit autoencoder\` and \`uvit lavin-sample\`)$" \
  "$UVIT" autoencoder encode -c nope -w "$tmp/ae.pth" --in "$tmp/x.npy" --out "$tmp/m.npy"
mkdir -p "$tmp/imgs/n01"
expect_error "^uvit: error: autoencoder config lavin_stvae (LaVin-DiT's ST-VAE) is taken by \`uvit autoencoder\` and \`uvit lavin-sample\` only; this command takes sd_kl_f8" \
  "$UVIT" extract-features --data "$tmp/imgs" -c lavin_stvae -w "$tmp/ae.pth" --out "$tmp/feat"

# --- `uvit info --json` was silently ignored with --presets and --classes; --presets silently
# dropped --config.
run "$UVIT" info --presets --json
"$PY" -c "
import json, os, sys
names = json.load(open(sys.argv[1]))
assert names == sorted(f[:-5] for f in os.listdir('configs') if f.endswith('.json')), names
" "$tmp/out" || fail "info --presets --json: $(head -c 200 "$tmp/out")"
run "$UVIT" info --config fmnist_uvit_tiny --classes --json
"$PY" -c "
import json, sys
t = json.load(open(sys.argv[1]))
assert len(t) == 10 and t[7] == {'id': 7, 'wnid': '', 'names': 'Sneaker'}, t
" "$tmp/out" || fail "info --classes --json: $(head -c 300 "$tmp/out")"
expect_error "^uvit: error: --presets takes no --config, --classes or IMAGE" \
  "$UVIT" info --presets --config fmnist_uvit_tiny
expect_error "^uvit: error: --classes takes no IMAGE" "$UVIT" info --classes "$tmp/s.png"

# --- the class-name error had two wordings, the CLI's and the server's ("unknown class 'x' for
# C"): one helper now, naming the option or field and where the classes are listed.
expect_error "^uvit: error: --class 'snaeker' is not a class of fmnist_svg_tiny; did you mean: Sneaker (uvit info --config fmnist_svg_tiny --classes lists them)$" \
  "$UVIT" sample --config "$S" --weights "$S/nnet_ema.safetensors" --class snaeker --n 1 \
  --out "$tmp/s.png"
serve_up --config "$S" --weights "$S/nnet_ema.safetensors"
got=$(curl -s -w " %{http_code}" -d '{"prompt": "snaeker", "steps": 3}' "$B/sdapi/v1/txt2img")
[[ "$got" == *"prompt 'snaeker' is not a class of fmnist_svg_tiny; did you mean: Sneaker (GET /uvit/v1/classes lists them)"*" 422" ]] ||
  fail "server's unknown class: $got"
got=$(curl -s -w " %{http_code}" -d '{"prompt": "zzzzzz", "steps": 3}' "$B/sdapi/v1/txt2img")
[[ "$got" == *"prompt 'zzzzzz' is not a class of fmnist_svg_tiny (give an id 0..9 or a class name: GET /uvit/v1/classes lists them)"*" 422" ]] ||
  fail "server's unknown class, no near name: $got"
serve_down

# --- audit round 3 --------------------------------------------------------------------------------
# A flow sampler on an ε preset: "unknown sampler 'heun' (valid: euler-maruyama, euler-ode, ...)",
# a list that an adm preset then refuses half of; an A1111 name was named by what it maps to.
U=$tmp/uvit
run "$UVIT" train --config fmnist_dit_tiny --out "$U" --steps 1 --batch 2 --no-grid -q
UV=(sample --config "$U" --weights "$U/nnet_ema.safetensors" --class 0 --n 1 --steps 2 --out "$tmp/u.png")
expect_error "^uvit: error: --sampler: 'heun' is a flow sampler (flow presets); config fmnist_dit_tiny (schedule adm) takes dpm-solver, dpm-solver++, dpm-solver++2m, ddpm, ddim$" \
  "$UVIT" "${UV[@]}" --sampler heun
expect_error "^uvit: error: --sampler: 'Euler a' is euler-maruyama: sampler 'euler-maruyama' needs the continuous VP schedule" \
  "$UVIT" "${UV[@]}" --sampler "Euler a"

# An output folder that cannot be written although access() says it can (root; /proc): the error
# came after the sampling ("cannot create temporary file"), or as a filesystem exception for a
# folder (--dir, train --out).
# (The error of that file's creation is said of the name made in /proc, not of /proc: ux_audit18.)
for o in "--npy /proc/x.npy:/proc/x.npy" "--dir /proc/d:folder /proc/d"; do
  expect_error "^uvit: error: ${o%%:*}: cannot create ${o#*:}: No such file or directory" \
    "$UVIT" "${UV[@]}" ${o%%:*}
done
expect_error "^uvit: error: --out /proc/run: cannot create folder /proc/run: No such" \
  "$UVIT" train --config fmnist_uvit_tiny --out /proc/run --steps 1
ls -a "$tmp" | grep -q uvit_write_check && fail "the write check left its file"

# eval --ref FOLDER (the images at hand): "ref: is a directory".
mkdir -p "$tmp/refdir"
expect_error "^uvit: error: --ref $tmp/refdir: is a folder; give reference statistics .npz (uvit fid-stats $tmp/refdir --out ref.npz makes them)" \
  "$UVIT" eval --config "$U" --weights "$U/nnet_ema.safetensors" --n 4 --ref "$tmp/refdir" \
  --out "$tmp/e.npz"

# LaVin-DiT through sample / eval / bench / serve: "a latent model: give --autoencoder", "text-to-
# image presets need contexts"; it is sampled from example frames by lavin-sample.
L="config lavin_dit_tiny is LaVin-DiT: it answers in-context example frames; sample it with uvit lavin-sample"
expect_error "^uvit: error: $L" "$UVIT" sample --config lavin_dit_tiny --weights "$U/nnet.safetensors" \
  --n 1 --out "$tmp/l.png"
expect_error "^uvit: error: $L" "$UVIT" bench --config lavin_dit_tiny --mode sample --n 1 --steps 2
expect_error "^uvit: error: $L" "$UVIT" serve --config lavin_dit_tiny --weights "$U/nnet.safetensors"

# uvit train on LaVin-DiT said "unknown dataset 'lavin_dit_tiny'"; a sample.algorithm that the
# run's `uvit sample` refuses was accepted by train and failed only after training.
expect_error "^uvit: error: config lavin_dit_tiny is LaVin-DiT: uvit train does not train it" \
  "$UVIT" train --config lavin_dit_tiny --out "$tmp/lt" --steps 1
[ ! -e "$tmp/lt" ] || fail "a refused LaVin-DiT train left $tmp/lt"
expect_error "^uvit: error: sample.algorithm 'lms' is not an official sampler" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/lms" --steps 1 --batch 2 --no-grid -q \
  --set sample.algorithm=lms
[ ! -e "$tmp/lms" ] || fail "a refused sample.algorithm left $tmp/lms"

exit $fails
