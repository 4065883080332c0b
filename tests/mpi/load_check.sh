#!/usr/bin/env bash
# Every rank reads its files itself (docs/distributed.md "Sampling and evaluation", "Checkpoints and
# resume"): when one path names different files on different nodes, the ranks compare a hash of
# what they loaded and stop, rank 0 printing one line that names the file and the rank. Rank r runs
# in $tmp/nR (a node-local folder), so a relative path names rank r's own copy.
set -uo pipefail
source tests/mpi/lib.bash
fid_setup 2 8
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/a" --steps 2 --no-grid -q
run "$UVIT" train --config "$tmp/tiny.json" --out "$tmp/b" --steps 2 --no-grid -q --seed 5
# The same Inception but for one weight: Conv2d_1a_3x3.conv.weight[0,0,0,0] + 1.
"$PY" - "$W" "$tmp/inception_other.pth" <<'PYEOF' || fail "writing the other Inception"
import sys, torch
sd = torch.load(sys.argv[1])
k = "Conv2d_1a_3x3.conv.weight"
sd[k] = sd[k].clone()
sd[k].view(-1)[0] += 1
torch.save(sd, sys.argv[2])
PYEOF
cat >"$tmp/node.sh" <<EOF
#!/bin/sh
cd "$tmp/n\${OMPI_COMM_WORLD_RANK:-\${PMI_RANK:-0}}" && exec "$UVIT" "\$@"
EOF
chmod +x "$tmp/node.sh"
mkdir -p "$tmp/n0" "$tmp/n1"
# node FILE0 FILE1 NAME: rank 0's copy of NAME is FILE0, rank 1's FILE1.
node() { cp -r "$1" "$tmp/n0/$3" && cp -r "$2" "$tmp/n1/$3"; }
# refused NEEDLE ARGS...: on 2 ranks, one error line from rank 0 naming NEEDLE and what rank 1
# read (OTHER: "other weights" unless set).
refused() {
  one_error_line "$1: rank 1 read ${OTHER:-other weights} from it than rank 0: under mpirun every \
rank reads the file itself" "$tmp/node.sh" "${@:2}"
}
NA=$tmp/a/nnet_ema.safetensors NB=$tmp/b/nnet_ema.safetensors
S=(sample --config "$tmp/tiny.json" --weights w.safetensors --n 8 --classes all -q)

# The same file on both nodes: the ranks agree (the relative path reaches each rank's copy).
node "$NA" "$NA" w.safetensors
run timeout -k 10 300 "$MPIRUN" -np 2 "$tmp/node.sh" "${S[@]}" --npy "$tmp/same.npy"
[ -f "$tmp/same.npy" ] && echo "ok: sample with the same weights on both nodes" || fail "no samples"

# Rank 1's copy is another model: nothing is written.
node "$NA" "$NB" w.safetensors
refused "--weights w.safetensors" "${S[@]}" --npy "$tmp/mixed.npy"
[ ! -e "$tmp/mixed.npy" ] && echo "ok: no samples written" || fail "sample wrote $tmp/mixed.npy"

node "$W" "$W" inception.pth
E=(eval --config "$tmp/tiny.json" --weights w.safetensors --n 4 --chunk 2 --ref "$tmp/st.npz"
  --inception inception.pth --metrics fid -q --out "$tmp/e.npz")
refused "--weights w.safetensors" "${E[@]}"
node "$NA" "$NA" w.safetensors
node "$W" "$tmp/inception_other.pth" inception.pth
refused "the FID Inception weights inception.pth" "${E[@]}"
[ ! -e "$tmp/e.npz" ] && echo "ok: eval wrote no samples" || fail "eval wrote $tmp/e.npz"
refused "the FID Inception weights inception.pth" fid-features "$tmp/imgs.npy" \
  --inception inception.pth --out "$tmp/f.npy" -q
