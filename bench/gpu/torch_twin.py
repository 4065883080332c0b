#!/usr/bin/env python3
"""PyTorch GPU baseline for scripts/gpu-check.sh (issues 4, 5 and 17).

The project's own twins of U-ViT (tests/reference/uvit_torch.py) and of DiT / Skip-DiT
(tests/reference/dit_torch.py, configs whose nnet name is dit or skip_dit) with their attention
swapped for F.scaled_dot_product_attention (same qkv layout), bf16 autocast over fp32 master weights,
fused AdamW; eager and torch.compile. Per case it records forward NFE/s or training img/s (median of
--iters timed iterations after --warmup, CUDA events) and peak memory (max_memory_allocated over
the timed steps, after warm-up, so optimizer state is counted).

Usage:
  python3 bench/gpu/torch_twin.py --out twin.jsonl [--device cuda] [--batch 128] [--cases LIST]
                                  [--budget-s 170] [--iters 10] [--warmup 3]
  python3 bench/gpu/torch_twin.py --list                       # default and known cases
  /usr/bin/python3 bench/gpu/torch_twin.py --device cpu --tiny --out /tmp/twin.jsonl   # smoke test
  python3 bench/gpu/torch_twin.py --profile --cases forward:imagenet256_uvit_huge:eager ...
      after each case's timing, torch.profiler over --profile-steps more steps: the kernel table
      (key_averages sorted by CUDA time, top 40) and the kernels' total against the steps' wall
      time, printed (scripts/gpu-check.sh's `profile` stage puts it beside UVIT_CUDA_OPTIME's).

A case is MODE:CONFIG:IMPL[:ckpt|:nockpt] (MODE forward|train, IMPL eager|compiled, CONFIG a
configs/*.json name). One JSON object per case is appended to --out as soon as it is measured;
a failing case (compile error, OOM) is recorded with "error" and the next case runs. Cases that
would not fit in --budget-s (estimated) are recorded as skipped.
"""

import argparse
import gc
import inspect
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
import traceback

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
import dit_torch  # noqa: E402
import uvit_torch  # noqa: E402

S, H = "cifar10_uvit_small", "imagenet256_uvit_huge"
# Eager first, then compiled (the slowest and likeliest to fail), so a short budget still yields
# the eager baseline. Compiled training of the huge model only with --cases (about 3 min cold).
DEFAULT_CASES = [
    f"forward:{S}:eager", f"forward:{H}:eager",
    f"train:{S}:eager:nockpt", f"train:{H}:eager:nockpt", f"train:{H}:eager:ckpt",
    f"forward:{S}:compiled", f"forward:{H}:compiled", f"train:{S}:compiled:nockpt",
]
DIT = "dit_xl_2"  # issue 17's DiT-XL/2 rows (with --cases, or 'all')
EXTRA_CASES = [f"train:{S}:eager:ckpt", f"train:{H}:compiled:nockpt", f"train:{H}:compiled:ckpt",
               f"forward:{DIT}:eager", f"train:{DIT}:eager:nockpt", f"forward:{DIT}:compiled",
               f"train:{DIT}:compiled:nockpt"]
# Rough wall seconds per case on an H100 (model build, cold compile, timing), for the budget.
ESTIMATE_S = {("forward", "eager"): 10, ("train", "eager"): 15, ("forward", "compiled"): 60,
              ("train", "compiled"): 100}

HAVE_SDPA = hasattr(F, "scaled_dot_product_attention")
MATH_ATTENTION_FORWARD = uvit_torch.Attention.forward  # the twin's exact attention, before the swap


