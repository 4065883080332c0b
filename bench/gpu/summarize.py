#!/usr/bin/env python3
"""Results of scripts/gpu-check.sh: uvit (CUDA) against the PyTorch twin, one table and one JSON.

  summarize.py record --case NAME --config C --mode M [--ckpt 0|1] [--precision bf16|fp32] [--autotune 0|1]
                      [--attention default|unfused|cudnn] --rc RC --seconds S [--json FILE] [--stdout FILE] >> uvit_bench.jsonl
      wraps one `uvit bench` run as one JSON line (its --json file, else the last JSON line it
      printed; a failed or silent run is recorded with rc and the tail of its output).
  summarize.py table --ours uvit_bench.jsonl --twin torch_twin.jsonl --out results.json
                     [--stages stages.tsv] [--gtest-xml gtest.xml] [--device-name NAME]
                     [--peak-tflops 989] [--anchors anchors.jsonl] [--gtest-log gtest_cuda.log]
                     [--profile profile.txt] [--clocks clocks.csv --windows windows.tsv]
      prints markdown tables (ours vs the eager and compiled twin, MFU, peak memory, the issues'
      targets; GEMM autotuning on/off; cuDNN SDPA vs our attention; where the step's time goes; cuBLASLt per GEMM; attention
      and SD-decoder anchors beside ours; clocks per stage) and writes results.json. Missing
      inputs give "n/a" cells or no section, never a crash.

MFU = mult x forward FLOPs x img/s / peak, mult = 3 for a training step and 1 for a forward pass
(forward FLOPs per image as src/models/uvit_params.cpp counts them: 2 per multiply-add).
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
S, H, DIT = "cifar10_uvit_small", "imagenet256_uvit_huge", "dit_xl_2"
# Row order of the table: (config, mode, use_checkpoint).
ROWS = [(S, "forward", False), (H, "forward", False), (S, "train", False), (H, "train", False),
        (H, "train", True)]
PEAK_KEYS = ("peak_device_mb", "peak_mem_mb", "peak_gpu_mb", "device_peak_mb", "peak_mb")
RATE_KEYS = ("img_s", "nfe_s", "images_per_s")
SAMPLE_SECONDS_KEYS = ("sample_s", "seconds", "total_s", "wall_s", "elapsed_s")
PAPER_SAMPLE_S = 89.0  # official: 500 U-ViT-H/2 samples, 50 DPM-Solver steps with guidance, one A100


def forward_flops(config):
    """Forward FLOPs per image of configs/<config>.json's network (uvit networks)."""
    with open(os.path.join(REPO, "configs", config + ".json")) as f:
        n = json.load(f)["nnet"]
    D, p, C, Sz = n["embed_dim"], n["patch_size"], n["in_chans"], n["img_size"]
    L = (Sz // p) ** 2
    N = L + (2 if n.get("num_classes", -1) > 0 else 1)
    Hd = int(D * n.get("mlp_ratio", 4.0))
    side = n["depth"] // 2
    per_block = 2 * N * D * 3 * D + 2 * 2 * N * N * D + 2 * N * D * D + 2 * 2 * N * D * Hd
    f = (2 * side + 1) * per_block
    if n.get("skip", True):
        f += side * 2 * N * 2 * D * D
    f += 2 * L * D * p * p * C + 2 * N * D * p * p * C
    if n.get("mlp_time_embed", False):
        f += 2 * 2 * D * 4 * D
    if n.get("conv", True):
        f += 2.0 * Sz * Sz * C * C * 9
    return f


def read_jsonl(path):
    out = []
    if not path or not os.path.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def last_json_line(path):
    if not path or not os.path.isfile(path):
        return None
    with open(path, errors="replace") as f:
        lines = [ln.strip() for ln in f if ln.strip().startswith("{")]
    for ln in reversed(lines):
        try:
            return json.loads(ln)
        except json.JSONDecodeError:
            continue
    return None


def tail(path, n=6):
    if not path or not os.path.isfile(path):
        return ""
    with open(path, errors="replace") as f:
        return " | ".join(ln.rstrip() for ln in f.readlines()[-n:])[-800:]


def cmd_record(a):
    res = None
    if a.json and os.path.isfile(a.json):
        try:
            with open(a.json) as f:
                txt = f.read().strip()
            res = json.loads(txt.splitlines()[-1]) if txt else None
        except (json.JSONDecodeError, IndexError, OSError):
            res = None
    if res is None:
        res = last_json_line(a.stdout)
    partial = None
    if a.rc != 0 or not isinstance(res, dict) or res.get("config", a.config) != a.config or \
            res.get("mode", a.mode) != a.mode:
        partial, res = res, None  # a failed or mismatched run yields no figures
    rec = {"case": a.case, "config": a.config, "mode": a.mode, "use_checkpoint": bool(a.ckpt),
           "precision": a.precision, "autotune": bool(a.autotune), "attention": a.attention,
           "rc": a.rc, "seconds": a.seconds, "result": res}
    if partial is not None:
        rec["partial_result"] = partial
    if a.rc != 0 or res is None:
        rec["error"] = ("timed out" if a.rc in (124, 137) else f"exit {a.rc}" if a.rc else
                        "no JSON result") + (": " + tail(a.stdout) if a.stdout else "")
    print(json.dumps(rec))
    return 0


def first(d, keys):
    for k in keys:
        v = d.get(k) if isinstance(d, dict) else None
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def fmt(v, spec=".1f", suffix=""):
    return "n/a" if v is None else f"{v:{spec}}{suffix}"


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def verdict(ok):
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def parse_gtest(path):
    if not path or not os.path.isfile(path):
        return None
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        return {"error": f"{path}: {e}"}
    g = {k: int(root.get(k, 0)) for k in ("tests", "failures", "errors", "disabled")}
    failed, skipped = [], 0
    for tc in root.iter("testcase"):
        name = f"{tc.get('classname')}.{tc.get('name')}"
        if tc.find("failure") is not None or tc.find("error") is not None:
            failed.append(name)
        if tc.find("skipped") is not None or tc.get("result") == "skipped":
            skipped += 1
    g.update(skipped=skipped, failed=failed)
    return g


def parse_stages(path):
    out = []
    if not path or not os.path.isfile(path):
        return out
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) >= 4:
                out.append({"stage": p[0], "status": p[1], "rc": p[2], "seconds": p[3],
                            "note": p[4] if len(p) > 4 else ""})
    return out


