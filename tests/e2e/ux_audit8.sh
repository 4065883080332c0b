#!/usr/bin/env bash
# Regressions from the eighth new-user audit (docs/ux_audit.md, "round 8"): each fix's check failed
# before it; the others keep what the audit found fine (docs/c_api.md's examples built as the page
# shows them, fine-tuning an official-layout checkpoint and taking it back, --preview on latent
# presets, `uvit info` on every kind of file the tool writes or reads).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
unset UVIT_INCEPTION

# --- the C API as docs/c_api.md shows it ---------------------------------------------------------
# Installed from the build the uvit under test belongs to; the page's compile line; a run trained
# with 4 sampler steps, so that `cp.config = "run"` (the page's alternative) samples quickly.
P=$tmp/prefix
cmake --install "$(dirname "$UVIT")" --prefix "$P" >"$tmp/install.log" || fail "cmake --install"
LIB=$(dirname "$(find "$P" -name 'libuvit.so.0' | head -1)")
export PKG_CONFIG_PATH=$LIB/pkgconfig
C=$tmp/capi
mkdir -p "$C"
run "$UVIT" train --config fmnist_uvit_tiny --out "$C/run" --steps 1 --batch 2 --no-grid -q \
  --set sample.sample_steps=4
# The page's ```c blocks: ex1.c the example, ex2.c the preview callback.
awk -v d="$C" '/^```c$/ {k++; on = 1; next} /^```/ {on = 0; next} on {print > (d "/ex" k ".c")}' docs/c_api.md
build() {  # build SRC OUT: the page's compile line
  cc "$1" $(pkg-config --cflags --libs uvit) -Wl,-rpath,"$LIB" -o "$2" 2>"$tmp/cc.log" ||
    { fail "building $1: $(head -5 "$tmp/cc.log")"; return 1; }
}
sed 's/cp.config = "fmnist_uvit_tiny"/cp.config = "run"/' "$C/ex1.c" >"$C/main.c"
if build "$C/main.c" "$C/main"; then
  (cd "$C" && ./main >"$tmp/out" 2>"$tmp/err")
  [ $? = 0 ] && [ "$(grep -c '^Steps: 4, Sampler: euler-maruyama, .*Class: 7, ' "$tmp/out")" = 4 ] ||
    fail "the example: $(cat "$tmp/out" "$tmp/err")"
  # A misspelt class went on as class -1 (`class -1 is outside [0, 10)`), and a failed
  # uvit_generate printed nothing and exited 0.
  sed 's/"sneaker"/"sneakr"/' "$C/main.c" >"$C/typo.c" && build "$C/typo.c" "$C/typo" &&
    (cd "$C" && ./typo >"$tmp/out" 2>"$tmp/err")
  [ $? = 1 ] && [ "$(cat "$tmp/err")" = "uvit_class_from_name: 'sneakr' is not a class of fmnist_uvit_tiny; did you mean: Sneaker (uvit info --config fmnist_uvit_tiny --classes lists them)" ] ||
    fail "the example with a misspelt class: $(cat "$tmp/err")"
  sed 's/gp.n = 4;/gp.n = 0;/' "$C/main.c" >"$C/n0.c" && build "$C/n0.c" "$C/n0" &&
    (cd "$C" && ./n0 >"$tmp/out" 2>"$tmp/err")
  [ $? = 1 ] && [ "$(cat "$tmp/err")" = "uvit_gen_params.n must be >= 1, got 0" ] ||
    fail "the example with n = 0: $(cat "$tmp/err")"
fi
# The preview callback's example (the page had none): a PGM of the first image at evaluations 2
# and 4, replaced through a temporary file.
if [ ! -s "$C/ex2.c" ]; then
  fail "docs/c_api.md has no preview callback example"
