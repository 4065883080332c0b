#!/usr/bin/env bash
# Regressions from the tenth new-user audit (docs/ux_audit.md, "round 10"): each fix's check failed
# before it; the others keep what the audit found fine (--json outputs read by a script, long runs
# resumed and cut short, pre-extracted ImageNet features as users download them).
set -uo pipefail
UVIT=$(cd "$(dirname "$1")" && pwd)/$(basename "$1") FIX=${2:-}
PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh
T=(--threads 1)
tiny_run  # $tmp/run at step 1, $W its EMA weights
LAT=$'caf\xe9'  # a Latin-1 name (an old archive's), not UTF-8

# --- --json outputs read by a script (docs/cli.md, "JSON outputs") ---------------------------------
parses() {  # parses FILE WHAT PYEXPR: FILE is one JSON document (j) and PYEXPR holds for it
  "$PY" -c "import json, sys; j = json.load(open(sys.argv[1], encoding='utf-8')); assert $3, j" "$1" \
    && echo "ok: $2" || fail "$2: $(head -c 400 "$1")"
}
"$PY" -c "import numpy as np, sys; np.save(sys.argv[1], np.zeros((2, 3), np.float32))" "$tmp/$LAT.npy" ||
  fail "writing $LAT.npy"
# `info FILE --json` on a Latin-1 name stopped with "[json.exception.type_error.316] invalid UTF-8
# byte"; the text output printed it.
run "$UVIT" info "$tmp/$LAT.npy" --json
parses "$tmp/out" "info --json on a non-UTF-8 name" "j['file'] == 'caf\ufffd.npy' and j['shape'] == [2, 3]"
# A train_state's step was the string "1" (log.jsonl's steps are numbers).
run "$UVIT" info "$tmp/run/train_state.safetensors" --json
parses "$tmp/out" "info --json of a train_state: step a number" "j['step'] == 1 and j['kind'] == 'train_state'"
# Errors with --json are the usual one line on stderr, nothing on stdout (kept; documented).
expect_error "^uvit: error: $tmp/none.npy: cannot open" "$UVIT" info "$tmp/none.npy" --json
[ ! -s "$tmp/out" ] || fail "an error with --json wrote to stdout: $(cat "$tmp/out")"
# bench built its line by hand: a config file named with a quote wrote invalid JSON.
cp configs/fmnist_uvit_tiny.json "$tmp/my \"tiny\".json"
run "$UVIT" "${T[@]}" bench --config "$tmp/my \"tiny\".json" --iters 1 --warmup 0 --batch 2 -q \
  --json "$tmp/bench.jsonl"
parses "$tmp/out" "bench's line with a quote in the config name" \
  "j['config'] == 'my \"tiny\"' and j['batch'] == 2 and j['median_s'] > 0"
cmp -s "$tmp/out" "$tmp/bench.jsonl" || fail "bench --json file differs from stdout"
grep -q '"precision": "fp32"' "$tmp/out" || fail "bench's layout changed: $(cat "$tmp/out")"
# eval with a config file and --ref of Latin-1 names stopped before sampling (the chunk manifest),
# and its --json would have after the work; it runs, and the same command resumes from its chunks.
inception_weights I "$FIX"
"$PY" scripts/eval_fmnist.py --make-test-samples "$tmp/t.npy" --n 10 >/dev/null || fail "test samples"
run "$UVIT" "${T[@]}" fid-stats "$tmp/t.npy" --out "$tmp/$LAT.npz" --inception "$I" -q
cp configs/fmnist_uvit_tiny.json "$tmp/$LAT.json"
E=("$UVIT" "${T[@]}" eval --config "$tmp/$LAT.json" --weights "$W" --n 2 --steps 2 --sampler dpm-solver
  --seed 1 --ref "$tmp/$LAT.npz" --inception "$I" --metrics fid --out "$tmp/ev.npz" --json "$tmp/ev.json" -q)
run "${E[@]}"
parses "$tmp/ev.json" "eval --json with non-UTF-8 names" "j['config'] == 'caf\ufffd' and j['n'] == 2 and j['fid'] > 0"
run "${E[@]}"
parses "$tmp/ev.json" "the same eval resumes from its chunks" "j['resumed_chunks'] == 1"