[ ! -e "$tmp/f.npy" ] && echo "ok: fid-features wrote nothing" || fail "fid-features wrote $tmp/f.npy"
# Rank 0 writes eval's work-folder manifest, and each other rank checks its settings against it
# (docs/distributed.md); each step is decided together: one line from rank 0 (before, a refusal
# on one rank ended the job with MPI_Abort's lines, and rank 0's "interrupted: ..." when not rank
# 0's).
# A relative --out from each rank's own folder: two work folders, and rank 1 finds no manifest (it
# was "holds chunks of a different run (cfg_scale (none) -> 1.0, ...); ... or delete e.npz.parts").
node "$W" "$W" inception.pth
one_error_line "rank 1: e.npz.parts/manifest.json: rank 0 wrote it, but this rank cannot open it (No such file or directory): under mpirun every rank must reach the same e.npz.parts folder, on a filesystem every node sees" \
  "$tmp/node.sh" eval --config "$tmp/tiny.json" --weights w.safetensors --n 4 --chunk 2 \
  --ref "$tmp/st.npz" --inception inception.pth --metrics fid -q --out e.npz
# Rank 1 given another --seed (which no file check sees): its option, not another run, named as
# such (it was "... of a different run (seed 0 -> 1); give each model its own --out ..., or delete ...").
printf '#!/bin/sh\nexec "%s" "$@" --seed "${OMPI_COMM_WORLD_RANK:-${PMI_RANK:-0}}"\n' "$UVIT" >"$tmp/seed.sh"
chmod +x "$tmp/seed.sh"
one_error_line "rank 1: $tmp/s.npz.parts/manifest.json: this rank was given other settings than rank 0, which recorded its own there (seed 0 -> 1); under mpirun every rank must be given the same options" \
  "$tmp/seed.sh" eval --config "$tmp/tiny.json" --weights "$NA" --n 4 --chunk 2 --ref "$tmp/st.npz" \
  --inception "$W" --metrics fid -q --out "$tmp/s.npz"
[ ! -e "$tmp/s.npz" ] && echo "ok: eval wrote no samples" || fail "eval wrote $tmp/s.npz"
# Every rank given --seed 5 on that folder (rank 0 recorded seed 0): rank 0's refusal, one line.
one_error_line "$tmp/s.npz.parts: holds chunks of a different run (seed 0 -> 5); give each model its own --out" \
  "$UVIT" eval --config "$tmp/tiny.json" --weights "$NA" --n 4 --chunk 2 --ref "$tmp/st.npz" \
  --inception "$W" --metrics fid -q --out "$tmp/s.npz" --seed 5
# The config and --noise, read by every rank too: rank 1's config samples in 3 steps, not 2; rank
# 1's initial noise is other draws (the weights are alike here).
"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny3.json" sample.sample_steps=3 sample.mini_batch_size=4
node "$tmp/tiny.json" "$tmp/tiny3.json" c.json
OTHER="other settings" refused "--config c.json" sample --config c.json --weights w.safetensors \
  --n 8 --classes all -q --npy "$tmp/mixed.npy"
"$PY" -c "
import numpy as np, sys
for i, f in enumerate(sys.argv[1:]):
    np.save(f, np.random.RandomState(i).randn(8, 1, 28, 28).astype(np.float32))" \
  "$tmp/noise0.npy" "$tmp/noise1.npy" || fail "writing the noise"
node "$tmp/noise0.npy" "$tmp/noise1.npy" noise.npy
OTHER="other bytes" refused "--noise noise.npy" "${S[@]}" --noise noise.npy --npy "$tmp/mixed.npy"
[ ! -e "$tmp/mixed.npy" ] && echo "ok: no samples written" || fail "sample wrote $tmp/mixed.npy"

# train --init: refused before the first step and before the run's folder is made.
node "$NA" "$NB" w.safetensors
T=(train --config "$tmp/tiny.json" --no-grid -q --steps 3)
refused "--init w.safetensors" "${T[@]}" --init w.safetensors --out "$tmp/ft"
[ ! -e "$tmp/ft" ] && echo "ok: --init refused before the run's folder" || fail "$tmp/ft was made"
# The same weights named by the config, not by --init: the line names the setting.
refused "train.init_weights w.safetensors" "${T[@]}" --set train.init_weights=w.safetensors \
  --out "$tmp/ft"
# --resume: each rank's run folder holds another run's checkpoint (with the same settings: settings
# that differ are refused first, tests/mpi/train_config_check.sh); the run is left as it was.
node "$tmp/a" "$tmp/b" run
cp "$tmp/a/config.json" "$tmp/n1/run/config.json"
refused "--resume run" train --out run --resume --steps 3 --no-grid -q
cmp -s "$tmp/n0/run/nnet.safetensors" "$tmp/a/nnet.safetensors" &&
  ! grep -q '"step":3' "$tmp/n0/run/log.jsonl" && echo "ok: --resume refused before the first step" ||
  fail "--resume trained on: $(tail -2 "$tmp/n0/run/log.jsonl")"