elif build "$C/ex2.c" "$C/preview"; then
  (cd "$C" && ./preview >"$tmp/out" 2>"$tmp/err") || fail "the preview example: $(cat "$tmp/err")"
  [ "$(cat "$tmp/err")" = "evaluation 2 of 4: images 0..1, 28x28
evaluation 4 of 4: images 0..1, 28x28" ] || fail "the preview example said: $(cat "$tmp/err")"
  [ "$(head -c 13 "$C/preview.ppm" | tr '\n' ' ')" = "P5 28 28 255 " ] && [ ! -e "$C/preview.ppm.tmp" ] ||
    fail "preview.ppm: $(head -c 13 "$C/preview.ppm" | od -c | head -2)"
fi
# Bad inputs through the C API: each returns its documented status with a message, never crashes.
# A freed context was read (use after free), a second uvit_ctx_free freed it again, and an unknown
# class name or id left uvit_last_error() empty.
head -c 1000 /dev/urandom >"$C/corrupt.safetensors"
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n' >"$C/lfs.safetensors"
cat >"$C/bad.c" <<'CEOF'
#include <stdio.h>
#include <string.h>
#include <uvit.h>
static int fails;
static void on_preview(const uvit_image* im, int n, int first, int done, int total, void* user) {
  (void)im, (void)n, (void)first, (void)done, (void)total, (void)user;
}
static void want(const char* what, uvit_status got, uvit_status st, const char* msg) {
  const char* e = uvit_last_error();
  if (got != st || !strstr(e, msg)) {
    printf("FAIL: %s: %s [%s], want %s [%s]\n", what, uvit_status_string(got), e,
           uvit_status_string(st), msg);
    ++fails;
  }
}
int main(void) {
  uvit_ctx_params cp;
  uvit_ctx_params_init(&cp);
  uvit_ctx* ctx = NULL;
  want("NULL params", uvit_ctx_create(NULL, &ctx), UVIT_ERR_INVALID_ARGUMENT, "uvit_ctx_params is NULL");
  cp.config = "nonesuch";
  cp.weights = "run/nnet_ema.safetensors";
  want("unknown preset", uvit_ctx_create(&cp, &ctx), UVIT_ERR_LOAD, "config 'nonesuch' not found");
  cp.config = "fmnist_uvit_tiny";
  cp.weights = "corrupt.safetensors";
  want("corrupt weights", uvit_ctx_create(&cp, &ctx), UVIT_ERR_LOAD,
       "corrupt.safetensors: not a safetensors file");
  cp.weights = "lfs.safetensors";
  want("LFS pointer", uvit_ctx_create(&cp, &ctx), UVIT_ERR_LOAD, "it is a Git LFS pointer");
  cp.config = "run";
  cp.weights = "run/nnet_ema.safetensors";
  want("create", uvit_ctx_create(&cp, &ctx), UVIT_OK, "");
  int k = uvit_class_from_name(ctx, "zebra");
  want("unknown class name", k == -1 ? UVIT_ERR_INVALID_ARGUMENT : UVIT_OK,
       UVIT_ERR_INVALID_ARGUMENT, "'zebra' is not a class of fmnist_uvit_tiny");
  const char* name = uvit_class_name(ctx, 10);
  want("class id 10", *name ? UVIT_OK : UVIT_ERR_INVALID_ARGUMENT, UVIT_ERR_INVALID_ARGUMENT,
       "uvit_class_name: class 10 is outside [0, 10)");
  uvit_gen_params gp;
  uvit_gen_params_init(&gp);
  uvit_image* im = NULL;
  int n = 5;
  gp.n = 0;
  want("n = 0", uvit_generate(ctx, &gp, &im, &n), UVIT_ERR_INVALID_ARGUMENT,
       "uvit_gen_params.n must be >= 1, got 0");
  if (im || n) printf("FAIL: n = 0 left images %p, %d\n", (void*)im, n), ++fails;
  want("NULL images", uvit_generate(ctx, &gp, NULL, &n), UVIT_ERR_INVALID_ARGUMENT, "is NULL");
  uvit_ctx_free(ctx);
  gp.n = 1;
  want("after free", uvit_generate(ctx, &gp, &im, &n), UVIT_ERR_INVALID_ARGUMENT,
       "uvit_generate: ctx is not a live context");
  uvit_model_info mi;
  mi.struct_size = sizeof mi;
  want("info after free", uvit_model_info_get(ctx, &mi), UVIT_ERR_INVALID_ARGUMENT,
       "not a live context");
  uvit_cancel(ctx);
  uvit_ctx_free(ctx); /* a second free: nothing */
  uvit_ctx_free(NULL);
  want("generate NULL ctx", uvit_generate(NULL, &gp, &im, &n), UVIT_ERR_INVALID_ARGUMENT,
       "uvit_generate: ctx is NULL");
  /* A preview on a latent model without a cheap map (8 latent channels, as VA-VAE's 32). */
  cp.config = "d8_preset.json";
  cp.weights = "d8_net.pth";
  cp.autoencoder = "d8.pth";
  want("d8 create", uvit_ctx_create(&cp, &ctx), UVIT_OK, "");
  gp.classes = &k;
  gp.n_classes = 1;
  k = 1;
  gp.preview = on_preview;
  want("preview on d8", uvit_generate(ctx, &gp, &im, &n), UVIT_ERR_INVALID_ARGUMENT,
       "uvit_gen_params.preview: config d8_preset: its autoencoder (8 latent channels) has no "
       "cheap latent-to-RGB map");
  uvit_ctx_free(ctx);
  printf("%d\n", fails);
  return fails != 0;
}
CEOF
# Two tiny latent presets (U-ViT on z [C, 8, 8]): C 4 with a kl-f8-layout autoencoder (the cheap
# preview map), C 8 (no map, as VA-VAE's 32 channels and SVG's 392).
tiny_kl_f8 "$C/sd.json" 0.18215
sed 's/"z_channels": 4/"z_channels": 8/; s/"embed_dim": 4/"embed_dim": 8/' "$C/sd.json" >"$C/d8.json"
for a in sd d8; do
  run "$PY" tests/reference/autoencoder_torch.py save --config "$C/$a.json" --out "$C/$a.pth" --seed 3
done
"$PY" - "$C" <<'PYEOF' || fail "the tiny latent presets"
import json, sys, torch
sys.path.insert(0, "tests/reference")
import uvit_torch
d = sys.argv[1]
for name, ch in [("sd", 4), ("d8", 8)]:
    c = json.load(open("configs/imagenet256_uvit_large.json"))
    c["z_shape"] = [ch, 8, 8]
    c["autoencoder"] = {"config": d + "/" + name + ".json"}
    c["nnet"].update(img_size=8, in_chans=ch, embed_dim=32, depth=2, num_heads=2, use_checkpoint=False)
    json.dump(c, open(d + "/" + name + "_preset.json", "w"), indent=1)
    torch.manual_seed(0)
    torch.save(uvit_torch.build_from_config(c["nnet"]).state_dict(), d + "/" + name + "_net.pth")
PYEOF
if build "$C/bad.c" "$C/bad"; then
  (cd "$C" && ./bad >"$tmp/out" 2>"$tmp/err")
  rc=$?
  [ $rc = 0 ] && echo "ok: bad inputs through the C API: the documented statuses and messages" ||
    fail "bad inputs through the C API (exit $rc): $(cat "$tmp/out" "$tmp/err")"
fi

# --- --preview on latent presets (docs/samplers.md "Preview") --------------------------------------
L=(--class 1 --n 2 --steps 2 -q)
run "$UVIT" sample -c "$C/sd_preset.json" -w "$C/sd_net.pth" --autoencoder "$C/sd.pth" "${L[@]}" \
  --preview "$C/p.png" --npy "$C/with.npy"
run "$UVIT" sample -c "$C/sd_preset.json" -w "$C/sd_net.pth" --autoencoder "$C/sd.pth" "${L[@]}" \
  --npy "$C/without.npy"
"$PY" -c "
import sys; from PIL import Image
assert Image.open(sys.argv[1]).size == (22, 12), Image.open(sys.argv[1]).size  # 2 latents 8x8
" "$C/p.png" || fail "the kl-f8 preview is not a grid of two 8x8 latents"
cmp -s "$C/with.npy" "$C/without.npy" || fail "the latent preset's samples differ with --preview"
expect_error "^uvit: error: --preview: config d8_preset: its autoencoder (8 latent channels) has no cheap latent-to-RGB map; only Stable Diffusion's kl-f8 family (4 channels) has one (docs/samplers.md \"Preview\")$" \
  "$UVIT" sample -c "$C/d8_preset.json" -w "$C/d8_net.pth" --autoencoder "$C/d8.pth" "${L[@]}" \
  --preview "$C/p8.png" --out "$C/s8.png"
[ ! -e "$C/p8.png" ] && [ ! -e "$C/s8.png" ] || fail "a refused --preview wrote a file"

# --- fine-tuning an official-layout checkpoint and taking it back (docs/cli.md "Fine-tuning") -----
# A DiT state_dict as torch.save writes it (the twin, tests/reference/dit_torch.py), fine-tuned in
# full and partially, converted back with --wrap ema and loaded strictly by the twin; the run and
# the .pth sample alike.
F=$tmp/ft
mkdir -p "$F"
cat >"$F/twin.py" <<'PYEOF'
import json, sys, torch
sys.path.insert(0, "tests/reference")
import dit_torch
mode, path = sys.argv[1:3]
net = dit_torch.build_from_config(json.load(open("configs/fmnist_dit_tiny.json"))["nnet"])
if mode == "save":
    torch.manual_seed(0)
    torch.save(net.state_dict(), path)
else:
    sd = torch.load(path)
    net.load_state_dict(sd["ema"], strict=True)
PYEOF
run "$PY" "$F/twin.py" save "$F/off.pt"
run "$UVIT" info "$F/off.pt"
grep -qx "preset        fmnist_dit_tiny (every tensor's name and shape): uvit sample --config fmnist_dit_tiny --weights $F/off.pt" "$tmp/out" ||
  fail "info off.pt: $(cat "$tmp/out")"
T=(train --config fmnist_dit_tiny --steps 2 --batch 4 --no-grid -q --set lr_scheduler.warmup_steps=0)
run "$UVIT" "${T[@]}" --init "$F/off.pt" --out "$F/full"
run "$UVIT" "${T[@]}" --init "$F/off.pt" --out "$F/part" --set train.finetune=partial \
  --set 'train.ignore_keys=["final_layer"]'
S=(--class 3 --n 2 --steps 3 --sampler ddim -q)
for r in full part; do
  run "$UVIT" convert "$F/$r/nnet_ema.safetensors" "$F/$r.pth" --wrap ema
  run "$UVIT" info "$F/$r.pth"
  grep -qx "entry         ema (the file holds ema)" "$tmp/out" || fail "info $r.pth: $(cat "$tmp/out")"
  run "$PY" "$F/twin.py" load "$F/$r.pth"
  run "$UVIT" sample -c "$F/$r" -w "$F/$r/nnet_ema.safetensors" "${S[@]}" --npy "$F/$r.run.npy"
  run "$UVIT" sample -c fmnist_dit_tiny -w "$F/$r.pth" "${S[@]}" --npy "$F/$r.pth.npy"
  cmp -s "$F/$r.run.npy" "$F/$r.pth.npy" || fail "$r: the run and its .pth sample differently"
done
cmp -s "$F/full/nnet.safetensors" "$F/part/nnet.safetensors" && fail "the partial fine-tune equals the full one"
# The refusals: another family's file, a missing key, a shape, --init on --resume with another file.
"$PY" - "$F" <<'PYEOF' || fail "writing the broken checkpoints"
import sys, torch
d = sys.argv[1]
sd = torch.load(d + "/off.pt")
a = dict(sd); del a["final_layer.linear.bias"]; torch.save(a, d + "/missing.pt")
b = dict(sd); b["y_embedder.embedding_table.weight"] = torch.zeros(12, 128); torch.save(b, d + "/shape.pt")
PYEOF
expect_error "^uvit: error: $F/off.pt: tensor 'pos_embed' has shape \[1, 49, 128\], the config expects \[1, 51, 128\]; the file holds preset fmnist_dit_tiny's weights" \
  "$UVIT" train --config fmnist_uvit_tiny --init "$F/off.pt" --out "$F/x" --steps 1 --batch 2 --no-grid
expect_error "^uvit: error: $F/missing.pt: missing tensor 'final_layer.linear.bias' \[32\] (71 of 72 tensors present)$" \
  "$UVIT" "${T[@]}" --init "$F/missing.pt" --out "$F/x"
expect_error "^uvit: error: $F/shape.pt: tensor 'y_embedder.embedding_table.weight' has shape \[12, 128\], the config expects \[11, 128\]$" \
  "$UVIT" "${T[@]}" --init "$F/shape.pt" --out "$F/x"
expect_error "^uvit: error: --init $F/full.pth: the run in $F/full started from $F/off.pt; --resume continues from the run's own checkpoint" \
  "$UVIT" train --init "$F/full.pth" --out "$F/full" --resume --steps 3 --no-grid -q
[ ! -e "$F/x" ] || fail "a refused --init left a run folder"

# --- uvit info on every kind of file the tool writes or reads ---------------------------------------
info_says() {  # info_says FILE LINE: `uvit info FILE` prints LINE (after its `file` line)
  run "$UVIT" info "$1"
  grep -qxF -- "$2" "$tmp/out" || fail "info $1 said: $(cat "$tmp/out" "$tmp/err")"
}
# A run's optimizer state was "weights ... preset none of uvit info --presets has exactly these
# tensors".
info_says "$F/full/train_state.safetensors" "train_state   a training run's optimizer state (adamw, 1877408 parameters, step 2, config fmnist_dit_tiny), not weights: the run's weights are $F/full/nnet_ema.safetensors; uvit train --resume takes the run"
# A quantised file: "none of uvit info --presets has exactly these tensors (quantised: give --config
# C)"; convert --quantize now records the config.
run "$UVIT" convert "$F/full/nnet_ema.safetensors" "$F/q.safetensors" --quantize int8 -c "$F/full"
info_says "$F/q.safetensors" "preset        fmnist_dit_tiny (recorded when quantised): uvit sample --config fmnist_dit_tiny --weights $F/q.safetensors"
# FiT's latents: the official files were "weights 4 tensors ... preset none", their root and
# convert-fit-latents' folder "a folder, not a PNG file".
run "$PY" tests/reference/fit_data_twin.py write-latents "$tmp/off"
run "$UVIT" convert-fit-latents "$tmp/off/root" "$tmp/cv" -q
info_says "$tmp/off/root" "fit_latents   FiT's latent folders (from_16_to_256: 3 files, greater_than_256_crop: 1, greater_than_256_resize: 1, less_than_16: 1): uvit convert-fit-latents $tmp/off/root OUT makes a training folder of them (docs/fit.md)"
info_says "$tmp/off/root/from_16_to_256/n01_a.safetensors" "fit_latent    one of FiT's latent files (feature [2,4,6,16]): uvit convert-fit-latents ROOT OUT converts their folders (docs/fit.md)"
info_says "$tmp/cv" "npy_folder    8 .npy arrays (4 of them stored flips, .flip.npy), the first F32 [4,32,32]: train on it with --set dataset.name=npy_folder --set dataset.path=$tmp/cv (docs/data.md)"
# extract-features' output (the official features layout, pickled (moments, label) object arrays):
# the file was "unsupported .npy dtype '|O'", the folder "a folder, not a PNG file".
"$PY" tests/e2e/data/image_folder.py "$tmp/images" n00_0:64x64 n01_1:64x64 || fail "writing the images"
run "$UVIT" extract-features --data "$tmp/images" --weights "$C/sd.pth" --config "$C/sd.json" \
  --resolution 256 --out "$tmp/ef" -q
info_says "$tmp/ef" "features      4 feature files (moments F32 [8,32,32] and a label each): train on them with --set dataset.path=$tmp/ef and a *_features dataset (docs/data.md)"
info_says "$tmp/ef/0.npy" "features      moments F32 [8,32,32], label 0: one item of a features folder (uvit extract-features writes them; the *_features datasets read them, docs/data.md)"
# uvit eval's --json was "a JSON file, not a PNG file; uvit info --config eval.json describes a
# config" (it is not one), and so was an autoencoder config.
inception_weights I
"$PY" scripts/eval_fmnist.py --make-test-samples "$tmp/test.npy" --n 8 >/dev/null || fail "test samples"
run "$UVIT" fid-stats "$tmp/test.npy" --out "$tmp/test.npz" --inception "$I" -q
info_says "$tmp/test.npz" "arrays        mu, sigma, mu_s, sigma_s"
run "$UVIT" eval --config "$F/full" --weights "$F/full/nnet_ema.safetensors" --n 2 --sampler ddim \
  --steps 2 --seed 1 --ref "$tmp/test.npz" --inception "$I" --metrics fid --out "$tmp/ev.npz" --json "$tmp/ev.json" -q
m=$("$PY" -c "import json, sys; j = json.load(open(sys.argv[1])); print('fid %r, sfid %r' % (j['fid'], j['sfid']))" "$tmp/ev.json")
info_says "$tmp/ev.json" "eval          config fmnist_dit_tiny, 2 samples (ddim, 2 steps, seed 1): $m"
info_says "$tmp/ev.npz" "arrays        arr_0"
# Its chunks (OUT.parts) and their manifest, and a run's log.jsonl: "a folder" / "not a PNG file".
eline="eval_chunks   uvit eval's finished chunks (1 of 1) for config fmnist_dit_tiny, 2 samples (ddim, 2 steps, seed 1): the same uvit eval command resumes from them (docs/evaluation.md)"
info_says "$tmp/ev.npz.parts" "$eline"
info_says "$tmp/ev.npz.parts/manifest.json" "$eline"
info_says "$F/full/log.jsonl" "log           a training run's log (4 rows, the last train row at step 2, loss $(
  "$PY" -c "import json, sys; print([r for r in map(json.loads, open(sys.argv[1])) if r['event'] == 'train'][-1]['loss'])" "$F/full/log.jsonl"
), started from $F/off.pt): uvit info --config RUN describes the run (docs/cli.md \"log.jsonl\")"
expect_error "^uvit: error: $C/sd.json: an autoencoder config (ddconfig), not a PNG file; give it to --autoencoder-config$" \
  "$UVIT" info "$C/sd.json"
expect_error "^uvit: error: $F/full/config.json: a config, not a PNG file; uvit info --config $F/full/config.json describes it$" \
  "$UVIT" info "$F/full/config.json"
expect_error "^uvit: error: $F/full: a training run, not a PNG file; uvit info --config RUN describes its network$" \
  "$UVIT" info "$F/full"
# A file that is not safetensors said "bad safetensors header length 2336927755350992246".
expect_error "^uvit: error: $C/lfs.safetensors: not a safetensors file (its first 8 bytes, the header length, read 2336927755350992246; a header has at most 100 MiB); it is a Git LFS pointer, not the file: fetch the file itself (git lfs pull)$" \
  "$UVIT" info "$C/lfs.safetensors"
printf '<!DOCTYPE html><html></html>' >"$C/page.safetensors"
expect_error "^uvit: error: $C/page.safetensors: not a safetensors file (.*); it is an HTML or XML page (a download that saved a web page?)$" \
  "$UVIT" sample -c fmnist_uvit_tiny -w "$C/page.safetensors" --class 1 --out "$C/x.png"
exit $fails