def sdpa_attention_forward(self, x):
    """SPEC 2.5: qkv feature = k*D + h*Dh + d (k outermost); heads merged back as h*Dh + d."""
    B, N, C = x.shape
    Hh = self.num_heads
    qkv = self.qkv(x).reshape(B, N, 3, Hh, C // Hh).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [B, H, N, Dh]
    if HAVE_SDPA:
        if abs(self.scale - (C // Hh) ** -0.5) < 1e-12:
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            o = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
    else:  # torch < 2.0 (the dev machine's 1.13): exact math attention
        o = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1) @ v
    return self.proj(o.transpose(1, 2).reshape(B, N, C))


def block_forward(self, x, skip=None, temb=None):
    # Non-reentrant checkpointing: the reentrant default warns in torch 2.x and breaks compile.
    # The signature follows uvit_torch.Block.forward (temb: time_cond adaln).
    if self.use_checkpoint and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(self._forward, x, skip, temb, use_reentrant=False)
    return self._forward(x, skip, temb)


def layernorm_fp32_forward(self, x):
    # What CUDA autocast does for layer_norm (fp32 op list); CPU autocast in torch 1.13 lacks it.
    return F.layer_norm(x.float(), self.normalized_shape, self.weight, self.bias, self.eps)


class Unavailable(RuntimeError):
    """A feature this torch lacks (recorded without a traceback)."""


def check_sdpa(device):
    """Max |SDPA twin - math twin| on a small fp32 attention (guards the layout swap)."""
    torch.manual_seed(0)
    old, uvit_torch._BUILD_DEVICE = uvit_torch._BUILD_DEVICE, device
    try:
        att = uvit_torch.Attention(72 * 2, num_heads=2)
    finally:
        uvit_torch._BUILD_DEVICE = old
    x = torch.randn(3, 17, 144, device=device)
    with torch.no_grad():
        ref = MATH_ATTENTION_FORWARD(att, x)
        got = sdpa_attention_forward(att, x)
    return float((ref - got).abs().max())


def load_net_kwargs(config, tiny):
    """The twin's constructor arguments; "name" says which twin (uvit, dit or skip_dit)."""
    path = config if config.endswith(".json") else os.path.join(REPO, "configs", config + ".json")
    with open(path) as f:
        doc = json.load(f)
    cfg = doc.get("nnet", doc)
    name = cfg.get("name", "uvit")
    if name in ("dit", "skip_dit"):
        kw = dit_torch.full_config(cfg)
        if tiny:
            kw.update(input_size=8, hidden_size=64, depth=4, num_heads=2)
        return kw
    if name != "uvit":
        raise SystemExit(f"torch_twin.py: {path}: only uvit, dit and skip_dit networks are benchmarked")
    allowed = set(inspect.signature(uvit_torch.UViT.__init__).parameters) - {"self", "norm_layer"}
    kw = {k: v for k, v in cfg.items() if k in allowed}
    if tiny:  # CPU smoke test: same structure (classes, channels, conv, skip), small sizes
        kw.update(img_size=8, embed_dim=64, depth=4, num_heads=2)
    kw["name"] = "uvit"
    return kw


def build_net(kw):
    args = {k: v for k, v in kw.items() if k != "name"}
    if kw["name"] == "uvit":
        return uvit_torch.UViT(**args)
    args.pop("use_checkpoint", None)  # the DiT twin keeps every activation
    return dit_torch.DiT(skip=kw["name"] == "skip_dit", **args)


def net_input(kw):
    """(channels, side, classes) of the network's input."""
    if kw["name"] == "uvit":
        return kw["in_chans"], kw["img_size"], kw.get("num_classes", -1)
    return kw["in_channels"], kw["input_size"], kw["num_classes"]


def dit_forward_flops(kw):
    """2 FLOPs per multiply-add, the count of src/models/dit.cpp dit_flops (DiT, Skip-DiT)."""
    D, p, C, L = kw["hidden_size"], kw["patch_size"], kw["in_channels"], (kw["input_size"] // kw["patch_size"]) ** 2
    Hd = int(D * kw["mlp_ratio"])
    f = 2 * L * D * C * p * p + 2 * (dit_torch.FREQ_DIM * D + D * D)
    f += kw["depth"] * (2 * L * D * (3 * D + D + 2 * Hd) + 4 * L * L * D + 2 * D * 6 * D)
    if kw["name"] == "skip_dit":
        f += (kw["depth"] // 2) * 2 * L * 2 * D * D
    return f + 2 * L * D * p * p * (2 * C if kw["learn_sigma"] else C) + 2 * D * 2 * D


def forward_flops(kw):
    """2 FLOPs per multiply-add (same count as src/models/uvit_params.cpp forward_flops)."""
    if kw["name"] != "uvit":
        return dit_forward_flops(kw)
    D, p, C, S_ = kw["embed_dim"], kw["patch_size"], kw["in_chans"], kw["img_size"]
    L = (S_ // p) ** 2
    N = L + (2 if kw.get("num_classes", -1) > 0 else 1)
    Hd = int(D * kw.get("mlp_ratio", 4.0))
    side = kw["depth"] // 2
    per_block = 2 * N * D * 3 * D + 2 * 2 * N * N * D + 2 * N * D * D + 2 * 2 * N * D * Hd
    f = (2 * side + 1) * per_block
    if kw.get("skip", True):
        f += side * 2 * N * 2 * D * D
    f += 2 * L * D * p * p * C + 2 * N * D * p * p * C
    if kw.get("mlp_time_embed", False):
        f += 2 * 2 * D * 4 * D
    if kw.get("conv", True):
        f += 2.0 * S_ * S_ * C * C * 9
    return f


def make_adamw(params, device):
    kw = dict(lr=2e-4, weight_decay=0.03, betas=(0.99, 0.999), eps=1e-8)
    try:
        return torch.optim.AdamW(params, fused=True, **kw), "adamw_fused"
    except (TypeError, RuntimeError, ValueError):  # torch without fused AdamW for this device
        return torch.optim.AdamW(params, **kw), "adamw"


class Timer:
    """Per-iteration seconds: CUDA events on the GPU, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def run(self, fn, iters):
        out = []
        for _ in range(iters):
            if self.cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                out.append(a.elapsed_time(b) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                out.append(time.perf_counter() - t0)
        return out


def run_case(spec, args, device):
    parts = spec.split(":")
    if len(parts) not in (3, 4) or parts[0] not in ("forward", "train") or \
            parts[2] not in ("eager", "compiled") or (len(parts) == 4 and parts[3] not in ("ckpt", "nockpt")):
        raise ValueError(f"bad case {spec!r}: expected MODE:CONFIG:IMPL[:ckpt|:nockpt]")
    mode, config, impl = parts[:3]
    kw = load_net_kwargs(config, args.tiny)
    ckpt = (parts[3] == "ckpt") if len(parts) == 4 else False
    if ckpt and kw["name"] != "uvit":
        raise ValueError(f"bad case {spec!r}: the DiT twin has no activation checkpointing")
    kw["use_checkpoint"] = ckpt and mode == "train"
    rec = {"impl": "torch_" + impl, "config": config, "mode": mode, "use_checkpoint": kw["use_checkpoint"],
           "batch": args.batch, "precision": "bf16-autocast" if args.bf16 else "fp32",
           "attention": "sdpa" if HAVE_SDPA else "math", "tiny": args.tiny,
           "forward_gflop_per_img": forward_flops(kw) / 1e9}

    torch.manual_seed(0)
    old, uvit_torch._BUILD_DEVICE = uvit_torch._BUILD_DEVICE, device
    try:
        net = build_net(kw)  # built (and initialised) directly on the device
    finally:
        uvit_torch._BUILD_DEVICE = old
    B = args.batch
    g = torch.Generator(device="cpu").manual_seed(1)
    chans, side, classes = net_input(kw)
    x = torch.randn(B, chans, side, side, generator=g).to(device)
    t = (torch.rand(B, generator=g) * 999).to(device)
    y = (torch.arange(B) % classes).to(device) if classes > 0 else None
    rec["params"] = sum(p.numel() for p in net.parameters())

    fn = net
    if impl == "compiled":
        if not hasattr(torch, "compile"):
            raise Unavailable(f"torch.compile is not available in torch {torch.__version__}")
        fn = torch.compile(net, mode=args.compile_mode) if args.compile_mode else torch.compile(net)
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else \
        (lambda: torch.autocast(device.type, enabled=False))

    if mode == "forward":
        net.eval()

        def step():
            with torch.no_grad(), autocast():
                fn(x, t, y)
    else:
        net.train()
        opt, rec["optimizer"] = make_adamw(net.parameters(), device)
        # The output's shape (DiT's learned sigma doubles the channels): an MSE over all of it
        # stands in for the hybrid loss, whose vb term is element-wise.
        out_chans = 2 * chans if kw.get("learn_sigma") else chans
        target = torch.randn(B, out_chans, side, side, generator=g).to(device)
        # The EMA copy the official trainer keeps (uvit bench's train step updates one too).
        params = [p for p in net.parameters()]
        ema = [p.detach().clone() for p in params]
        rec["ema"] = True

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = fn(x, t, y)
            F.mse_loss(out.float(), target).backward()  # eps-MSE in fp32
            opt.step()
            with torch.no_grad():
                if hasattr(torch, "_foreach_lerp_"):
                    torch._foreach_lerp_(ema, params, 1 - 0.9999)
                else:  # torch 1.x (the CPU smoke test)
                    torch._foreach_mul_(ema, 0.9999)
                    torch._foreach_add_(ema, params, alpha=1 - 0.9999)

    timer = Timer(device)
    t0 = time.perf_counter()
    step()  # compiles when impl == compiled
    timer.sync()
    rec["first_call_s"] = time.perf_counter() - t0
    for _ in range(max(args.warmup - 1, 0)):
        step()
    timer.sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()  # peak of steady-state steps (weights, grads, moments)
    secs = timer.run(step, args.iters)
    med = statistics.median(secs)
    rec.update(warmup=args.warmup, iters=args.iters, median_s=med, min_s=min(secs), img_s=B / med)
    if mode == "forward":
        rec["nfe_s"] = B / med
    if device.type == "cuda":
        rec["peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        rec["peak_reserved_mb"] = torch.cuda.max_memory_reserved() / 2 ** 20
    else:
        rec["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    mult = 3 if mode == "train" else 1
    rec["tflop_s"] = mult * forward_flops(kw) * B / med / 1e12
    if args.profile:
        rec.update(profile_table(spec, step, timer, device, args.profile_steps))
    return rec


def evt_us(e, what):
    """An event's CUDA (device) microseconds under torch 1.13's and 2.x's attribute names."""
    for name in (f"{what}device_time_total", f"{what}cuda_time_total"):
        v = getattr(e, name, None)
        if isinstance(v, (int, float)):
            return float(v)
    return 0.0


def profile_table(spec, step, timer, device, steps):
    """torch.profiler over `steps` steps: prints the top-40 table, returns the per-step sums."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    timer.sync()
    t0 = time.perf_counter()
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        timer.sync()
    wall_ms = 1e3 * (time.perf_counter() - t0) / steps
    ka = prof.key_averages()
    # The GPU kernels' own events (kineto gives them device type CUDA); an operator's row repeats
    # its kernels' time, so only the kernel rows are summed (as the table's "Self CUDA time total").
    kernels_ms = sum(evt_us(e, "self_") for e in ka
                     if str(getattr(e, "device_type", "")).endswith("CUDA")) / 1e3 / steps
    table = None
    for key in (("self_cuda_time_total", "cuda_time_total", "self_device_time_total",
                 "device_time_total") if device.type == "cuda" else ("self_cpu_time_total",)):
        try:
            table = ka.table(sort_by=key, row_limit=40, max_name_column_width=90)
            break
        except (AttributeError, KeyError, TypeError, ValueError):
            continue
    print(f"\n== torch.profiler: {spec}, {steps} steps: wall {wall_ms:.3f} ms per step, GPU kernels "
          f"{kernels_ms:.3f} ms per step ({100 * kernels_ms / wall_ms if wall_ms else 0:.1f}%), "
          f"gap {wall_ms - kernels_ms:.3f} ms (the profiler itself adds host time)", flush=True)
    print(table if table is not None else "(no table: unknown sort keys in this torch)", flush=True)
    return {"profile_steps": steps, "profile_wall_ms": wall_ms, "profile_kernels_ms": kernels_ms}


def cleanup(device):
    gc.collect()
    if hasattr(torch, "_dynamo"):
        try:
            torch._dynamo.reset()
        except Exception:  # noqa: BLE001 - best effort between cases
            pass
    if device.type == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description="PyTorch U-ViT twin GPU baseline (SDPA, bf16 autocast).")
    ap.add_argument("--out", help="JSON-lines file (appended)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=None, help="default 128 (2 with --tiny)")
    ap.add_argument("--iters", type=int, default=None, help="timed iterations (default 10; 2 with --tiny)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed iterations (default 3; 1 with --tiny)")
    ap.add_argument("--cases", default="default",
                    help="comma list of MODE:CONFIG:IMPL[:ckpt|:nockpt], or 'default' / 'all'")
    ap.add_argument("--budget-s", type=float, default=170.0,
                    help="skip cases whose estimated cost would overrun this many seconds (0: no limit)")
    ap.add_argument("--compile-mode", default="", help="torch.compile mode (default: torch's default)")
    ap.add_argument("--fp32", dest="bf16", action="store_false", help="no autocast (fp32 throughout)")
    ap.add_argument("--tiny", action="store_true", help="small shapes for a CPU smoke test")
    ap.add_argument("--list", action="store_true", help="print the default and extra cases")
    ap.add_argument("--profile", action="store_true",
                    help="also print torch.profiler's kernel table of each case (top 40)")
    ap.add_argument("--profile-steps", type=int, default=2, help="steps under the profiler (default 2)")
    args = ap.parse_args()
    if args.list:
        print("default:", ",".join(DEFAULT_CASES))
        print("extra:  ", ",".join(EXTRA_CASES))
        return 0
    if not args.out:
        ap.error("--out is required")
    args.batch = args.batch or (2 if args.tiny else 128)
    args.iters = args.iters or (2 if args.tiny else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 3)
    if args.batch < 1 or args.iters < 1 or args.warmup < 1:
        ap.error("--batch, --iters and --warmup must be >= 1")
    cases = {"default": DEFAULT_CASES, "all": DEFAULT_CASES + EXTRA_CASES}.get(args.cases)
    cases = cases or [c.strip() for c in args.cases.split(",") if c.strip()]

    for spec in cases:  # fail early on a typo, before any model is built
        p = spec.split(":")
        ok = len(p) in (3, 4) and p[0] in ("forward", "train") and p[2] in ("eager", "compiled") and \
            (len(p) == 3 or p[3] in ("ckpt", "nockpt"))
        path = p[1] if len(p) > 1 and p[1].endswith(".json") else \
            os.path.join(REPO, "configs", (p[1] if len(p) > 1 else "") + ".json")
        if not ok or not os.path.isfile(path):
            ap.error(f"case {spec!r}: expected MODE:CONFIG:IMPL[:ckpt|:nockpt] with MODE forward|train, "
                     f"IMPL eager|compiled and CONFIG in configs/ ({path} not found)" if ok else
                     f"case {spec!r}: expected MODE:CONFIG:IMPL[:ckpt|:nockpt] with MODE forward|train, "
                     f"IMPL eager|compiled")

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("torch_twin.py: --device cuda but torch.cuda.is_available() is False")
    uvit_torch.Attention.forward = sdpa_attention_forward
    dit_torch.Attention.forward = sdpa_attention_forward  # the same qkv layout and attributes
    uvit_torch.Block.forward = block_forward
    if device.type == "cpu" and args.bf16:
        torch.nn.LayerNorm.forward = layernorm_fp32_forward

    common = {"torch": torch.__version__, "python": platform.python_version(),
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
              (platform.processor() or platform.machine())}
    err = check_sdpa(device)
    common["sdpa_check_max_abs_err"] = err
    print(f"torch_twin: torch {common['torch']} on {common['device']}; attention "
          f"{'sdpa' if HAVE_SDPA else 'math (no SDPA in this torch)'}; sdpa-vs-math max err {err:.2e}",
          flush=True)
    if not err < 1e-4:
        print("torch_twin: WARNING: SDPA attention differs from the twin's math attention", flush=True)

    t_start = time.perf_counter()
    failures = 0
    with open(args.out, "a") as out:
        for spec in cases:
            c0 = time.perf_counter()
            parts = spec.split(":")
            est = ESTIMATE_S.get((parts[0], parts[2] if len(parts) > 2 else ""), 30)
            used = c0 - t_start
            if args.budget_s > 0 and used + est > args.budget_s:
                rec = {"case": spec, "skipped": f"budget: {used:.0f}s used, ~{est}s needed, "
                                                 f"--budget-s {args.budget_s:.0f}"}
            else:
                try:
                    rec = run_case(spec, args, device)
                    rec["case"] = spec
                except Exception as e:  # noqa: BLE001 - record and go on (compile errors, OOM)
                    failures += 1
                    if not isinstance(e, Unavailable):
                        traceback.print_exc()
                    msg = f"{type(e).__name__}: {e}".strip().splitlines()
                    rec = {"case": spec, "error": " | ".join(msg)[:800]}
                cleanup(device)
            rec["case_s"] = time.perf_counter() - c0
            rec.update(common)
            out.write(json.dumps(rec) + "\n")
            out.flush()
            what = rec.get("error") or rec.get("skipped") or \
                f"{rec['img_s']:.1f} img/s, peak {rec.get('peak_mem_mb', rec.get('peak_rss_mb', math.nan)):.0f} MB, " \
                f"first call {rec['first_call_s']:.1f}s"
            print(f"torch_twin: {spec}: {what} ({rec['case_s']:.1f}s)", flush=True)
    print(f"torch_twin: {len(cases)} cases, {failures} failed, {time.perf_counter() - t_start:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