# --- long runs: resumed, cut short, snapshots (docs/cli.md, "Resume" and "Long runs") -----------
R=$tmp/long
S=(--no-grid -q "${T[@]}")
run "$UVIT" train --config fmnist_uvit_tiny --out "$R" --steps 5 --batch 2 "${S[@]}" \
  --set train.save_interval=2 --set train.log_interval=2 --set lr_scheduler.warmup_steps=6
for s in 7 8 10; do run "$UVIT" train --out "$R" --resume --steps $s "${S[@]}"; done
# Resumed three times: every step's row once, steps in order, the warm-up continued.
"$PY" - "$R/log.jsonl" <<'PYEOF' && echo "ok: a run resumed three times logs each step once" || fail "log: $(cat "$R/log.jsonl")"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
lr = [(r["step"], r["lr"]) for r in rows if r["event"] == "train" and "lr" in r]
assert [s for s, _ in lr] == [2, 4, 6, 8, 10], lr
assert all(abs(l - 1e-3 * min(1.0, (s - 1) / 6)) < 1e-9 for s, l in lr), lr  # the warm-up goes on
ck = [r["path"] for r in rows if r["event"] == "checkpoint"]
assert ck == ["ckpts/2", "ckpts/4", ".", "ckpts/6", ".", "ckpts/8", ".", "ckpts/10", "."], ck
assert [r["step"] for r in rows if r["event"] == "start"] == [0, 5, 7, 8]
PYEOF
ls "$R/ckpts" | sort -n | tr '\n' ' ' | grep -qx "6 8 10 " || fail "keep_snapshots 3: $(ls "$R/ckpts")"
# --resume RUN/ckpts/STEP/ as a shell completes it: "no config.json beside it or in the run folder
# above ckpts/".
run "$UVIT" train --out "$tmp/fork" --resume "$R/ckpts/8/" --steps 9 "${S[@]}"
grep -q "at step 9" "$tmp/out" && echo "ok: --resume RUN/ckpts/STEP/ (a trailing slash)" || fail "$(cat "$tmp/out")"
# A run whose own train_state is gone and whose newest snapshot was cut short: the refusal names
# the newest complete snapshot, which resumes.
cp -r "$R" "$tmp/cut"
rm "$tmp/cut/train_state.safetensors" "$tmp/cut/ckpts/10/train_state.safetensors"
expect_error "^uvit: error: $tmp/cut: nothing to resume (no train_state.safetensors; its newest complete snapshot is $tmp/cut/ckpts/8: --resume $tmp/cut/ckpts/8)$" \
  "$UVIT" train --out "$tmp/cut" --resume --steps 11 "${S[@]}"
expect_error "^uvit: error: --resume $tmp/cut/ckpts/10: holds no checkpoint (no train_state.safetensors: a snapshot whose save did not finish; its newest complete snapshot is $tmp/cut/ckpts/8: --resume $tmp/cut/ckpts/8)$" \
  "$UVIT" train --out "$tmp/cut" --resume "$tmp/cut/ckpts/10" --steps 11 "${S[@]}"
run "$UVIT" train --out "$tmp/cut" --resume "$tmp/cut/ckpts/8" --steps 9 "${S[@]}"
# FOR THE LEAD (the fix is in src/train/trainer.cpp, helper tidy3's; docs/ux_audit.md "Found in
# round 10"): a save that fails (a full disk; here a file-size limit on train_state, 12 MB, above the
# weights' 6 MB) left the new weights beside the previous train_state, and no snapshot to go back
# to: every --resume then says "from different steps (an interrupted save?); restore from a
# snapshot in ckpts/". The previous checkpoint must stay whole, so that --resume continues from it.
run "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/full" --steps 2 --batch 2 "${S[@]}"
expect_error "train_state.safetensors: write error: File too large" \
  bash -c 'ulimit -f 8192; trap "" XFSZ; exec "$@"' - "$UVIT" train --out "$tmp/full" --resume --steps 4 "${S[@]}"
"$UVIT" train --out "$tmp/full" --resume --steps 4 "${S[@]}" >"$tmp/out" 2>"$tmp/err" \
  && echo "ok: a save cut short by a full disk keeps the previous checkpoint" \
  || fail "(for the lead: src/train) after a failed save, --resume: $(cat "$tmp/err")"

