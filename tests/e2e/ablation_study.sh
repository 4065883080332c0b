#!/usr/bin/env bash
# scripts/ablation_study.sh end to end at toy size: 2 variants x 1 seed, 3 steps, 20 samples; the
# table (markdown, CSV, JSON) and the plot are written and parse, a rerun resumes without
# retraining, bad arguments are errors.
set -uo pipefail
UVIT=$1 PY=${PYTHON:-/usr/bin/python3}
source tests/e2e/data/lib.sh

"$PY" tests/e2e/data/tiny_config.py "$tmp/tiny.json"
study=(scripts/ablation_study.sh --configs "$tmp/tiny.json" --vary skip_mode=concat_linear,none
       --seeds 1 --steps 3 --batch 4 --n 20 --sample-steps 2 --out "$tmp/study" --uvit "$UVIT")
run "${study[@]}"
"$PY" - "$tmp/study" <<'PYEOF' || fails=$((fails+1))
import csv, json, math, struct, sys
d = sys.argv[1]
bad = 0
def check(cond, msg):
    global bad
    if not cond:
        print("FAIL: " + msg); bad += 1
rows = list(csv.DictReader(open(d + "/table.csv")))
check([r["label"] for r in rows] == ["skip_mode=concat_linear", "skip_mode=none"], "csv labels %s" % rows)
for r in rows:
    check(r["seeds"] == "1", "seeds %s" % r["seeds"])
    check(math.isfinite(float(r["fd_cls"])) and float(r["fd_cls"]) > 0, "fd %s" % r["fd_cls"])
    check(0 <= float(r["accuracy"]) <= 1, "accuracy %s" % r["accuracy"])
    check(float(r["gflop"]) > 0 and int(r["params"]) > 0, "params/gflop %s" % r)
# no long skip drops the skip_linear weights: fewer parameters
check(int(rows[1]["params"]) < int(rows[0]["params"]), "skip=false has as many parameters")
res = json.load(open(d + "/results.json"))
check(len(res["runs"]) == 2 and not res["failures"], "results.json runs %s" % res)
md = open(d + "/table.md").read().splitlines()
check(sum(1 for l in md if l.startswith("| skip_mode |")) == 2, "table.md rows:\n" + "\n".join(md))
# One seed: no sample sd (not "± 0.00"), an empty CSV cell, null in the JSON.
check(not any("±" in l for l in md if l.startswith("| skip_mode |")), "one seed with a ±:\n" + "\n".join(md))
check(all(r["fd_cls_sd"] == "" and r["final_loss_sd"] == "" for r in rows), "csv sd of one seed %s" % rows)
check(all(t["fd_cls_sd"] is None for t in res["rows"]), "json sd of one seed %s" % res["rows"])
png = open(d + "/plot.png", "rb").read()
check(png[:8] == b"\x89PNG\r\n\x1a\n", "plot.png is not a PNG")
w, h = struct.unpack(">II", png[16:24])
check(w > 300 and h > 100, "plot.png is %dx%d" % (w, h))
print("ok: table, results and plot written and parse" if not bad else "")
sys.exit(bad)
PYEOF

# A rerun finds every result and retrains nothing.
before=$(stat -c %Y "$tmp"/study/runs/tiny/*/seed1/nnet.safetensors | sort | tr '\n' ' ')
run "${study[@]}"
after=$(stat -c %Y "$tmp"/study/runs/tiny/*/seed1/nnet.safetensors | sort | tr '\n' ' ')
[ "$before" = "$after" ] && echo "ok: rerun resumes" || fail "rerun retrained ($before / $after)"

out=$(scripts/ablation_study.sh --configs "$tmp/tiny.json" --vary skip_mode --steps 1 --out "$tmp/x" \
      --uvit "$UVIT" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q "expected FIELD=V1,V2" <<<"$out" && echo "ok: bad --vary" || fail "bad --vary: $rc $out"
out=$(scripts/ablation_study.sh --configs "$tmp/tiny.json" --vary time_cond=film --seeds 1 --steps 1 \
      --n 4 --out "$tmp/y" --uvit "$UVIT" 2>&1); rc=$?
[ $rc -eq 2 ] && grep -q 'nnet.time_cond "film" is not one of: token, adaln' "$tmp"/y/runs/tiny/*/seed1.log \
  && echo "ok: a failing run is reported" || fail "failing run: $rc $out"
exit $fails
