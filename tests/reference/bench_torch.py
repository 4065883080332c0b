#!/usr/bin/python3
"""Times the PyTorch twins, U-ViT and DiT / Skip-DiT (the baseline for bench/ comparisons).

Usage: /usr/bin/python3 bench_torch.py --config FILE.json --batch B [--threads 2] [--iters N]
                                       [--mode forward|train|both] [--precision fp32|bf16]

FILE.json is a network config (CASE.json format: constructor args + "name"), or a preset with an
"nnet" section. Each mode runs in a fresh process so its peak RSS is its own. Prints one JSON line:
{"forward_img_s", "train_img_s", "peak_rss_mb_forward", "peak_rss_mb_train", ...} (only the modes run).
--precision bf16: PyTorch's own CPU bf16. Training runs under torch.autocast('cpu',
dtype=torch.bfloat16) (bf16 matmuls and convolutions through oneDNN, fp32 parameters and
optimizer); the forward casts the network and its inputs to bf16 instead (no fp32 weights left to
cast per call: PyTorch's fastest bf16 inference). torch 1.13's CPU autocast leaves layer_norm out
of its cast lists, and its CPU layer_norm refuses a bf16 input with fp32 weights ("expected scalar
type BFloat16 but found Float": U-ViT's out-blocks normalise the bf16 output of skip_linear), so
under autocast every LayerNorm input is cast to fp32 first, which is the policy later PyTorch
versions' CPU autocast applies to layer_norm (its fp32 list).
"""
import contextlib

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from uvit_torch import UViT, UViT_t2i  # noqa: E402


def load_net_config(path):
    """(builder, kwargs, family): a U-ViT twin, or a DiT / Skip-DiT / LightningDiT twin (dit_torch.py,
    lightningdit_torch.py)."""
    with open(path) as f:
        doc = json.load(f)
    cfg = doc.get("nnet", doc)
    name = cfg.get("name", "uvit")
    if name in ("dit", "skip_dit"):
        import dit_torch  # noqa: E402
        full = dit_torch.full_config(cfg)
        return (lambda **kw: dit_torch.build_from_config(full)), full, "dit"
    if name == "lightningdit":
        import lightningdit_torch  # noqa: E402
        full = lightningdit_torch.full_config(cfg)
        return (lambda **kw: lightningdit_torch.build_from_config(full)), full, "dit"
    if name == "lavin_dit":
        import lavin_dit_torch  # noqa: E402
        full = lavin_dit_torch.full_config(cfg)
        return (lambda **kw: lavin_dit_torch.build_from_config(full)), full, "lavin"
    if name not in ("uvit", "uvit_t2i"):
        raise SystemExit("bench_torch.py: %s: unknown network name %r" % (path, name))
    cls = UViT if name == "uvit" else UViT_t2i
    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", "norm_layer"}
    return cls, {k: v for k, v in cfg.items() if k in allowed}, name


def make_batch(kw, family, batch, g):
    if family == "dit":
        S, C = kw["input_size"], kw["in_channels"]
        x = torch.randn(batch, C, S, S, generator=g)
        t = torch.randint(0, 1000, (batch,), generator=g).float()
        return x, t, [torch.randint(0, kw["num_classes"], (batch,), generator=g)]
    if family == "lavin":  # the conditioning frames [B, T_c, C, S, S] as the context
        S, C, T = kw["input_size"], kw["in_channels"], kw["num_frames"]
        return (torch.randn(batch, C, S, S, generator=g), torch.rand(batch, generator=g),
                [torch.randn(batch, T, C, S, S, generator=g)])
    S, C = kw.get("img_size", 224), kw.get("in_chans", 3)
    x = torch.randn(batch, C, S, S, generator=g)
    t = torch.rand(batch, generator=g) * 999
    extra = []
    if family == "uvit" and kw.get("num_classes", -1) > 0:
        extra = [torch.randint(0, kw["num_classes"], (batch,), generator=g)]
    elif family == "uvit_t2i":
        extra = [torch.randn(batch, kw.get("num_clip_token", 77), kw.get("clip_dim", 768), generator=g)]
    return x, t, extra


def child(args):
    """Runs one mode in this process; prints {"img_s": ..., "peak_rss_mb": ...}."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cls, kw, family = load_net_config(args.config)
    net = cls(**kw)
    g = torch.Generator().manual_seed(1)
    x, t, extra = make_batch(kw, family, args.batch, g)
    if args.mode == "forward":
        net.eval()
        if args.precision == "bf16":
            net = net.to(torch.bfloat16)
            x, t = x.to(torch.bfloat16), t.to(torch.bfloat16)
            extra = [e.to(torch.bfloat16) if e.is_floating_point() else e for e in extra]

        def step():
            with torch.no_grad():
                net(x, t, *extra)
    else:
        net.train()
        if args.precision == "bf16":
            for m in net.modules():
                if isinstance(m, torch.nn.LayerNorm):
                    m.register_forward_pre_hook(lambda _m, a: (a[0].float(),) + tuple(a[1:]))
        opt = torch.optim.AdamW(net.parameters(), lr=2e-4, weight_decay=0.03, betas=(0.99, 0.999))
        with torch.no_grad():
            out_shape = net(x[:1], t[:1], *[e[:1] for e in extra]).shape[1:]
        target = torch.randn((x.shape[0],) + tuple(out_shape), generator=g)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.mse_loss(net(x, t, *extra), target)
            loss.backward()
            opt.step()

    autocast = args.precision == "bf16" and args.mode == "train"
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if autocast else contextlib.nullcontext
    for _ in range(args.warmup):
        with ctx():
            step()
    times = []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        with ctx():
            step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    print(json.dumps({"img_s": args.batch / med, "peak_rss_mb": rss_mb, "median_s": med}))


def main():
    ap = argparse.ArgumentParser(description="Times the PyTorch U-ViT twin.")
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mode", choices=["forward", "train", "both"], default="both")
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.batch < 1 or args.iters < 1 or args.threads < 1 or args.warmup < 0:
        raise SystemExit("bench_torch.py: --batch, --iters, --threads must be >= 1")
    load_net_config(args.config)  # fail early on a bad config

    if args.child:
        return child(args)

    result = {}
    for mode in (["forward", "train"] if args.mode == "both" else [args.mode]):
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "--config", args.config,
               "--batch", str(args.batch), "--threads", str(args.threads), "--iters", str(args.iters),
               "--warmup", str(args.warmup), "--mode", mode, "--precision", args.precision]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.stderr.write(p.stderr)
            raise SystemExit("bench_torch.py: %s run failed (exit %d)" % (mode, p.returncode))
        r = json.loads(p.stdout.strip().splitlines()[-1])
        result[mode + "_img_s"] = r["img_s"]
        result["peak_rss_mb_" + mode] = r["peak_rss_mb"]
    result.update({"batch": args.batch, "threads": args.threads, "iters": args.iters,
                   "precision": args.precision, "torch": torch.__version__})
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