# --- pre-extracted ImageNet features as users download them (docs/data.md, "Latent features") ----
"$PY" - "$tmp/feat" <<'PYEOF' || fail "writing the features"
import json, os, sys
import numpy as np
root = sys.argv[1]
rs = np.random.RandomState(0)
def folder(name, dtype=np.float32, label=lambda i: i, nan_in=None):
    os.makedirs(f"{root}/{name}")
    for i in range(4):
        m = rs.randn(8, 32, 32).astype(dtype)
        if i == nan_in:
            m[1, 2, 3] = np.nan
        np.save(f"{root}/{name}/{i}.npy", np.array([m, label(i)], dtype=object), allow_pickle=True)
folder("f16", np.float16)
folder("f64", np.float64)
folder("i16", np.int16)
folder("nan", nan_in=2)
folder("null_label", label=lambda i: 1000)
os.makedirs(f"{root}/empty")
c = json.load(open("configs/dit_s_2.json"))
c["name"], c["autoencoder"] = "feat_tiny", {}
c["nnet"].update(hidden_size=32, depth=1, num_heads=2)
json.dump(c, open(f"{root}/tiny.json", "w"))
PYEOF
F=$tmp/feat
feat_train() {  # feat_train FOLDER: two steps of a shrunk DiT-S/2 on it into a new $tmp/fr
  rm -rf "$tmp/fr"
  "$UVIT" "${T[@]}" train --config "$F/tiny.json" --data "$F/$1" --out "$tmp/fr" --steps 2 --batch 4 \
    --no-grid -q
}
for d in f16 f64; do
  run feat_train $d
  grep -q "at step 2" "$tmp/out" && echo "ok: $d moments train" || fail "$d: $(cat "$tmp/out")"
done
# Integer moments trained as raw counts without a word; a NaN ended in "training diverged at step 1
# (loss -nan)" naming no file; a label of 1000 (the null class) failed only when drawn, after the
# run folder was made.
expect_error "^uvit: error: $F/i16/0.npy: moments are a I16 array; feature files hold an encoder's float output" feat_train i16
[ ! -e "$tmp/fr" ] || fail "integer moments left a run folder"
expect_error "^uvit: error: $F/nan/2.npy: holds nan at flat index 1091; every value must be finite; checkpoint written at step 0 (continue with --resume once the data is fixed)$" feat_train nan
expect_error "^uvit: error: $F/null_label/0.npy: label 1000 outside 0..999 (ImageNet's classes; 1000 is the null class, never stored)$" \
  feat_train null_label
[ ! -e "$tmp/fr" ] || fail "a label out of range left a run folder"
expect_error "^uvit: error: $F/empty: no feature files {idx}.npy found" feat_train empty
run "$UVIT" info "$F/f16/0.npy" --json
parses "$tmp/out" "info --json of a feature file names its dtype" "j['dtype'] == 'F16' and j['moments'] == [8, 32, 32]"
run "$UVIT" info "$F/f64" --json
parses "$tmp/out" "info --json of a features folder names its dtype" "j['dtype'] == 'F64' and j['files'] == 4"
# A Latin-1 --data: "[json.exception.type_error.316] incomplete UTF-8 string" once the network was
# built (config.json records the path); refused up front, naming it.
cp -r "$F/f16" "$F/$LAT"
rm -rf "$tmp/fr"
expect_error "^uvit: error: --data $F/$LAT: not UTF-8 text, and the run records it in config.json" feat_train "$LAT"
[ ! -e "$tmp/fr" ] || fail "a non-UTF-8 --data left a run folder"

# --- integer settings beyond an int (docs/ux_audit.md, fixed after round 10) ----------------------
# keep_snapshots, accum, dp_virtual and zero were read into an int that wrapped: 10^12 was refused
# as "must be >= 1".
expect_error "^uvit: error: config fmnist_uvit_tiny: train.keep_snapshots: 1000000000000 is out of range" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/ks" --steps 1 --batch 2 -q --no-grid \
  --set train.keep_snapshots=1000000000000
expect_error "^uvit: error: config fmnist_uvit_tiny: train.accum: 4294967297 is out of range" \
  "$UVIT" train --config fmnist_uvit_tiny --out "$tmp/ks" --steps 1 --batch 2 -q --no-grid \
  --set train.accum=4294967297

exit $fails
