#!/usr/bin/python3
"""Ablation study driver (issue 18; docs/ablations.md): trains every variant of one or more presets
for the same steps with the same seeds (hence the same data order, noise and times), samples N
class-balanced images from each run's EMA weights with the preset's sampler, scores them with the
project's Fashion-MNIST classifier metrics (scripts/eval_fmnist.py: FD_cls and accuracy,
docs/quality.md) and writes a table (markdown, CSV, JSON: mean +- sd over seeds, parameters, forward
GFLOP, wall time) and a PNG plot.

  scripts/ablation_study.sh --configs fmnist_uvit_tiny --vary skip_mode=concat_linear,add,none \\
      --seeds 3 --steps 2000 --n 1000 --out runs/study

Rows: with no --vary, one per preset of --configs (backbone comparison); each --vary FIELD=V1,V2,...
adds one row per value to every preset (one field changed at a time). FIELD is a dotted config key
(`train.batch_size`) or a bare nnet field (`depth` = `nnet.depth`); `skip_mode=none` stands for
`nnet.skip=false` and `conv_position=none` for `nnet.conv=false`. A value may set several fields
at once, joined with '+': `--vary size=depth=4+embed_dim=96,depth=8+embed_dim=160` (the label is the
part after `size=`). Identical (preset, overrides) rows share their runs. Runs are resumable: a run
whose result.json exists is not redone, so rerunning the same command after an interruption
continues where it stopped.

Layout: OUT/runs/PRESET/LABEL/seedS/{config.json, nnet_ema.safetensors, samples.npy, eval.json,
result.json}, OUT/results.json, OUT/table.md, OUT/table.csv, OUT/plot.png.
"""
import argparse
import csv
import io
import json
import math
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALIASES = {("skip_mode", "none"): ("nnet.skip", "false"), ("conv_position", "none"): ("nnet.conv", "false")}
# U-ViT's official ablation choices (docs/configs.md): setting one is a no-op for a preset that does
# not set the field, so such rows share the preset's runs.
OFFICIAL = {"nnet.skip_mode": "concat_linear", "nnet.pos_embed": "learned_1d", "nnet.conv_position": "after_linear",
            "nnet.time_cond": "token", "nnet.patch_embed": "linear"}


def preset_nnet(preset):
    """The nnet section of a preset (configs/NAME.json or a JSON path), {} if it cannot be read."""
    for path in (preset, os.path.join(ROOT, "configs", preset + ".json"), os.path.join(ROOT, "configs", preset)):
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    return json.load(f).get("nnet", {})
            except (OSError, ValueError):
                return {}
    return {}


def effective(preset, sets):
    """The overrides that change something: a preset's own nnet value, or an official value the
    preset leaves implicit, drops out."""
    nnet = preset_nnet(preset)
    out = []
    for s in sets:
        k, v = s.split("=", 1)
        field = k.split(".", 1)[1] if k.startswith("nnet.") else None
        try:
            value = json.loads(v)
        except ValueError:
            value = v
        if field and ((field in nnet and nnet[field] == value) or (field not in nnet and OFFICIAL.get(k) == v)):
            continue
        out.append(s)
    return sorted(out)


def fail(msg):
    print("ablation_study: error: " + msg, file=sys.stderr)
    sys.exit(2)


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def atomic_write(path, text):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def override(field, value):
    """One FIELD=VALUE of --vary as a `--set` string."""
    if (field, value) in ALIASES:
        field, value = ALIASES[(field, value)]
    if "." not in field:
        field = "nnet." + field
    return "%s=%s" % (field, value)


def parse_vary(spec):
    """'FIELD=V1,V2' -> (group, [(label, [set strings])])."""
    if "=" not in spec:
        fail("--vary %r: expected FIELD=V1,V2,..." % spec)
    field, values = spec.split("=", 1)
    rows = []
    for v in values.split(","):
        if not v:
            fail("--vary %r: empty value" % spec)
        if "=" in v:  # a composite value: k=v+k=v, labelled by itself
            sets = [override(*kv.split("=", 1)) for kv in v.split("+")]
            rows.append((v, sets))
        else:
            rows.append(("%s=%s" % (field, v), [override(field, v)]))
    return field, rows


def sampler_for(spec, preset):
    """--sampler NAME, or PRESET:NAME,... (a preset not listed keeps its own sampler)."""
    if not spec:
        return None
    if ":" not in spec:
        return spec
    for item in spec.split(","):
        p, _, name = item.partition(":")
        if p in (preset, display(preset)):
            return name
    return None


def display(preset):
    name = os.path.basename(preset)
    return name[:-5] if name.endswith(".json") else name