# A text-to-image latent model (tests/e2e/data/tiny_t2i.sh): rank 1's CLIP text encoder, vocabulary
# or latent statistics differ; each is refused before sampling, nothing written. Every other file
# is named by its absolute path (the same on both ranks).
source tests/e2e/data/tiny_t2i.sh
"$PY" tests/reference/clip_torch.py weights --config "$T2I/clip.json" --dtype f16 --seed 4 \
  --out "$T2I/clip_other.safetensors" >/dev/null || fail "writing the other CLIP"
V=data/clip/bpe_simple_vocab_16e6.txt.gz
# The same merges list but for the order of its first two merges (their ranks swap).
"$PY" - "$V" "$tmp/vocab_other.txt.gz" <<'PYEOF' || fail "writing the other vocabulary"
import gzip, sys
lines = gzip.open(sys.argv[1], "rt", encoding="utf-8").read().split("\n")
lines[1], lines[2] = lines[2], lines[1]
gzip.open(sys.argv[2], "wt", encoding="utf-8").write("\n".join(lines))
PYEOF
"$PY" - "$tmp" <<'PYEOF' || fail "writing the latent stats"
import sys, torch
for name, std in (("stats", 1.0), ("stats_other", 2.0)):
    torch.save({"mean": torch.zeros(1, 4, 1, 1), "std": torch.full((1, 4, 1, 1), std)},
               f"{sys.argv[1]}/{name}.pth")
PYEOF
node "$T2I/clip.safetensors" "$T2I/clip.safetensors" clip.safetensors
node "$V" "$V" vocab.txt.gz
node "$tmp/stats.pth" "$tmp/stats.pth" stats.pth
P=(sample "${T2I_CONFIG[@]}" --weights "$T2I/run/nnet_ema.safetensors" --autoencoder "$T2I/ae.pth"
  --autoencoder-config "$T2I/ae.json" --clip clip.safetensors --clip-config "$T2I/clip.json"
  --vocab vocab.txt.gz --latent-stats stats.pth --prompt "a red bus" --n 2 --batch 2 -q)
node "$tmp/stats.pth" "$tmp/stats_other.pth" stats.pth
OTHER="other bytes" refused "--latent-stats stats.pth" "${P[@]}" --npy "$tmp/t.npy"
node "$tmp/stats.pth" "$tmp/stats.pth" stats.pth
node "$T2I/clip.safetensors" "$T2I/clip_other.safetensors" clip.safetensors
refused "--clip clip.safetensors" "${P[@]}" --npy "$tmp/t.npy"
node "$T2I/clip.safetensors" "$T2I/clip.safetensors" clip.safetensors
node "$V" "$tmp/vocab_other.txt.gz" vocab.txt.gz
OTHER="another vocabulary" refused "--vocab vocab.txt.gz" "${P[@]}" --npy "$tmp/t.npy"
node "$V" "$V" vocab.txt.gz
# --prompts and --context: rank 1's file holds another second prompt, other contexts.
printf 'a red bus\ntwo dogs\n' >"$tmp/p0.txt" && printf 'a red bus\na green train\n' >"$tmp/p1.txt"
node "$tmp/p0.txt" "$tmp/p1.txt" prompts.txt
OTHER="other bytes" refused "--prompts prompts.txt" "${P[@]}" --prompts prompts.txt --npy "$tmp/t.npy"
"$PY" -c "
import numpy as np, sys
c = np.load(sys.argv[1]); np.save(sys.argv[2], c[:2]); np.save(sys.argv[3], c[2:4])
np.save(sys.argv[4], c[8])" \
  "$T2I/caps.npy" "$tmp/ctx0.npy" "$tmp/ctx1.npy" "$tmp/null.npy" || fail "writing the contexts"
C=(sample "${T2I_CONFIG[@]}" --weights "$T2I/run/nnet_ema.safetensors" --autoencoder "$T2I/ae.pth"
  --autoencoder-config "$T2I/ae.json" --latent-stats stats.pth --context ctx.npy
  --null-context "$tmp/null.npy" --n 2 --batch 2 -q)
