#!/usr/bin/env python3
"""PyTorch anchors at uvit's own shapes for scripts/gpu-check.sh (stage `anchors`, issue 17).

  anchors.py attention --out anchors.jsonl [--device cuda] [--shapes 128,16,258,72;128,8,257,64]
      torch SDPA's flash, mem-efficient, cuDNN and math backends, forward and backward, bf16, at
      (B, H, N, Dh) = U-ViT-H/2 (128, 16, 258, 72) and U-ViT-S/2 (128, 8, 257, 64). Useful TFLOP/s:
      4 B H N^2 Dh forward, 2.5x that backward (the convention of docs/gpu.md and of our
      CudaAttentionTiming test, whose figures summarize.py puts beside these). A backend that
      refuses a shape (flash and head dim 72, say) is recorded with its error.
  anchors.py vae --out anchors.jsonl [--device cuda] [--batch 50] [--latent 32]
      the SD kl-f8 decoder (tests/reference/autoencoder_torch.py, random weights) at 256 px,
      batch 50, with cudnn.benchmark on: fp32 NCHW (PyTorch's defaults: TF32 convolutions),
      fp16 autocast NCHW, fp16 autocast channels_last.

Times are CUDA-event medians of --iters runs after --warmup (perf_counter on the CPU). Every
torch 2.x API is guarded: on the dev machine's torch 1.13 the CPU dry run times the exact math
attention only (`--device cpu --tiny`).
"""

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_SHAPES = "128,16,258,72;128,8,257,64"


def median_ms(fn, device, iters, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            out.append(a.elapsed_time(b))
        else:
            t0 = time.perf_counter()
            fn()
            out.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(out)


def sdpa_backends():
    """name -> a context manager factory that restricts SDPA to that backend (or None: math by
    hand, for a torch without SDPA)."""
    if not hasattr(F, "scaled_dot_product_attention"):
        return {"math_manual": None}
    try:  # torch >= 2.3
        from torch.nn.attention import SDPBackend, sdpa_kernel
        out = {}
        for name, attr in (("flash", "FLASH_ATTENTION"), ("mem_efficient", "EFFICIENT_ATTENTION"),
                           ("cudnn", "CUDNN_ATTENTION"), ("math", "MATH")):
            if hasattr(SDPBackend, attr):
                out[name] = (lambda b=getattr(SDPBackend, attr): sdpa_kernel(b))
        return out
    except ImportError:
        pass
    ctx = getattr(torch.backends.cuda, "sdp_kernel", None)  # torch 2.0 - 2.2: no cuDNN backend
    if ctx is None:
        return {"math_manual": None}
    flags = {"flash": dict(enable_flash=True, enable_math=False, enable_mem_efficient=False),
             "mem_efficient": dict(enable_flash=False, enable_math=False, enable_mem_efficient=True),
             "math": dict(enable_flash=False, enable_math=True, enable_mem_efficient=False)}
    return {k: (lambda f=f: ctx(**f)) for k, f in flags.items()}


def attention(q, k, v, backend_ctx):
    if backend_ctx is None:  # exact math attention (torch < 2.0)
        s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
        return s.softmax(dim=-1) @ v
    with backend_ctx():
        return F.scaled_dot_product_attention(q, k, v)


def cmd_attention(a, device, common, emit):
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    shapes = [tuple(int(x) for x in s.split(",")) for s in a.shapes.split(";") if s.strip()]
    for B, H, N, Dh in shapes:
        g = torch.Generator(device="cpu").manual_seed(0)
        q, k, v, do = (torch.randn(B, H, N, Dh, generator=g).to(device, dtype) for _ in range(4))
        for t in (q, k, v):
            t.requires_grad_(True)
        fwd_flop = 4.0 * B * H * N * N * Dh
        for name, ctx in sdpa_backends().items():
            rec = dict(common, what="attn_anchor", impl="torch_sdpa", backend=name, B=B, H=H, N=N,
                       Dh=Dh, dtype=str(dtype).replace("torch.", ""))
            try:
                with torch.no_grad():
                    fwd = median_ms(lambda: attention(q, k, v, ctx), device, a.iters, a.warmup)
                out = attention(q, k, v, ctx)
                # Backward alone: the graph is kept, only the gradients are recomputed.
                bwd = median_ms(lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True),
                                device, a.iters, a.warmup)
                del out
                rec.update(fwd_ms=fwd, bwd_ms=bwd, fwd_tflops=fwd_flop / fwd / 1e9,
                           bwd_tflops=2.5 * fwd_flop / bwd / 1e9)
                what = f"fwd {fwd:.3f} ms {rec['fwd_tflops']:.1f} TFLOP/s, bwd {bwd:.3f} ms " \
                       f"{rec['bwd_tflops']:.1f} TFLOP/s"
            except Exception as e:  # noqa: BLE001 - a backend that refuses the shape
                rec["error"] = " | ".join(f"{type(e).__name__}: {e}".strip().splitlines())[:400]
                what = rec["error"]
            emit(rec, f"attention {name:13s} B={B} H={H} N={N} Dh={Dh}: {what}")
            if device.type == "cuda":
                torch.cuda.empty_cache()