def slug(s):
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", s)


def run(cmd, logf):
    with open(logf, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError("%s failed (exit %d); see %s" % (cmd[1] if len(cmd) > 1 else cmd[0], r.returncode, logf))


def info(uvit, cfg):
    """Parameter count and forward GFLOP per image from `uvit info` (the run folder's config)."""
    out = subprocess.run([uvit, "info", "-c", cfg], capture_output=True, text=True, check=True).stdout
    params = int(re.search(r"^parameters\s+(\d+)", out, re.M).group(1))
    gflop = float(re.search(r"^forward\s+([0-9.]+) GFLOP", out, re.M).group(1))
    return params, gflop


def final_loss(run_dir):
    """Mean training loss over the last fifth of the logged steps (log.jsonl rows with a loss)."""
    losses = []
    with open(os.path.join(run_dir, "log.jsonl")) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)):
                losses.append(row["loss"])
    if not losses:
        return None
    tail = losses[-max(1, len(losses) // 5):]
    return sum(tail) / len(tail)


def one_run(a, preset, label, sets, seed, report_only=False):
    # The folder is named by the overrides, so identical variants share runs across studies.
    d = os.path.join(a.runs or os.path.join(a.out, "runs"), slug(display(preset)), slug("+".join(sets)) or "preset",
                     "seed%d" % seed)
    res_path = os.path.join(d, "result.json")
    if os.path.exists(res_path):
        with open(res_path) as f:
            return json.load(f)
    if report_only:
        return None
    os.makedirs(os.path.dirname(d), exist_ok=True)
    logf = d + ".log"
    common = ["--threads", str(a.threads), "--device", a.device, "-q"]
    sset = [x for s in a.set + sets for x in ("--set", s)]
    t0 = time.time()
    if not os.path.exists(os.path.join(d, "nnet_ema.safetensors")):
        if os.path.exists(d):  # an interrupted training: start it again cleanly
            subprocess.run(["rm", "-rf", d], check=True)
        run([a.uvit, "train", "--config", preset, "--out", d, "--steps", str(a.steps), "--seed", str(seed),
             "--no-grid"] + (["--batch", str(a.batch)] if a.batch else []) + sset + common, logf)
    t1 = time.time()
    samples = os.path.join(d, "samples.npy")
    sampler = sampler_for(a.sampler, preset)
    sample_opts = (["--steps", str(a.sample_steps)] if a.sample_steps else []) + \
                  (["--sampler", sampler] if sampler else [])
    run([a.uvit, "sample", "-c", d, "-w", os.path.join(d, "nnet_ema.safetensors"), "--n", str(a.n),
         "--classes", "all", "--seed", str(seed), "--npy", samples] + sample_opts + common, logf)
    t2 = time.time()
    ev = os.path.join(d, "eval.json")
    run([a.python, os.path.join(ROOT, "scripts", "eval_fmnist.py"), "--samples", samples, "--no-reference",
         "--json-out", ev] + (["--cache", a.eval_cache] if a.eval_cache else []), logf)
    with open(ev) as f:
        s = json.load(f)["samples_result"]
    params, gflop = info(a.uvit, d)
    res = {"preset": preset, "label": label, "sets": sets, "seed": seed, "steps": a.steps,
           "fd_cls": s["fd_cls"], "accuracy": s["accuracy"], "final_loss": final_loss(d),
           "params": params, "gflop": gflop, "train_s": round(t1 - t0, 1), "sample_s": round(t2 - t1, 1),
           "n": a.n}
    atomic_write(res_path, json.dumps(res, indent=1) + "\n")
    log("done %s / %s / seed %d: FD %.2f acc %.3f (train %.0f s, sample %.0f s)"
        % (preset, label, seed, res["fd_cls"], res["accuracy"], t1 - t0, t2 - t1))
    return res


def stats(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    # The sample sd of one value is undefined: None (no "± 0.00", which would claim no spread).
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return m, sd


def aggregate(rows, results):
    """Per row: mean and sd over seeds, and the loss difference to the preset's unmodified run
    paired by seed (same data, noise and times, so most of the seed-to-seed spread cancels)."""
    base = {}
    for r in results:
        if not r["sets"]:
            base[(r["preset"], r["seed"])] = r
    table = []
    for group, preset, label, sets in rows:
        rs = [r for r in results if r["preset"] == preset and r["label"] == label]
        diffs = [r["final_loss"] - base[(preset, r["seed"])]["final_loss"] for r in rs
                 if (preset, r["seed"]) in base and r["final_loss"] is not None]
        dloss, dloss_sd = stats(diffs) if sets else (None, None)
        fd, fd_sd = stats([r["fd_cls"] for r in rs])
        acc, acc_sd = stats([r["accuracy"] for r in rs])
        loss, loss_sd = stats([r["final_loss"] for r in rs])
        train_s, _ = stats([r["train_s"] for r in rs])
        table.append({"group": group, "preset": display(preset), "label": label, "sets": sets, "seeds": len(rs),
                      "fd_cls": fd, "fd_cls_sd": fd_sd, "accuracy": acc, "accuracy_sd": acc_sd,
                      "final_loss": loss, "final_loss_sd": loss_sd, "dloss": dloss, "dloss_sd": dloss_sd,
                      "params": rs[0]["params"] if rs else None, "gflop": rs[0]["gflop"] if rs else None,
                      "train_s": train_s, "per_seed": {k: [r[k] for r in rs] for k in ("fd_cls", "accuracy", "final_loss")}})
    return table


def fmt(m, sd, digits, sign=""):
    """Mean ± sd; the mean alone when one seed gave it (sd None)."""
    if m is None:
        return "-"
    return ("%" + sign + ".*f") % (digits, m) + ("" if sd is None else " ± %.*f" % (digits, sd))


def write_tables(a, table):
    md = ["| group | preset | variant | seeds | FD_cls ↓ | accuracy ↑ | final loss | Δ loss (paired) "
          "| params | GFLOP/img | train s |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        md.append("| %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
            t["group"], t["preset"], t["label"], t["seeds"], fmt(t["fd_cls"], t["fd_cls_sd"], 2),
            fmt(t["accuracy"], t["accuracy_sd"], 3), fmt(t["final_loss"], t["final_loss_sd"], 4),
            fmt(t["dloss"], t["dloss_sd"], 4, "+"),
            "-" if t["params"] is None else "{:,}".format(t["params"]),
            "-" if t["gflop"] is None else "%.3f" % t["gflop"],
            "-" if t["train_s"] is None else "%.0f" % t["train_s"]))
    md.append("")
    md.append("Mean ± sample standard deviation over seeds (the value alone from one seed); %d training "
              "steps, %d samples per run. Final loss: the mean training loss over the last fifth of the logged steps; Δ loss: its difference to the "
              "preset's unmodified run with the same seed (same data order, noise and times)." % (a.steps, a.n))
    atomic_write(os.path.join(a.out, "table.md"), "\n".join(md) + "\n")
    buf = io.StringIO()
    keys = ["group", "preset", "label", "seeds", "fd_cls", "fd_cls_sd", "accuracy", "accuracy_sd", "final_loss",
            "final_loss_sd", "dloss", "dloss_sd", "params", "gflop", "train_s"]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for t in table:
        w.writerow(["" if t[k] is None else t[k] for k in keys])
    atomic_write(os.path.join(a.out, "table.csv"), buf.getvalue())


def write_plot(a, table):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [t for t in table if t["fd_cls"] is not None]
    if not rows:
        return
    names = [("%s: %s" % (t["preset"], t["label"])) if len({r["preset"] for r in rows}) > 1 else t["label"]
             for t in rows]
    y = list(range(len(rows)))[::-1]
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.45 * len(rows) + 1.6), sharey=True)
    groups = sorted({t["group"] for t in rows}, key=[t["group"] for t in rows].index)
    colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(groups)}
    for ax, key, title in ((axes[0], "fd_cls", "FD_cls (lower is better)"),
                           (axes[1], "accuracy", "classifier accuracy (higher is better)"),
                           (axes[2], "final_loss", "final training loss (lower is better)")):
        vals = [t[key] if t[key] is not None else 0 for t in rows]
        sds = [t[key + "_sd"] or 0 for t in rows]
        if key == "final_loss":  # the differences are small next to the loss: points, not bars
            for yi, v, sd, t in zip(y, vals, sds, rows):
                ax.errorbar([v], [yi], xerr=[sd], fmt="o", color=colors[t["group"]], capsize=3)
        else:
            ax.barh(y, vals, xerr=sds, color=[colors[t["group"]] for t in rows], capsize=3)
        for yi, t in zip(y, rows):  # the individual seeds
            pts = [v for v in t["per_seed"][key] if v is not None]
            ax.plot(pts, [yi] * len(pts), "k.", ms=4)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names, fontsize=8)
    fig.suptitle("%s: %d steps, %d seeds, N=%d" % (a.title or "ablation study", a.steps, a.seeds, a.n), fontsize=10)
    fig.tight_layout()
    tmp = os.path.join(a.out, "plot.tmp%d.png" % os.getpid())
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, os.path.join(a.out, "plot.png"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", "--config", action="append", required=True,
                    help="preset names or JSON files, comma-separated (repeatable)")
    ap.add_argument("--vary", action="append", default=[], help="FIELD=V1,V2,... (repeatable)")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 1..K per row (default 3)")
    ap.add_argument("--steps", type=int, required=True, help="training steps of every run")
    ap.add_argument("--batch", type=int, help="training batch size (default: the preset's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every run, before the row's own (repeatable)")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: tabulate and plot the runs already finished")
    ap.add_argument("--n", type=int, default=1000, help="samples per run for the metrics (default 1000)")
    ap.add_argument("--sample-steps", type=int, help="sampler steps (default: the preset's)")
    ap.add_argument("--sampler", help="sampler NAME for every run, or PRESET:NAME,... per preset "
                                      "(default: the preset's)")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads per run (default 1)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    ap.add_argument("--out", required=True, help="study folder (created; rerun to resume)")
    ap.add_argument("--runs", help="runs folder (default OUT/runs; share one between studies to share runs)")
    ap.add_argument("--uvit", default=os.environ.get("UVIT", os.path.join(ROOT, "build", "uvit")))
    ap.add_argument("--python", default="/usr/bin/python3", help="python with torch for eval_fmnist.py")
    ap.add_argument("--eval-cache", help="classifier cache of eval_fmnist.py (default: its own)")
    ap.add_argument("--title", help="plot title")
    a = ap.parse_args()
    for k in ("seeds", "steps", "n", "jobs", "threads"):
        if getattr(a, k) < 1:
            fail("--%s must be positive, got %d" % (k, getattr(a, k)))
    if not os.access(a.uvit, os.X_OK):
        fail("no uvit executable at %s (build it, or give --uvit / UVIT)" % a.uvit)
    presets = [c for spec in a.configs for c in spec.split(",") if c]
    rows = []  # (group, preset, label, sets)
    for p in presets:
        if not a.vary:
            rows.append(("backbone", p, "preset", []))
        for spec in a.vary:
            field, vs = parse_vary(spec)
            for label, sets in vs:
                rows.append((field, p, label, sets))
    # Identical rows (same preset and effective overrides) share their runs.
    rows = [(g, p, label, effective(p, sets)) for g, p, label, sets in rows]
    seen, unique = {}, []
    for g, p, label, sets in rows:
        key = (p, tuple(sorted(sets)))
        if key not in seen:
            seen[key] = label
            unique.append((p, label, sets))
    os.makedirs(a.out, exist_ok=True)
    # Row by row (all seeds of a row before the next), so a study stopped early has complete rows.
    jobs = [(p, label, sets, s) for p, label, sets in unique for s in range(1, a.seeds + 1)]
    log("%d rows, %d runs (%d distinct variants x %d seeds), %d at a time"
        % (len(rows), len(jobs), len(unique), a.seeds, a.jobs))
    t0 = time.time()
    failures = []

    def work(j):
        try:
            return one_run(a, *j, report_only=a.report_only)
        except Exception as e:  # keep the other runs going; report at the end
            failures.append("%s / %s / seed %d: %s" % (j[0], j[1], j[3], e))
            log("FAILED " + failures[-1])
            return None

    with ThreadPoolExecutor(max_workers=a.jobs) as ex:
        results = [r for r in ex.map(work, jobs) if r is not None]
    # Shared runs appear under every label that names them.
    by_key = {}
    for r in results:
        by_key[(r["preset"], tuple(sorted(r["sets"])))] = by_key.get((r["preset"], tuple(sorted(r["sets"]))), []) + [r]
    expanded = []
    for g, p, label, sets in rows:
        for r in by_key.get((p, tuple(sorted(sets))), []):
            expanded.append(dict(r, label=label))
    table = aggregate(rows, expanded)
    summary = {"command": " ".join(sys.argv), "steps": a.steps, "seeds": a.seeds, "n": a.n,
               "device": a.device, "threads": a.threads, "jobs": a.jobs, "wall_s": round(time.time() - t0, 1),
               "rows": table, "runs": results, "failures": failures}
    atomic_write(os.path.join(a.out, "results.json"), json.dumps(summary, indent=1) + "\n")
    write_tables(a, table)
    write_plot(a, table)
    log("wrote %s/{table.md,table.csv,results.json,plot.png} in %.0f s" % (a.out, time.time() - t0))
    if failures:
        fail("%d run(s) failed:\n  %s" % (len(failures), "\n  ".join(failures)))


if __name__ == "__main__":
    main()