def twin_problem(twin, mode, cfg, impl, ckpt):
    """Why the twin has no figure for this case: its error, its skip reason, or "not run"."""
    want = f"{mode}:{cfg}:{impl}" + ("" if mode == "forward" else (":ckpt" if ckpt else ":nockpt"))
    for t in twin:
        case = t.get("case", "")
        if (case == want or (mode == "train" and not ckpt and case == f"{mode}:{cfg}:{impl}")) and \
                (t.get("error") or t.get("skipped")):
            return t.get("error") or "skipped: " + t["skipped"]
    return "not run"


def encoder_rows(path):
    """encoders.jsonl (bench/gpu/encoders.sh) -> [(what, unit, uvit precision, uvit, torch,
    uvit / torch speed-up)], one row per uvit precision measured."""
    uvit, torch_ = {}, {}
    for r in read_jsonl(path):
        raw = r.get("raw") or {}
        impl = r.get("impl") or raw.get("impl", "")
        what, prec = r.get("what"), r.get("precision", "fp32")
        v = None
        if what == "ae_decode":
            if impl == "uvit" and (r.get("steady_per_s") or r.get("seconds")):
                v = r.get("steady_per_s") or r["images"] / r["seconds"]
            elif raw.get("all"):
                v = raw["batch"] * len(raw["all"]) / sum(raw["all"])
        elif what == "fid_features":
            v = r.get("steady_per_s") or r.get("img_per_s", raw.get("img_per_s"))
        elif what == "clip_prompt" and raw.get("median_s"):
            v = 1e3 * raw["median_s"]
        if v:
            if impl == "uvit":
                uvit[(what, prec)] = v
            else:
                torch_[what] = v
    rows = []
    for what, unit, higher in (("ae_decode", "img/s (256 px)", True),
                               ("fid_features", "img/s", True),
                               ("clip_prompt", "ms per prompt", False)):
        t = torch_.get(what)
        precs = sorted(p for (w, p) in uvit if w == what) or [None]
        for prec in precs:
            u = uvit.get((what, prec))
            speed = None if u is None or t is None else (u / t if higher else t / u)
            rows.append((what, unit, prec, u, t, speed))
    return rows


ATTN_RE = re.compile(r"attention (fwd|bwd) bf16 (\S+)\s+B=(\d+) N=(\d+) H=(\d+) Dh=(\d+): "
                     r"([\d.]+) ms\s+([\d.]+) TFLOP/s")