def cmd_vae(a, device, common, emit):
    sys.path.insert(0, os.path.join(REPO, "tests", "reference"))
    import autoencoder_torch as at  # noqa: E402
    torch.backends.cudnn.benchmark = True
    model = at.sd_model(0).to(device).eval()
    g = torch.Generator(device="cpu").manual_seed(1)
    z = torch.randn(a.batch, 4, a.latent, a.latent, generator=g).to(device)
    # fp16 autocast on the GPU (what the official evaluation decodes under). The CPU dry run
    # keeps fp32 (torch 1.13's CPU autocast has no fp32 group_norm) but runs both layouts.
    if device.type == "cuda":
        variants = [("fp32_nchw", None, False), ("fp16_autocast_nchw", torch.float16, False),
                    ("fp16_autocast_channels_last", torch.float16, True)]
    else:
        variants = [("fp32_nchw", None, False), ("fp32_channels_last", None, True)]
    for name, dt, cl in variants:
        rec = dict(common, what="vae_anchor", impl="torch", variant=name, batch=a.batch,
                   px=8 * a.latent, cudnn_benchmark=True,
                   cudnn_tf32=torch.backends.cudnn.allow_tf32)
        try:
            m = model.to(memory_format=torch.channels_last) if cl else \
                model.to(memory_format=torch.contiguous_format)
            zz = z.to(memory_format=torch.channels_last) if cl else z.contiguous()
            ac = torch.autocast(device.type, dtype=dt) if dt is not None else contextlib.nullcontext()

            def run():
                with torch.no_grad(), ac:
                    m.decode(zz)
            t0 = time.perf_counter()
            run()  # cudnn.benchmark's algorithm search happens here
            if device.type == "cuda":
                torch.cuda.synchronize()
            rec["first_call_s"] = time.perf_counter() - t0
            ms = median_ms(run, device, a.iters, max(a.warmup - 1, 0))
            rec.update(median_ms=ms, img_s=a.batch / (ms / 1e3))
            what = f"{ms:.1f} ms per batch, {rec['img_s']:.1f} img/s (first call {rec['first_call_s']:.1f} s)"
        except Exception as e:  # noqa: BLE001 - recorded; the next variant still runs
            rec["error"] = " | ".join(f"{type(e).__name__}: {e}".strip().splitlines())[:400]
            what = rec["error"]
        emit(rec, f"vae decode {name:28s} batch {a.batch} at {8 * a.latent} px: {what}")
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["attention", "vae"])
    ap.add_argument("--out", required=True, help="JSON-lines file (appended)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--iters", type=int, default=None, help="timed runs (default 10 attention, 5 vae)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help="attention: B,H,N,Dh;...")
    ap.add_argument("--batch", type=int, default=50, help="vae: images per decode")
    ap.add_argument("--latent", type=int, default=32, help="vae: latent side (32: 256 px)")
    ap.add_argument("--tiny", action="store_true", help="CPU dry run: small shapes and batch")
    a = ap.parse_args()
    if a.iters is None:
        a.iters = 10 if a.what == "attention" else 5
    if a.tiny:
        a.shapes, a.batch, a.latent, a.iters, a.warmup = "2,2,17,72;2,2,9,64", 1, 4, 2, 1
    if a.iters < 1 or a.warmup < 0 or a.batch < 1:
        ap.error("--iters >= 1, --warmup >= 0 and --batch >= 1")
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("anchors.py: --device cuda but torch.cuda.is_available() is False")
    common = {"torch": torch.__version__,
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    with open(a.out, "a") as f:
        def emit(rec, line):
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print("anchors: " + line, flush=True)
        (cmd_attention if a.what == "attention" else cmd_vae)(a, device, common, emit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