node "$tmp/ctx0.npy" "$tmp/ctx0.npy" ctx.npy
run timeout -k 10 300 "$MPIRUN" -np 2 "$tmp/node.sh" "${C[@]}" --npy "$tmp/same_ctx.npy"
[ -f "$tmp/same_ctx.npy" ] && echo "ok: sample with the same --context on both nodes" ||
  fail "no samples from the same --context"
node "$tmp/ctx0.npy" "$tmp/ctx1.npy" ctx.npy
OTHER="other bytes" refused "--context ctx.npy" "${C[@]}" --npy "$tmp/t.npy"
[ ! -e "$tmp/t.npy" ] && echo "ok: text-to-image sample wrote nothing" || fail "sample wrote $tmp/t.npy"

# eval on a tiny pixel-space text-to-image U-ViT (as tests/e2e/clip_score_cli.sh): rank 1's CLIP
# (both towers: the image tower scores the samples) differs in one vision weight: refused.
if "$PY" -c "import PIL" 2>/dev/null; then
  fx=$tmp/clipfx
  "$PY" tests/reference/clip_vision_torch.py fixtures --vocab "$V" --out "$fx" >/dev/null ||
    fail "CLIP fixtures"
  "$PY" - "$fx/clip_small.bin" "$tmp/clip_other.bin" <<'PYEOF' || fail "writing the other CLIP"
import sys, torch
sd = torch.load(sys.argv[1])
k = next(k for k in sd if "vision_model" in k and k.endswith("weight") and sd[k].dim() == 2)
sd[k] = sd[k].clone()
sd[k].view(-1)[0] += 1
torch.save(sd, sys.argv[2])
PYEOF
  "$PY" tests/e2e/data/tiny_config.py "$tmp/t2i_px.json" 'nnet={"name": "uvit_t2i", "img_size": 16,
    "patch_size": 4, "in_chans": 3, "embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0,
    "qkv_bias": false, "qk_scale": null, "mlp_time_embed": false, "clip_dim": 64,
    "num_clip_token": 77, "use_checkpoint": false, "conv": false, "skip": true}'
  "$PY" - "$tmp/t2i_px.json" "$tmp/t2i_px.safetensors" <<'PYEOF' || fail "t2i weights"
import json, sys, torch
sys.path.insert(0, "tests/reference")
import clip_torch, uvit_torch
torch.manual_seed(0)
net = uvit_torch.build_from_config(json.load(open(sys.argv[1]))["nnet"])
clip_torch.write_safetensors(sys.argv[2], {k: v.numpy() for k, v in net.state_dict().items()})
PYEOF
  TE=(eval --config "$tmp/t2i_px.json" --weights "$tmp/t2i_px.safetensors" --clip-config
    "$fx/clip_small.json" --vocab vocab.txt.gz --prompts p.txt --n 4 --chunk 2 --steps 2
    --inception "$W" --ref "$tmp/st.npz" --metrics fid -q)
  # Each rank's own copy of the same CLIP and prompts, by a relative path: other absolute paths,
  # the same content. The work folder records rank 0's paths; rank 1 checks its files by content
  # (it was refused as "a different run" when the manifest compared their paths).
  node "$fx/prompts.txt" "$fx/prompts.txt" p.txt
  node "$fx/clip_small.bin" "$fx/clip_small.bin" clip.bin
  run timeout -k 10 300 "$MPIRUN" -np 2 "$tmp/node.sh" "${TE[@]}" --clip clip.bin --out "$tmp/te_same.npz"
  grep -q "^CLIPScore: " "$tmp/out" && grep -q "\"clip\": \"$tmp/n0/clip.bin\"" "$tmp/te_same.npz.parts/manifest.json" &&
    echo "ok: text-to-image eval with the same CLIP and prompts on both nodes, by relative paths" ||
    fail "text-to-image eval with the same CLIP: $(cat "$tmp/out" "$tmp/err")"
  node "$fx/clip_small.bin" "$tmp/clip_other.bin" clip.bin
  refused "--clip clip.bin" "${TE[@]}" --clip clip.bin --out "$tmp/te.npz"
  [ ! -e "$tmp/te.npz" ] && echo "ok: text-to-image eval wrote no samples" || fail "eval wrote $tmp/te.npz"
else
  echo "skip: text-to-image eval (no PIL for the CLIP fixtures)"
fi
exit $fails
