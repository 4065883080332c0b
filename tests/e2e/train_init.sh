#!/usr/bin/env bash
# `uvit train --init W` (docs/cli.md "Fine-tuning"): the run starts from W (our own .safetensors, or
# the same values in an official-layout .pth) at step 0, records W and its SHA-256 in config.json
# and log.jsonl, resumes bit-identically, takes --init again on --resume only for the same file,
# and refuses a fork, a missing file, another network's weights and quantised weights in one line.
# train.finetune partial with train.ignore_keys: the other tensors stay W's bit for bit.
set -uo pipefail
UVIT=$1 FX=$2 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json" train.log_interval=1
T=(train --config "$tmp/tiny.json" --batch 8 --no-grid -q)
# W: the EMA of a 3-step run with another seed.
run "$UVIT" "${T[@]}" --out "$tmp/w" --steps 3 --seed 11
W=$tmp/w/nnet_ema.safetensors

# tensors A B [SKIP]: the tensors of two safetensors files, {name: bytes} (SKIP: names holding it
# are left out); prints "same" or the names that differ.
cat >"$tmp/tensors.py" <<'PYEOF'
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
skip = sys.argv[3] if len(sys.argv) > 3 else None
assert a.keys() == b.keys(), (sorted(a), sorted(b))
diff = [k for k in a if (skip is None or skip not in k) and a[k] != b[k]]
print("same" if not diff else " ".join(diff))
PYEOF
same_tensors() {  # same_tensors A B WHAT [SKIP]
  local r; r=$("$PY" "$tmp/tensors.py" "$1" "$2" ${4:+"$4"})
  [ "$r" = same ] && echo "ok: $3" || fail "$3: tensors differ: $r"
}

# Step 0 of a fine-tune is W itself, in the network and in its EMA.
run "$UVIT" "${T[@]}" --out "$tmp/z" --steps 0 --init "$W"
same_tensors "$tmp/z/nnet.safetensors" "$W" "--init: the network at step 0 is W"
same_tensors "$tmp/z/nnet_ema.safetensors" "$W" "--init: the EMA at step 0 is W"

run "$UVIT" "${T[@]}" --out "$tmp/a" --steps 4 --init "$W"
cmp -s "$tmp/a/nnet.safetensors" "$tmp/w/nnet.safetensors" && fail "the fine-tune did not train"
"$PY" - "$tmp/a" "$W" "$(sha256sum "$W" | cut -d' ' -f1)" <<'PYEOF' || fail "the run's record of W"
import json, os, sys
run, w, sha = sys.argv[1:4]
t = json.load(open(run + "/config.json"))["train"]
assert t["init_weights"] == os.path.realpath(w), t
assert t["init_weights_sha256"] == sha, t
rows = [json.loads(l) for l in open(run + "/log.jsonl")]
assert rows[0]["event"] == "init" and rows[0]["step"] == 0, rows[0]
assert rows[0]["path"] == os.path.realpath(w) and rows[0]["sha256"] == sha, rows[0]
assert sum(r["event"] == "init" for r in rows) == 1, rows
print("ok: config.json and log.jsonl record W and its SHA-256")
PYEOF

# The same values in an official-layout .pth (DiT's train.py checkpoint: "ema" is read, not
# "model") train the same bits; a relative path is recorded absolute.
"$PY" - "$W" "$tmp/w.pth" <<'PYEOF' || fail "writing the .pth"
import json, struct, sys
import numpy as np, torch
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
sd = {k: torch.from_numpy(np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
                                        np.float32).reshape(v["shape"]).copy()) for k, v in h.items()}
torch.save({"model": {k: v * 0 for k, v in sd.items()}, "ema": sd, "args": None}, sys.argv[2])
PYEOF
(cd "$tmp" && "$UVIT" "${T[@]}" --out "$tmp/p" --steps 4 --init w.pth >/dev/null) || fail "--init w.pth"
same_weights "$tmp/p" "$tmp/a" "--init W.pth (official layout) vs --init W.safetensors"
grep -q "\"init_weights\": \"$tmp/w.pth\"" "$tmp/p/config.json" || fail "relative --init not absolute"

# Resume: 2 steps, then --resume with the same --init (the re-run command) to 3, then to 4.
run "$UVIT" "${T[@]}" --out "$tmp/r" --steps 2 --init "$W"
run "$UVIT" "${T[@]}" --out "$tmp/r" --steps 3 --init "$W" --resume
run "$UVIT" train --out "$tmp/r" --resume --steps 4 -q --no-grid
same_files "$tmp/r" "$tmp/a" "--init run resumed twice vs straight"
[ "$(grep -c '"event":"init"' "$tmp/r/log.jsonl")" -eq 1 ] || fail "resume repeated the init row"

# Refusals, each one line; none leaves a folder behind.
expect_error "started from $W" "$UVIT" "${T[@]}" --out "$tmp/r" --steps 5 --resume \
  --init "$tmp/w.pth"
expect_error "started from the seed's initialisation" "$UVIT" train --out "$tmp/w" --resume \
  --steps 5 --init "$W" -q
expect_error "forks another run" "$UVIT" train --out "$tmp/f" --resume "$tmp/a" \
  --steps 5 --init "$W" -q
expect_error "--set train.init_weights" "$UVIT" train --out "$tmp/r" --resume --steps 5 -q \
  --set "train.init_weights=$tmp/w.pth"
expect_error "nope.safetensors: no such file" "$UVIT" "${T[@]}" --out "$tmp/e1" --steps 1 \
  --init "$tmp/nope.safetensors"
expect_error "dit_p2.pth: .*tensor '" "$UVIT" "${T[@]}" --out "$tmp/e2" --steps 1 \
  --init "$FX/dit_p2.pth"
run "$UVIT" convert "$W" "$tmp/w8.safetensors" --config "$tmp/tiny.json" --quantize int8
expect_error "quantised" "$UVIT" "${T[@]}" --out "$tmp/e3" --steps 1 --init "$tmp/w8.safetensors"
for d in e1 e2 e3 f; do [ -e "$tmp/$d" ] && fail "a refused run left $tmp/$d"; done

# FiT's finetune: partial (docs/fit.md "Fine-tuning"): ignore_keys ["bias"] re-initialises the
# biases from the seed and trains only them; every other tensor stays W's.
P=(--set train.finetune=partial --set 'train.ignore_keys=["bias"]')
run "$UVIT" "${T[@]}" --out "$tmp/pa" --steps 3 --init "$W" "${P[@]}"
same_tensors "$tmp/pa/nnet.safetensors" "$W" "partial: the frozen tensors are W's" bias
"$PY" "$tmp/tensors.py" "$tmp/pa/nnet.safetensors" "$W" | grep -q bias ||
  fail "partial: no bias was trained"
run "$UVIT" "${T[@]}" --out "$tmp/pr" --steps 1 --init "$W" "${P[@]}"
run "$UVIT" train --out "$tmp/pr" --resume --steps 3 -q --no-grid
same_files "$tmp/pr" "$tmp/pa" "partial fine-tune resumed vs straight"
expect_error "'nobias' is part of no parameter name" "$UVIT" "${T[@]}" --out "$tmp/e4" \
  --steps 1 --init "$W" --set train.finetune=partial --set 'train.ignore_keys=["nobias"]'
exit $fails