def parse_our_attention(path):
    """CudaAttentionTiming's lines in gtest_cuda.log -> {(B, H, N, Dh, dir, impl): TFLOP/s}."""
    out = {}
    if not path or not os.path.isfile(path):
        return out
    with open(path, errors="replace") as f:
        for m in ATTN_RE.finditer(f.read()):
            d, impl, B, N, H, Dh, _ms, tf = m.groups()
            out[(int(B), int(H), int(N), int(Dh), d, impl)] = float(tf)
    return out


def attention_rows(anchors, ours):
    """One row per shape: our kernels' and torch SDPA's backends' useful TFLOP/s, fwd and bwd."""
    shapes = sorted({k[:4] for k in ours} | {(r["B"], r["H"], r["N"], r["Dh"]) for r in anchors
                                              if r.get("what") == "attn_anchor"}, reverse=True)
    rows = []
    for B, H, N, Dh in shapes:
        r = {"B": B, "H": H, "N": N, "Dh": Dh}
        for d in ("fwd", "bwd"):
            r[f"ours_{d}"] = ours.get((B, H, N, Dh, d, "flash"))
            r[f"cudnn_{d}"] = ours.get((B, H, N, Dh, d, "cudnn"))  # UVIT_ATTENTION=cudnn's kernel
            for t in anchors:
                if t.get("what") == "attn_anchor" and (t["B"], t["H"], t["N"], t["Dh"]) == (B, H, N, Dh):
                    r[f"torch_{t['backend']}_{d}"] = t.get(f"{d}_tflops")
                    if t.get("error"):
                        r[f"torch_{t['backend']}_error"] = t["error"]
        rows.append(r)
    return rows


def vae_rows(anchors):
    return [{"impl": r.get("impl"), "variant": r.get("variant"), "batch": r.get("batch"),
             "img_s": r.get("img_s"), "error": r.get("error")}
            for r in anchors if r.get("what") == "vae_anchor"]


def ab_rows(ours_for, keys, switch, off_name, on_name):
    """An A/B of one switch (ours_for's keyword: autotune, cudnn): each case measured both ways in
    the same run; off_name / on_name name the two img/s columns."""
    rows = []
    for cfg, mode, ckpt in keys:
        off, on = ours_for(cfg, mode, ckpt), ours_for(cfg, mode, ckpt, **{switch: True})
        if on is None:
            continue
        a, b = first((off or {}).get("result") or {}, RATE_KEYS), first(on.get("result") or {}, RATE_KEYS)
        rows.append({"config": cfg, "mode": mode, "use_checkpoint": ckpt, off_name: a, on_name: b,
                     "gain": ratio(b, a), "error": on.get("error")})
    return rows


PROF_WALL_RE = re.compile(r"^  wall ([\d.]+) ms, timed operations ([\d.]+) ms \(([\d.]+)%\), gap ([-\d.]+) ms")
TORCH_PROF_RE = re.compile(r"^== torch.profiler: (\S+), \d+ steps: wall ([\d.]+) ms per step, GPU kernels "
                           r"([\d.]+) ms per step")
KIND_RE = re.compile(r"^\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\S+)$")


def parse_profile(path):
    """profile.txt -> per section: wall, GPU time and gap per step, and (ours) the top kinds."""
    out = []
    if not path or not os.path.isfile(path):
        return out
    cur, in_kinds = None, False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("== uvit bench "):
                cur = {"impl": "uvit", "case": line.split()[3], "kinds": []}
                out.append(cur)
                in_kinds = False
                continue
            m = TORCH_PROF_RE.match(line)
            if m:
                w, g = float(m.group(2)), float(m.group(3))
                out.append({"impl": "torch", "case": m.group(1), "wall_ms": w, "gpu_ms": g, "gap_ms": w - g})
                cur = None
                continue
            if cur is None:
                continue
            m = PROF_WALL_RE.match(line)
            if m:
                cur.update(wall_ms=float(m.group(1)), gpu_ms=float(m.group(2)), gap_ms=float(m.group(4)))
            elif line == "by kind:":
                in_kinds = True
            elif line.startswith("by operation"):
                in_kinds = False
            elif in_kinds:
                m = KIND_RE.match(line)
                if m:
                    cur["kinds"].append({"kind": m.group(4), "ms": float(m.group(1)), "pct": float(m.group(2))})
    return out


