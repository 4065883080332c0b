#!/usr/bin/env bash
# Regressions from the new-user audit (docs/ux_audit.md): each check failed before its fix.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

# --- `uvit demo` a second time continues the run with the run's own preset and settings --------
# README: `uvit demo`, then `uvit demo --config fmnist_dit_tiny` would resume the U-ViT run in the
# same folder with the DiT preset ("holds 1496346 parameters, config fmnist_dit_tiny has ...").
D=$tmp/demo
run "$UVIT" demo --out "$D" --steps 1 --set train.batch_size=4 --set sample.sample_steps=2
grep -q "batch 4," "$tmp/err" || fail "demo: batch 4 not used: $(cat "$tmp/err")"
expect_error "demo: $D holds a fmnist_uvit_tiny demo run; give --out another folder for a fmnist_dit_tiny demo" \
  "$UVIT" demo --out "$D" --config fmnist_dit_tiny --steps 2
# Without --set the second call keeps batch 4 and the 2 grid steps (not the preset's 64 and 250).
run "$UVIT" demo --out "$D" --steps 2
grep -q "batch 4, steps 1 -> 2" "$tmp/err" || fail "demo continued with: $(grep '^training' "$tmp/err")"
grep -q "^grid $D/grid.png (one row per class) 2/2" "$tmp/err" ||
  fail "demo's grid not drawn with the run's 2 steps: $(grep '^grid' "$tmp/err" | tail -1)"
expect_error "nnet.\* cannot change" "$UVIT" demo --out "$D" --steps 3 --set nnet.depth=2
# The demo takes every fmnist_*_tiny preset and says so.
"$UVIT" help demo | tr -s ' \n' ' ' >"$tmp/help"
for p in $(ls configs/fmnist_*_tiny.json | sed 's|configs/||; s|\.json$||'); do
  grep -q "$p[,; ]" "$tmp/help" || fail "uvit help demo does not list the Fashion-MNIST preset $p"
done

# --- an --out that is a file: one line naming --out, not a filesystem exception ---------------
expect_error "^uvit: error: --out $D/grid.png: is a file, not a folder" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$D/grid.png" --steps 1
expect_error "^uvit: error: --out $D/grid.png: is a file, not a folder" \
  "$UVIT" demo --out "$D/grid.png" --steps 1

# --- --weights: a missing file or a run folder is named as such, not as an "unknown format" ----
expect_error "^uvit: error: $tmp/nothere: no such file$" \
  "$UVIT" sample --config "$D" --weights "$tmp/nothere" --n 1 --class 1 --out "$tmp/g.png"
expect_error "is a folder, not a weights file (a training run: give $D/nnet_ema.safetensors)" \
  "$UVIT" sample --config "$D" --weights "$D" --n 1 --class 1 --out "$tmp/g.png"
# --- --class with a word that is no class: Fashion-MNIST has names (it said "no class names") --
expect_error "give an id 0..9 or a class name: uvit info --config fmnist_uvit_tiny --classes lists them" \
  "$UVIT" sample --config "$D" --weights "$D/nnet_ema.safetensors" --n 1 --class -1 --out "$tmp/g.png"
# --- RUN/config.json is the run's config, named as the run (it was "config", so --resume refused it)
run "$UVIT" info --config "$D/config.json"
grep -q "^config  *fmnist_uvit_tiny$" "$tmp/out" || fail "info: $(head -1 "$tmp/out")"
run "$UVIT" train --config "$D/config.json" --out "$D" --resume --steps 2
grep -q "already at step 2" "$tmp/err" || fail "resume with the run's config.json: $(cat "$tmp/err")"
# --- uvit eval after more training: the old samples in OUT.parts were "resumed" (same path) and
# the old model's FID reported; the manifest now holds the weights' SHA-256.
inception_weights IW "${2:-}"
run "$UVIT" sample --config "$D" --weights "$D/nnet_ema.safetensors" --n 4 --class 1 --steps 2 \
  --dir "$tmp/ref" -q
run "$UVIT" fid-stats "$tmp/ref" --out "$tmp/ref.npz" --inception "$IW" -q
E=(eval --config "$D" --weights "$D/nnet_ema.safetensors" --n 4 --steps 2 --ref "$tmp/ref.npz"
  --inception "$IW" --out "$tmp/ev.npz")
run "$UVIT" "${E[@]}"
run "$UVIT" "${E[@]}"
grep -q "(4 resumed from" "$tmp/err" || fail "eval did not resume its own chunks: $(cat "$tmp/err")"
run "$UVIT" train --out "$D" --resume --steps 3 --no-grid -q
expect_error "ev.npz.parts: holds chunks of a different run (weights_sha256 " "$UVIT" "${E[@]}"
# --- --sampler euler on a DiT preset: named the sampler and the choices (it said "Euler–Maruyama:
# needs the linear VP schedule (continuous models), not discrete" from inside the solver)
run "$UVIT" train --config fmnist_dit_tiny --out "$tmp/dit" --steps 1 --batch 2 --no-grid -q
expect_error "sampler 'euler-ode' needs the continuous VP schedule (continuous_vp presets); config fmnist_dit_tiny (schedule adm) takes dpm-solver, dpm-solver++, dpm-solver++2m, ddpm or ddim" \
  "$UVIT" sample --config "$tmp/dit" --weights "$tmp/dit/nnet_ema.safetensors" --n 1 --class 1 \
  --sampler euler --out "$tmp/g.png"
# --- README's `uvit train --config cifar10_uvit_small --out runs/c10`: the preset's official data
# path is not here; the message says how to give one (it said "dataset directory not found")
expect_error "assets/datasets/cifar10: dataset cifar10 not found (give its folder: uvit train --data PATH" \
  "$UVIT" train --config cifar10_uvit_small --out "$tmp/c10" --steps 1
[ ! -e "$tmp/c10" ] || fail "a train that could not start left $tmp/c10"
# --- presets: the CLI's list = configs/ = docs/configs.md's "Every preset" (LaVin-DiT's were in
# no table), and each one passes `uvit info`
run "$UVIT" info --presets
cli=$(sort "$tmp/out")
dir=$(ls configs/*.json | sed 's|configs/||; s|\.json$||' | sort)
doc=$(sed -n '/^## Every preset/,$p' docs/configs.md | sed -n '/^`uvit info --presets`/,$p' |
  tr -s ' ,.\n' '\n' | grep -E '^[a-z0-9]+_[a-z0-9_]+$' | sort)
[ "$cli" = "$dir" ] || fail "uvit info --presets != configs/: $(diff <(echo "$cli") <(echo "$dir") | grep '^[<>]' | tr '\n' ' ')"
[ "$cli" = "$doc" ] || fail "uvit info --presets != docs/configs.md: $(diff <(echo "$cli") <(echo "$doc") | grep '^[<>]' | tr '\n' ' ')"
for p in $cli; do "$UVIT" info --config "$p" >/dev/null 2>"$tmp/err" || fail "info $p: $(cat "$tmp/err")"; done
[ ! -e "$tmp/g.png" ] || fail "an output was written despite errors"
exit $fails
