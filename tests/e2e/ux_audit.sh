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
grep -q "^grid $D/grid.png (one row per class) 8/8" "$tmp/err" ||  # 2 steps x 4 mini-batches
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

# --- uvit fid and uvit eval print FID alike: Python's repr, unclamped (fid printed "0.000000" /
# "-0.000000" with 6 decimals, eval "-1.24e-14")
run "$UVIT" fid "$tmp/ref.npz" "$tmp/ref.npz"
is_repr() { "$PY" -c "import sys; v = sys.argv[1]; sys.exit(repr(float(v)) != v)" "$1"; }
got=$(sed -n 's/^FID: //p' "$tmp/out")
is_repr "$got" || fail "uvit fid does not print Python's repr: '$got'"
"$PY" -c "import sys; sys.exit(abs(float('$got')) > 1e-9)" || fail "fid of a file with itself: $got"
run "$UVIT" "${E[@]/ev.npz/ev2.npz}"
got=$(sed -n 's/^FID: //p' "$tmp/out")
is_repr "$got" || fail "uvit eval does not print Python's repr: '$got'"

# --- extract-features into a folder made by other weights: refused, naming what differs (it
# resumed by file existence and mixed the features of two autoencoders). The manifest is the
# folder's dot-file OUT/.manifest.json, which the readers of the layout do not take for a feature.
tiny_kl_f8 "$tmp/ae.json" 0.18215
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae.pth" --seed 3
run "$PY" tests/reference/autoencoder_torch.py save --config "$tmp/ae.json" --out "$tmp/ae2.pth" --seed 4
"$PY" - "$tmp/images/train" <<'PYEOF' || fails=$((fails+1))
import os, sys
import numpy as np
from PIL import Image
for name in ["n01_a", "n02_b"]:
    d = os.path.join(sys.argv[1], name[:3])
    os.makedirs(d, exist_ok=True)
    rs = np.random.RandomState(len(os.listdir(d)) + ord(name[-1]))
    Image.fromarray(rs.randint(0, 255, (256, 256, 3)).astype(np.uint8)).save(os.path.join(d, name + ".png"))
PYEOF
X=(extract-features --data "$tmp/images" --config "$tmp/ae.json" --out "$tmp/feat/" --batch 2)
run "$UVIT" --threads 2 "${X[@]}" --weights "$tmp/ae.pth" -q
[ "$(ls "$tmp/feat" | tr '\n' ' ')" = "0.npy 1.npy 2.npy 3.npy " ] || fail "feature folder: $(ls "$tmp/feat")"
grep -q '"weights_sha256"' "$tmp/feat/.manifest.json" || fail "no manifest in $tmp/feat"
rm "$tmp/feat/3.npy"
expect_error "feat/: holds features of a different run (weights_sha256 \"$(sha256sum "$tmp/ae.pth" | cut -c1-64)\" -> \"$(sha256sum "$tmp/ae2.pth" | cut -c1-64)\"); give another --out folder, or delete it$" \
  "$UVIT" --threads 2 "${X[@]}" --weights "$tmp/ae2.pth" -q
[ ! -e "$tmp/feat/3.npy" ] || fail "a refused resume wrote a feature file"
run "$UVIT" --threads 2 "${X[@]}" --weights "$tmp/ae.pth"  # the same settings resume
grep -q "(1 already done)" "$tmp/err" || fail "resume with the same weights: $(cat "$tmp/err")"
# A folder from before the manifest: taken as made with the rerun's settings, said, then recorded.
rm "$tmp/feat/.manifest.json"
run "$UVIT" --threads 2 "${X[@]}" --weights "$tmp/ae.pth"
grep -q "^$tmp/feat/: 2 images were done with no manifest; taken as made with these settings, recorded in $tmp/feat/.manifest.json$" "$tmp/err" ||
  fail "no-manifest folder: $(cat "$tmp/err")"
[ -e "$tmp/feat/.manifest.json" ] || fail "the manifest was not written for a folder without one"

# --- a folder left by a run that stopped before its first checkpoint: a new run there appended to
# its log (two runs in one log.jsonl); now the old config.json and log.jsonl move to failed_start/
F=$tmp/failed
run "$UVIT" train --config fmnist_uvit_tiny --out "$F" --steps 1 --batch 2 --no-grid -q
rm "$F/train_state.safetensors"; cp "$F/log.jsonl" "$tmp/old_log"
run "$UVIT" train --config fmnist_uvit_tiny --out "$F" --steps 1 --batch 2 --no-grid
grep -q "^$F held a run that stopped before its first checkpoint: its config.json and log.jsonl moved to $F/failed_start$" "$tmp/err" ||
  fail "failed start: $(cat "$tmp/err")"
cmp -s "$F/failed_start/log.jsonl" "$tmp/old_log" || fail "the old log was not kept in failed_start/"
[ "$(wc -l <"$F/log.jsonl")" = "$(wc -l <"$tmp/old_log")" ] || fail "the new log holds $(wc -l <"$F/log.jsonl") rows, a fresh run $(wc -l <"$tmp/old_log")"
[ -e "$F/config.json" ] && [ -e "$F/failed_start/config.json" ] || fail "config.json: $(ls "$F" "$F/failed_start")"

# --- predict --y of floats: refused (float zeros were read as class 0)
"$PY" -c "
import numpy as np, sys
np.save(sys.argv[1] + '/x.npy', np.zeros((1, 1, 28, 28), np.float32))
np.save(sys.argv[1] + '/t.npy', np.full((1,), 0.5, np.float32))
np.save(sys.argv[1] + '/yf.npy', np.zeros((1,), np.float32))
np.save(sys.argv[1] + '/yi.npy', np.zeros((1,), np.int64))" "$tmp"
P=(predict --config "$D" --weights "$D/nnet_ema.safetensors" --x "$tmp/x.npy" --t "$tmp/t.npy")
run "$UVIT" "${P[@]}" --y "$tmp/yi.npy" --out "$tmp/eps.npy"
expect_error "^uvit: error: $tmp/yf.npy: labels must be an integer array (int64), not F32$" \
  "$UVIT" "${P[@]}" --y "$tmp/yf.npy" --out "$tmp/eps2.npy"
[ ! -e "$tmp/eps2.npy" ] || fail "predict wrote an output from float labels"
[ ! -e "$tmp/g.png" ] || fail "an output was written despite errors"
exit $fails