def clock_rows(path, windows):
    """nvidia-smi samples (timestamp, SM MHz, memory MHz, W, C) summarised per stage window."""
    if not path or not os.path.isfile(path) or not windows or not os.path.isfile(windows):
        return []
    import datetime
    samples = []
    with open(path, errors="replace") as f:
        for line in f:
            p = [x.strip() for x in line.split(",")]
            if len(p) < 5:
                continue
            try:
                ts = datetime.datetime.strptime(p[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((ts, float(p[1]), float(p[2]), float(p[3]), float(p[4])))
            except ValueError:
                continue
    rows = []
    with open(windows) as f:
        for line in f:
            p = line.split()
            if len(p) != 3:
                continue
            t0, t1 = float(p[1]), float(p[2])
            s = [x for x in samples if t0 <= x[0] <= t1 + 1]
            if not s:
                continue
            r = {"stage": p[0], "samples": len(s)}
            for i, k in ((1, "sm_mhz"), (2, "mem_mhz"), (3, "power_w"), (4, "temp_c")):
                v = sorted(x[i] for x in s)
                r[k] = {"min": v[0], "median": v[len(v) // 2], "max": v[-1]}
            rows.append(r)
    return rows


def print_issue17(p, tuning, prof, gemms, gelu, att, vae, clocks, sdpa=()):
    """The sections that say where the time goes and what to try next (issue 17)."""
    if sdpa:
        p("\n### cuDNN SDPA (UVIT_ATTENTION=cudnn) against our attention kernels, same run\n")
        p("| config | mode | ours img/s | cuDNN SDPA img/s | gain |\n|---|---|---|---|---|")
        for r in sdpa:
            p(f"| {r['config']} | {r['mode']} | {fmt(r['ours_img_s'])} | "
              f"{fmt(r['cudnn_img_s']) if not r.get('error') else 'error: ' + r['error'][:80]} "
              f"| {fmt(None if r['gain'] is None else 100 * (r['gain'] - 1), '+.1f', '%')} |")
        p("(docs/gpu.md, \"cuDNN attention\": cuDNN becomes the bf16 default if it wins here and in the "
          "attention table's kernel rows)")
    if tuning:
        p("\n### GEMM autotuning (UVIT_CUBLASLT_AUTOTUNE=1) against the heuristic's choice, same run\n")
        p("| config | mode | heuristic img/s | autotuned img/s | gain |\n|---|---|---|---|---|")
        for r in tuning:
            p(f"| {r['config']} | {r['mode']} | {fmt(r['heuristic_img_s'])} | {fmt(r['autotuned_img_s'])} "
              f"| {fmt(None if r['gain'] is None else 100 * (r['gain'] - 1), '+.1f', '%')} |")
    if prof:
        p("\n### Where a step's time goes (profile.txt has every operation and kernel)\n")
        p("| case | impl | wall ms/step | GPU ms/step | gap ms | top kinds (ms, % of GPU time) |\n|---|---|---|---|---|---|")
        for r in prof:
            kinds = ", ".join(f"{k['kind']} {k['ms']:.1f} ({k['pct']:.0f}%)" for k in r.get("kinds", [])[:6])
            p(f"| {r['case']} | {r['impl']} | {fmt(r.get('wall_ms'), '.2f')} | {fmt(r.get('gpu_ms'), '.2f')} "
              f"| {fmt(r.get('gap_ms'), '.2f')} | {kinds or '-'} |")
        p("(ours: events around each Backend operation, no synchronisation; the twin: torch.profiler, "
          "whose own host cost inflates its gap)")
    if gemms:
        p("\n### cuBLASLt at U-ViT's GEMM shapes (bf16; heuristic top-1 vs the best of 16)\n")
        p("| net | gemm | pass | M | N | K | heuristic TFLOP/s | tuned TFLOP/s | gain | pick |\n|---|---|---|---|---|---|---|---|---|---|")
        for r in gemms:
            p(f"| {r['net']} | {r['gemm']} | {r['pass']} | {r['M']} | {r['N']} | {r['K']} "
              f"| {fmt(r.get('heuristic_tflops'))} | {fmt(r.get('tuned_tflops'))} "
              f"| {fmt(ratio(r.get('heuristic_ms'), r.get('tuned_ms')), '.3f', 'x')} | {r.get('pick', '-')} |")
    if gelu:
        p(f"\ncuBLASLt GELU epilogue: max |epilogue - erf GELU| {gelu['max_abs_vs_erf']:.3g}, "
          f"max |epilogue - tanh GELU| {gelu['max_abs_vs_tanh']:.3g}: it computes {gelu['computes']} GELU")
    if att:
        backends = ("flash", "mem_efficient", "cudnn", "math", "math_manual")
        p("\n### Attention, useful TFLOP/s (4 B H N^2 Dh forward, 2.5x backward), bf16\n")
        p("| B, H, N, Dh | pass | ours (flash) | ours (cuDNN SDPA) | " +
          " | ".join(f"torch {b}" for b in backends) + " |\n|---|---|---|---|" + "---|" * len(backends))
        for r in att:
            for d in ("fwd", "bwd"):
                cells = [fmt(r.get(f"torch_{b}_{d}")) if r.get(f"torch_{b}_{d}") is not None else
                         ("error" if r.get(f"torch_{b}_error") else "n/a") for b in backends]
                p(f"| {r['B']}, {r['H']}, {r['N']}, {r['Dh']} | {d} | {fmt(r.get(f'ours_{d}'))} "
                  f"| {fmt(r.get(f'cudnn_{d}'))} | " + " | ".join(cells) + " |")
        errs = sorted({(b, r[f"torch_{b}_error"]) for r in att for b in backends if r.get(f"torch_{b}_error")})
        for b, e in errs[:6]:
            p(f"- torch {b}: {e[:160]}")
    if vae:
        p("\n### SD decoder at 256 px (cudnn.benchmark on for torch)\n")
        p("| impl | variant | batch | img/s |\n|---|---|---|---|")
        for r in vae:
            p(f"| {r['impl']} | {r['variant']} | {r.get('batch') or '-'} | "
              f"{fmt(r.get('img_s')) if not r.get('error') else 'error: ' + r['error'][:80]} |")
    if clocks:
        p("\n### GPU clocks per stage (nvidia-smi every 250 ms: min / median / max)\n")
        p("| stage | samples | SM MHz | memory MHz | power W | temperature C |\n|---|---|---|---|---|---|")
        for r in clocks:
            cell = (lambda k: f"{r[k]['min']:.0f} / {r[k]['median']:.0f} / {r[k]['max']:.0f}")
            p(f"| {r['stage']} | {r['samples']} | {cell('sm_mhz')} | {cell('mem_mhz')} | {cell('power_w')} "
              f"| {cell('temp_c')} |")


def cmd_table(a):
    ours = read_jsonl(a.ours)
    twin = read_jsonl(a.twin)
    peak = a.peak_tflops * 1e12
    device = a.device_name or next((t.get("device") for t in twin if t.get("device")), "unknown")

    def ours_for(cfg, mode, ckpt, autotune=False, cudnn=False):
        for r in ours:
            if r.get("config") == cfg and r.get("mode") == mode and \
                    bool(r.get("use_checkpoint")) == ckpt and r.get("precision", "bf16") == "bf16" and \
                    bool(r.get("autotune")) == autotune and (r.get("attention") == "cudnn") == cudnn:
                return r
        return None

    def twin_for(cfg, mode, ckpt, impl):
        for r in twin:
            if r.get("config") == cfg and r.get("mode") == mode and r.get("impl") == impl and \
                    bool(r.get("use_checkpoint")) == ckpt and "error" not in r:
                return r
        return None

    rows, targets = [], []
    keys = list(ROWS) + sorted({(r.get("config"), r.get("mode"), bool(r.get("use_checkpoint")))
                                for r in ours + twin
                                if r.get("mode") in ("forward", "train") and r.get("config")} - set(ROWS))
    for cfg, mode, ckpt in keys:
        o = ours_for(cfg, mode, ckpt)
        e, c = twin_for(cfg, mode, ckpt, "torch_eager"), twin_for(cfg, mode, ckpt, "torch_compiled")
        if o is None and e is None and c is None:
            continue
        ores = (o or {}).get("result") or {}
        try:
            ff = forward_flops(cfg)
        except (OSError, KeyError, ValueError):  # not a uvit network: the twin's count (DiT)
            ff = first(e or c or {}, ("forward_gflop_per_img",))
            ff = ff * 1e9 if ff else None
        mult = 3 if mode == "train" else 1

        def mfu(rate):
            return mult * ff * rate / peak if rate is not None and ff else None

        r = {"config": cfg, "mode": mode, "use_checkpoint": ckpt,
             "forward_gflop_per_img": ff / 1e9 if ff else None,
             "ours_img_s": first(ores, RATE_KEYS), "eager_img_s": first(e, RATE_KEYS),
             "compiled_img_s": first(c, RATE_KEYS), "ours_peak_mb": first(ores, PEAK_KEYS),
             "eager_peak_mb": first(e, PEAK_KEYS), "compiled_peak_mb": first(c, PEAK_KEYS),
             "ours_error": (o or {}).get("error") if o else "not run",
             "eager_error": None if e else twin_problem(twin, mode, cfg, "eager", ckpt),
             "compiled_error": None if c else twin_problem(twin, mode, cfg, "compiled", ckpt)}
        r["vs_eager"] = ratio(r["ours_img_s"], r["eager_img_s"])
        r["vs_compiled"] = ratio(r["ours_img_s"], r["compiled_img_s"])
        for k in ("ours", "eager", "compiled"):
            r[k + "_mfu"] = mfu(r[k + "_img_s"])
        rows.append(r)

    def row(cfg, mode, ckpt):
        return next((r for r in rows if (r["config"], r["mode"], r["use_checkpoint"]) == (cfg, mode, ckpt)), {})

    def target(name, value, ok):
        targets.append({"target": name, "measured": value, "result": verdict(ok)})

    for cfg in (S, H):  # issue 4: forward NFE/s
        r = row(cfg, "forward", False)
        v = r.get("vs_eager")
        target(f"{cfg} forward >= 1.5x eager twin", fmt(v, ".2f", "x"), None if v is None else v >= 1.5)
        v = r.get("vs_compiled")
        target(f"{cfg} forward >= 1.2x compiled twin", fmt(v, ".2f", "x"), None if v is None else v >= 1.2)
    rh, rhc, rs = row(H, "train", False), row(H, "train", True), row(S, "train", False)
    v = rh.get("ours_mfu")  # issue 5: training
    target(f"{H} train >= 50% MFU", fmt(None if v is None else 100 * v, ".1f", "%"), None if v is None else v >= 0.5)
    for cfg, r in ((H, rh), (S, rs)):
        v = r.get("vs_eager")
        target(f"{cfg} train >= 1.5x eager twin", fmt(v, ".2f", "x"), None if v is None else v >= 1.5)
    for name, r in (("no ckpt", rh), ("ckpt", rhc)):
        o, e = r.get("ours_peak_mb"), r.get("eager_peak_mb")
        target(f"{H} train ({name}) peak memory <= eager twin's",
               f"{fmt(o, '.0f')} vs {fmt(e, '.0f')} MB", None if o is None or e is None else o <= e)
    o1, o2 = rhc.get("ours_peak_mb"), rh.get("ours_peak_mb")
    v = ratio(o1, o2)
    target(f"{H} train: ckpt peak <= 40% of no-ckpt peak", fmt(None if v is None else 100 * v, ".0f", "%"),
           None if v is None else v <= 0.4)

    # Sampling: 500 latents, 50 DPM-Solver++ steps, guidance (100 network evaluations per image).
    sample = None
    for r in ours:
        if r.get("mode") == "sample":
            res = r.get("result") or {}
            sec = first(res, SAMPLE_SECONDS_KEYS)
            sample = {"config": r.get("config"), "ours_s": sec, "error": r.get("error"),
                      "result": res, "paper_a100_s": PAPER_SAMPLE_S}
            h = row(H, "forward", False)
            for impl in ("eager", "compiled"):
                nfe = h.get(impl + "_img_s")
                n, steps = res.get("n", 500), res.get("steps", 50)
                # Derived, not measured: image-NFEs / the twin's forward NFE/s at batch 128.
                sample[f"twin_{impl}_derived_s"] = (n * 2 * steps / nfe) if nfe else None

    # Issue 17's targets (same card, same run; docs/gpu.md).
    for cfg, mode, rate, vs in ((H, "train", 700, 1.3), (H, "forward", 2300, 1.3), (S, "train", 5200, 1.2)):
        r = row(cfg, mode, False)
        v = r.get("ours_img_s")
        target(f"{cfg} {mode} >= {rate} img/s", fmt(v, ".0f"), None if v is None else v >= rate)
        v = r.get("vs_compiled")
        target(f"{cfg} {mode} >= {vs}x compiled twin", fmt(v, ".2f", "x"), None if v is None else v >= vs)
    # DiT-XL/2 (when its cases ran): at least U-ViT-H/2's training MFU, >= 1.3x torch.compile.
    h_mfu = row(H, "train", False).get("ours_mfu")
    for mode in ("train", "forward"):
        r = row(DIT, mode, False)
        if not r:
            continue
        v = r.get("ours_mfu")
        target(f"{DIT} {mode} MFU >= {H} train MFU ({fmt(None if h_mfu is None else 100 * h_mfu, '.1f', '%')})",
               fmt(None if v is None else 100 * v, ".1f", "%"), None if v is None or h_mfu is None else v >= h_mfu)
        v = r.get("vs_compiled")
        target(f"{DIT} {mode} >= 1.3x compiled twin", fmt(v, ".2f", "x"), None if v is None else v >= 1.3)

    gtest = parse_gtest(a.gtest_xml)
    stages = parse_stages(a.stages)
    anchors_path = a.anchors or a.encoders
    enc = encoder_rows(anchors_path) if anchors_path and os.path.isfile(anchors_path) else []
    anchors = read_jsonl(anchors_path)
    # UVIT_CUBLASLT_AUTOTUNE=1 and UVIT_ATTENTION=cudnn against the default, case by case.
    tuning = ab_rows(ours_for, keys, "autotune", "heuristic_img_s", "autotuned_img_s")
    sdpa = ab_rows(ours_for, keys, "cudnn", "ours_img_s", "cudnn_img_s")
    att = attention_rows(anchors, parse_our_attention(a.gtest_log))
    vae = vae_rows(anchors)
    gemms = [r for r in anchors if r.get("what") == "gemm"]
    gelu = next((r for r in anchors if r.get("what") == "gelu_epilogue"), None)
    prof = parse_profile(a.profile)
    clocks = clock_rows(a.clocks, a.windows)
    h_att = next((r for r in att if (r["N"], r["Dh"]) == (258, 72)), None)
    for d, goal in (("fwd", 250), ("bwd", 170)):
        v = h_att.get(f"ours_{d}") if h_att else None
        target(f"attention {d} at (128, 16, 258, 72) >= {goal} TFLOP/s", fmt(v, ".0f"),
               None if v is None else v >= goal)
        v = h_att.get(f"cudnn_{d}") if h_att else None
        if v is not None:  # the opt-in path (UVIT_ATTENTION=cudnn), same bar
            target(f"attention {d} at (128, 16, 258, 72), cuDNN SDPA >= {goal} TFLOP/s", fmt(v, ".0f"),
                   v >= goal)
    v = next((r["img_s"] for r in vae if r["impl"] == "uvit" and "tf32" in r["variant"]), None)
    target("SD decoder 256 px, exact tf32 path >= 230 img/s", fmt(v, ".0f"), None if v is None else v >= 230)
    v = next((r["img_s"] for r in vae if r["impl"] == "uvit" and "fp16" in r["variant"]), None)
    target("SD decoder 256 px, fp16/bf16 path >= 450 img/s", fmt(v, ".0f") if v else "no such path yet",
           None if v is None else v >= 450)
    v = (sample or {}).get("ours_s")
    target("500 H/2 samples (50 DPM-Solver++ steps, guidance) <= 18 s", fmt(v, ".1f", " s"),
           None if v is None else v <= 18)

    doc = {"encoders": [dict(zip(("what", "unit", "precision", "uvit", "torch", "speedup"), r))
                        for r in enc],
           "autotune": tuning, "cudnn_sdpa": sdpa, "attention": att, "vae": vae, "gemm": gemms, "gelu_epilogue": gelu,
           "profile": prof, "clocks": clocks,
           "device": device, "peak_tflops": a.peak_tflops, "rows": rows, "targets": targets,
           "sample": sample, "gtest": gtest, "stages": stages,
           "twin_meta": {k: twin[0].get(k) for k in ("torch", "python", "sdpa_check_max_abs_err")} if twin else None,
           "raw": {"ours": ours, "twin": twin}}
    if a.out:
        d = os.path.dirname(os.path.abspath(a.out))
        os.makedirs(d, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".results.")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(tmp, a.out)

    p = print
    p(f"\n## GPU results on {device} (batch 128, bf16; MFU against {a.peak_tflops:.0f} TFLOP/s)\n")
    p("| config | mode | ckpt | uvit img/s | torch eager | torch compiled | vs eager | vs compiled "
      "| uvit MFU | eager MFU | compiled MFU | uvit peak MB | eager peak MB | compiled peak MB |")
    p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        pct = (lambda v: fmt(None if v is None else 100 * v, ".1f", "%"))
        p(f"| {r['config']} | {r['mode']} | {'yes' if r['use_checkpoint'] else 'no'} "
          f"| {fmt(r['ours_img_s'])} | {fmt(r['eager_img_s'])} | {fmt(r['compiled_img_s'])} "
          f"| {fmt(r['vs_eager'], '.2f', 'x')} | {fmt(r['vs_compiled'], '.2f', 'x')} "
          f"| {pct(r['ours_mfu'])} | {pct(r['eager_mfu'])} | {pct(r['compiled_mfu'])} "
          f"| {fmt(r['ours_peak_mb'], '.0f')} | {fmt(r['eager_peak_mb'], '.0f')} | {fmt(r['compiled_peak_mb'], '.0f')} |")
    p("(forward rows: img/s = network evaluations per second)")
    notes = [(f"{r['config']} {r['mode']}{' ckpt' if r['use_checkpoint'] else ''} {who}", r[who + "_error"])
             for r in rows for who in ("ours", "eager", "compiled") if r.get(who + "_error")]
    for what, why in notes:
        p(f"- {what}: {why}")
    if sample:
        p(f"\nSampling {H}, 500 latents, 50 DPM-Solver++ steps, guidance: uvit "
          f"{fmt(sample['ours_s'], '.1f', ' s')} (paper, A100: {PAPER_SAMPLE_S:.0f} s; twin, derived from its "
          f"forward NFE/s, not measured: eager {fmt(sample.get('twin_eager_derived_s'), '.1f', ' s')}, "
          f"compiled {fmt(sample.get('twin_compiled_derived_s'), '.1f', ' s')})"
          + (f"; error: {sample['error']}" if sample.get("error") else ""))
    p("\n| target | measured | result |\n|---|---|---|")
    for t in targets:
        p(f"| {t['target']} | {t['measured']} | {t['result']} |")
    if enc:
        p("\n| encoder | unit | uvit precision | uvit | torch (defaults: TF32 convs, fp32 matmuls) "
          "| uvit speed-up |\n|---|---|---|---|---|---|")
        for what, unit, prec, u, t, speed in enc:
            p(f"| {what} | {unit} | {prec or '-'} | {fmt(u, '.1f')} | {fmt(t, '.1f')} "
              f"| {fmt(speed, '.2f', 'x')} |")
    print_issue17(p, tuning, prof, gemms, gelu, att, vae, clocks, sdpa)
    if gtest:
        if "error" in gtest:
            p(f"\ngtest: {gtest['error']}")
        else:
            p(f"\ngtest: {gtest['tests']} tests, {len(gtest['failed'])} failed, {gtest['skipped']} skipped, "
              f"{gtest['disabled']} disabled" + (": " + ", ".join(gtest["failed"][:20]) if gtest["failed"] else ""))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="wrap one `uvit bench` run as a JSON line")
    r.add_argument("--case", required=True)
    r.add_argument("--config", required=True)
    r.add_argument("--mode", required=True)
    r.add_argument("--ckpt", type=int, default=0)
    r.add_argument("--precision", default="bf16")
    r.add_argument("--autotune", type=int, default=0, help="1: run with UVIT_CUBLASLT_AUTOTUNE=1")
    r.add_argument("--attention", default="default", help="UVIT_ATTENTION of the run (cudnn: cuDNN SDPA)")
    r.add_argument("--rc", type=int, required=True)
    r.add_argument("--seconds", type=float, default=None)
    r.add_argument("--json")
    r.add_argument("--stdout")
    t = sub.add_parser("table", help="print the table and write results.json")
    t.add_argument("--ours")
    t.add_argument("--twin")
    t.add_argument("--out")
    t.add_argument("--stages")
    t.add_argument("--gtest-xml")
    t.add_argument("--encoders", help="encoders.jsonl of bench/gpu/encoders.sh (older runs)")
    t.add_argument("--anchors", help="anchors.jsonl: GEMM rows, attention/VAE anchors, encoders")
    t.add_argument("--gtest-log", help="gtest_cuda.log (our attention timings)")
    t.add_argument("--profile", help="profile.txt (UVIT_CUDA_OPTIME and torch.profiler sections)")
    t.add_argument("--clocks", help="nvidia-smi csv: timestamp, SM MHz, memory MHz, W, C")
    t.add_argument("--windows", help="stage, start, end (epoch seconds) per line")
    t.add_argument("--device-name", default="")
    t.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak (H100/H200 SXM: 989)")
    a = ap.parse_args()
    return cmd_record(a) if a.cmd == "record" else cmd_table(a)


if __name__ == "__main__":
    sys.exit(main())
