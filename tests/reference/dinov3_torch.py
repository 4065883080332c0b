#!/usr/bin/python3
"""PyTorch twin of the DINOv3 ViT's forward_features(x)["x_norm_patchtokens"], written from the
facts in docs/svg_encoder.md (state_dict names of facebookresearch/dinov3; RoPE with coordinates
normalised per axis, rotate-half pairs; masked k bias; LayerScale; SwiGLU; LayerNorm eps 1e-5).
Evaluated in float64 from float32 weights, eval mode.

  dinov3_torch.py fixtures --out DIR       writes, per case (dinov3_tiny: D 32, 2 heads, depth 2,
                                           2 storage tokens, 2 images of 48 px; dinov3_vits16plus:
                                           the real geometry, 1 image of 256 px):
                                           CASE.json (config), CASE.safetensors (random weights,
                                           official names), CASE_x.npy, CASE_out.npy [B, L, D]
  dinov3_torch.py weights --out W.safetensors   random ViT-S+/16 weights (official names)
  dinov3_torch.py bench --threads T --iters N   ViT-S+/16 ms per 256-px image (float32, JSON)
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

VITS16PLUS = dict(patch_size=16, embed_dim=384, depth=12, num_heads=6, n_storage_tokens=4, ffn_ratio=6.0,
                  pos_embed_rope_base=100.0)


def swiglu_hidden(cfg):
    d = int(int(cfg["embed_dim"] * cfg["ffn_ratio"]) * 2 / 3)
    return d + (-d % 8)


def param_shapes(cfg):
    D, p, F, Dh = cfg["embed_dim"], cfg["patch_size"], swiglu_hidden(cfg), cfg["embed_dim"] // cfg["num_heads"]
    s = [("cls_token", (1, 1, D))]
    if cfg["n_storage_tokens"] > 0:
        s.append(("storage_tokens", (1, cfg["n_storage_tokens"], D)))
    s += [("mask_token", (1, D)), ("patch_embed.proj.weight", (D, 3, p, p)), ("patch_embed.proj.bias", (D,)),
          ("rope_embed.periods", (Dh // 4,))]
    for i in range(cfg["depth"]):
        b = "blocks.%d." % i
        s += [(b + "norm1.weight", (D,)), (b + "norm1.bias", (D,)), (b + "attn.qkv.weight", (3 * D, D)),
              (b + "attn.qkv.bias", (3 * D,)), (b + "attn.qkv.bias_mask", (3 * D,)),
              (b + "attn.proj.weight", (D, D)), (b + "attn.proj.bias", (D,)), (b + "ls1.gamma", (D,)),
              (b + "norm2.weight", (D,)), (b + "norm2.bias", (D,)), (b + "mlp.w1.weight", (F, D)),
              (b + "mlp.w1.bias", (F,)), (b + "mlp.w2.weight", (F, D)), (b + "mlp.w2.bias", (F,)),
              (b + "mlp.w3.weight", (D, F)), (b + "mlp.w3.bias", (D,)), (b + "ls2.gamma", (D,))]
    s += [("norm.weight", (D,)), ("norm.bias", (D,))]
    return s


def random_weights(cfg, gen):
    """Random float32 weights with every part active: LayerScale and biases away from their
    init, the official k-bias mask (1 for q and v, 0 for k) and the official periods."""
    D, Dh = cfg["embed_dim"], cfg["embed_dim"] // cfg["num_heads"]
    sd = {}
    for name, shape in param_shapes(cfg):
        if name.endswith("bias_mask"):
            t = torch.ones(shape)
            t[D:2 * D] = 0
        elif name == "rope_embed.periods":
            t = cfg["pos_embed_rope_base"] ** (2 * torch.arange(Dh // 4, dtype=torch.float32) / (Dh // 2))
        elif name.endswith("gamma"):
            t = 0.5 + 0.5 * torch.rand(shape, generator=gen)
        elif "norm" in name and name.endswith("weight"):
            t = 1 + 0.2 * torch.randn(shape, generator=gen)
        elif len(shape) >= 2 and name.endswith("weight"):
            fan_in = int(np.prod(shape[1:]))
            t = torch.randn(shape, generator=gen) / math.sqrt(fan_in)
        else:
            t = 0.1 * torch.randn(shape, generator=gen)
        sd[name] = t.float().contiguous()
    return sd


def rope_tables(cfg, periods, gh, gw, dtype):
    """sin, cos [gh*gw, Dh]: coords (i + 0.5) / gh per axis mapped to [-1, 1]; the first Dh/4
    angles use the row coordinate, the next Dh/4 the column; the Dh/2 angles tiled twice."""
    ch = torch.arange(0.5, gh, dtype=dtype) / gh
    cw = torch.arange(0.5, gw, dtype=dtype) / gw
    coords = torch.stack(torch.meshgrid(ch, cw, indexing="ij"), dim=-1).flatten(0, 1) * 2.0 - 1.0
    ang = (2 * math.pi * coords[:, :, None] / periods.to(dtype)[None, None, :]).flatten(1, 2)
    ang = torch.cat([ang, ang], dim=-1)
    return torch.sin(ang), torch.cos(ang)


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


def layer_norm(x, w, b, eps):
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), w, b, eps)


def patch_tokens(sd, cfg, x, dtype=torch.float64):
    """x [B, 3, S, S] -> x_norm_patchtokens [B, (S/p)^2, D]."""
    W = {k: v.to(dtype) for k, v in sd.items()}
    x = x.to(dtype)
    p, D, H = cfg["patch_size"], cfg["embed_dim"], cfg["num_heads"]
    Dh, E = D // H, 1 + cfg["n_storage_tokens"]
    B, gh, gw = x.shape[0], x.shape[2] // p, x.shape[3] // p
    t = torch.nn.functional.conv2d(x, W["patch_embed.proj.weight"], W["patch_embed.proj.bias"], stride=p)
    t = t.flatten(2).transpose(1, 2)
    prefix = [W["cls_token"].expand(B, -1, -1)]
    if cfg["n_storage_tokens"] > 0:
        prefix.append(W["storage_tokens"].expand(B, -1, -1))
    h = torch.cat(prefix + [t], dim=1)
    N = h.shape[1]
    sin, cos = rope_tables(cfg, sd["rope_embed.periods"], gh, gw, dtype)
    for i in range(cfg["depth"]):
        b = "blocks.%d." % i
        y = layer_norm(h, W[b + "norm1.weight"], W[b + "norm1.bias"], 1e-5)
        qkv_b = W[b + "attn.qkv.bias"] * W[b + "attn.qkv.bias_mask"]
        qkv = (y @ W[b + "attn.qkv.weight"].T + qkv_b).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = torch.cat([q[:, :, :E], q[:, :, E:] * cos + rotate_half(q[:, :, E:]) * sin], dim=2)
        k = torch.cat([k[:, :, :E], k[:, :, E:] * cos + rotate_half(k[:, :, E:]) * sin], dim=2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(Dh), dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, N, D)
        h = h + W[b + "ls1.gamma"] * (att @ W[b + "attn.proj.weight"].T + W[b + "attn.proj.bias"])
        y = layer_norm(h, W[b + "norm2.weight"], W[b + "norm2.bias"], 1e-5)
        g = torch.nn.functional.silu(y @ W[b + "mlp.w1.weight"].T + W[b + "mlp.w1.bias"])
        u = y @ W[b + "mlp.w2.weight"].T + W[b + "mlp.w2.bias"]
        h = h + W[b + "ls2.gamma"] * ((g * u) @ W[b + "mlp.w3.weight"].T + W[b + "mlp.w3.bias"])
    h = layer_norm(h, W["norm.weight"], W["norm.bias"], 1e-5)
    return h[:, E:]


CASES = [
    ("dinov3_tiny", dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, n_storage_tokens=2, ffn_ratio=6.0,
                         pos_embed_rope_base=100.0), 2, 48, 11),
    ("dinov3_vits16plus", VITS16PLUS, 1, 256, 12),
]


def write_case(out, name, cfg, B, S, seed):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_fixtures import write_safetensors
    gen = torch.Generator().manual_seed(seed)
    sd = random_weights(cfg, gen)
    x = torch.randn(B, 3, S, S, generator=gen).float()
    y = patch_tokens(sd, cfg, x).float()
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(cfg, f)
    write_safetensors(os.path.join(out, name + ".safetensors"), {k: v.numpy() for k, v in sd.items()})
    np.save(os.path.join(out, name + "_x.npy"), x.numpy())
    np.save(os.path.join(out, name + "_out.npy"), y.numpy())


def bench(threads, iters):
    torch.set_num_threads(threads)
    sd = random_weights(VITS16PLUS, torch.Generator().manual_seed(0))
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        patch_tokens(sd, VITS16PLUS, x, torch.float32)
        t0 = time.perf_counter()
        for _ in range(iters):
            patch_tokens(sd, VITS16PLUS, x, torch.float32)
        dt = (time.perf_counter() - t0) / iters
    print(json.dumps({"model": "dinov3_vits16plus", "image": 256, "threads": threads, "ms_per_image": 1e3 * dt}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["fixtures", "weights", "bench"])
    ap.add_argument("--out")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    a = ap.parse_args()
    if a.cmd == "bench":
        return bench(a.threads, a.iters)
    if a.cmd == "weights":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_fixtures import write_safetensors
        sd = random_weights(VITS16PLUS, torch.Generator().manual_seed(0))
        return write_safetensors(a.out, {k: v.numpy() for k, v in sd.items()})
    os.makedirs(a.out, exist_ok=True)
    for name, cfg, B, S, seed in CASES:
        write_case(a.out, name, cfg, B, S, seed)


if __name__ == "__main__":
    main()
