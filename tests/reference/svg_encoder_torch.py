#!/usr/bin/python3
"""PyTorch twin of SVG's encoder (shiml20/SVG DinoDecoder.encode), written from the facts in
docs/svg_encoder.md: DINOv3 patch tokens (dinov3_torch.py), the residual torchvision
VisionTransformer (no torchvision here: its forward written out from the documented layout) with
the Linear -> GELU -> Linear head, match_distribution over the whole batch, concatenation.
Evaluated in float64 from float32 weights.

  svg_encoder_torch.py fixtures --out DIR   svg_tiny.json (our encoder config), svg_tiny.safetensors
                                            (the residual branch "extra_vit.*" and the DINOv3
                                            weights as the checkpoint's "encoder.*", plus decoder-like
                                            tensors a loader must skip), svg_tiny_dinov3.safetensors
                                            (the DINOv3 part by official names), svg_tiny_x.npy
                                            (3 images in [-1, 1]), svg_tiny_out.npy (whole-batch
                                            statistics), svg_tiny_out1.npy (one image per group)
  svg_encoder_torch.py weights --out DIR    the same tiny weights and config only (for the e2e test)
  svg_encoder_torch.py weights --size official --out DIR
                                            svg_official.safetensors: random residual-branch weights
                                            at the official sizes (for bench/svg_encoder_bench.cpp)
  svg_encoder_torch.py encode --dir DIR --images X.npy --out Y.npy
                                            features of images [B, 3, S, S] in [-1, 1], one image
                                            per statistics group
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dinov3_torch  # noqa: E402

TINY = {
    "dinov3": dict(patch_size=16, embed_dim=32, depth=2, num_heads=2, n_storage_tokens=4, ffn_ratio=6.0,
                   pos_embed_rope_base=100.0),
    "residual": dict(image_size=256, patch_size=16, num_layers=2, num_heads=4, hidden_dim=32, mlp_dim=64,
                     output_dim=8),
    "use_outnorm": True,
}


def residual_shapes(r):
    D, p, G = r["hidden_dim"], r["patch_size"], r["image_size"] // r["patch_size"]
    s = [("class_token", (1, 1, D)), ("conv_proj.weight", (D, 3, p, p)), ("conv_proj.bias", (D,)),
         ("encoder.pos_embedding", (1, G * G + 1, D))]
    for i in range(r["num_layers"]):
        b = "encoder.layers.encoder_layer_%d." % i
        s += [(b + "ln_1.weight", (D,)), (b + "ln_1.bias", (D,)),
              (b + "self_attention.in_proj_weight", (3 * D, D)), (b + "self_attention.in_proj_bias", (3 * D,)),
              (b + "self_attention.out_proj.weight", (D, D)), (b + "self_attention.out_proj.bias", (D,)),
              (b + "ln_2.weight", (D,)), (b + "ln_2.bias", (D,)), (b + "mlp.0.weight", (r["mlp_dim"], D)),
              (b + "mlp.0.bias", (r["mlp_dim"],)), (b + "mlp.3.weight", (D, r["mlp_dim"])), (b + "mlp.3.bias", (D,))]
    s += [("encoder.ln.weight", (D,)), ("encoder.ln.bias", (D,)), ("heads.0.weight", (D, D)), ("heads.0.bias", (D,)),
          ("heads.2.weight", (r["output_dim"], D)), ("heads.2.bias", (r["output_dim"],))]
    return [("extra_vit." + n, sh) for n, sh in s]


def random_residual(r, gen):
    sd = {}
    for name, shape in residual_shapes(r):
        if "ln" in name and name.endswith("weight"):
            t = 1 + 0.2 * torch.randn(shape, generator=gen)
        elif len(shape) >= 2 and ("weight" in name):
            t = torch.randn(shape, generator=gen) / math.sqrt(int(np.prod(shape[1:])))
        else:
            t = 0.1 * torch.randn(shape, generator=gen)
        sd[name] = t.float().contiguous()
    return sd


def residual_forward(sd, r, x, dtype=torch.float64):
    """VisionTransformer._process_input, class token, Encoder (+ pos_embedding, blocks, ln), patch
    tokens, heads; returns [B, output_dim, L]."""
    W = {k[len("extra_vit."):]: v.to(dtype) for k, v in sd.items() if k.startswith("extra_vit.")}
    x = x.to(dtype)
    D, H = r["hidden_dim"], r["num_heads"]
    Dh = D // H
    B = x.shape[0]
    t = torch.nn.functional.conv2d(x, W["conv_proj.weight"], W["conv_proj.bias"], stride=r["patch_size"])
    t = t.reshape(B, D, -1).permute(0, 2, 1)
    h = torch.cat([W["class_token"].expand(B, -1, -1), t], dim=1) + W["encoder.pos_embedding"]
    N = h.shape[1]
    for i in range(r["num_layers"]):
        b = "encoder.layers.encoder_layer_%d." % i
        y = dinov3_torch.layer_norm(h, W[b + "ln_1.weight"], W[b + "ln_1.bias"], 1e-6)
        qkv = (y @ W[b + "self_attention.in_proj_weight"].T + W[b + "self_attention.in_proj_bias"])
        q, k, v = qkv.reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(Dh), dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, N, D)
        h = h + a @ W[b + "self_attention.out_proj.weight"].T + W[b + "self_attention.out_proj.bias"]
        y = dinov3_torch.layer_norm(h, W[b + "ln_2.weight"], W[b + "ln_2.bias"], 1e-6)
        y = torch.nn.functional.gelu(y @ W[b + "mlp.0.weight"].T + W[b + "mlp.0.bias"])
        h = h + y @ W[b + "mlp.3.weight"].T + W[b + "mlp.3.bias"]
    h = dinov3_torch.layer_norm(h, W["encoder.ln.weight"], W["encoder.ln.bias"], 1e-6)[:, 1:]
    h = torch.nn.functional.gelu(h @ W["heads.0.weight"].T + W["heads.0.bias"])
    h = h @ W["heads.2.weight"].T + W["heads.2.bias"]
    return h.transpose(1, 2)


def match_distribution(h, v, eps=1e-6):
    """h [B, Ch, L], v [B, Cv, L]: v to h's scalar mean (of channel means) and std (mean of the
    channels' unbiased stds over batch and tokens)."""
    mh, sh = h.mean(dim=(0, 2)).mean(), h.std(dim=(0, 2)).mean()
    mv, sv = v.mean(dim=(0, 2)).mean(), v.std(dim=(0, 2)).mean()
    return (v - mv) / (sv + eps) * sh + mh


def encode(sd_svg, sd_dino, cfg, x, group=None):
    """x [B, 3, S, S] in [-1, 1] -> [B, Ch + Cv, S/16, S/16]; statistics over groups of `group`
    images (None: the whole batch, as the official code)."""
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    xd = ((x.double() + 1.0) / 2.0 - mean) / std
    h = dinov3_torch.patch_tokens(sd_dino, cfg["dinov3"], xd).permute(0, 2, 1)
    v = residual_forward(sd_svg, cfg["residual"], xd)
    B, G = x.shape[0], x.shape[2] // 16
    g = group or B
    if cfg.get("use_outnorm", True):
        v = torch.cat([match_distribution(h[i:i + g], v[i:i + g]) for i in range(0, B, g)])
    return torch.cat([h, v], dim=1).reshape(B, -1, G, G)


def write_weights(out, seed=21):
    from make_fixtures import write_safetensors
    gen = torch.Generator().manual_seed(seed)
    dino = dinov3_torch.random_weights(TINY["dinov3"], gen)
    res = random_residual(TINY["residual"], gen)
    ckpt = dict(res)
    ckpt.update({"encoder." + k: v for k, v in dino.items()})
    # Tensors of the rest of DinoDecoder, which the encoder must skip.
    ckpt["mask_token"] = 0.02 * torch.randn(1, 8, 1, generator=gen)
    ckpt["norm_vit.weight"] = torch.ones(TINY["dinov3"]["embed_dim"] + 8)
    ckpt["decoder.conv_in.weight"] = torch.randn(4, 392, 3, 3, generator=gen)
    with open(os.path.join(out, "svg_tiny.json"), "w") as f:
        json.dump(TINY, f)
    write_safetensors(os.path.join(out, "svg_tiny.safetensors"), {k: v.numpy() for k, v in ckpt.items()})
    write_safetensors(os.path.join(out, "svg_tiny_dinov3.safetensors"), {k: v.numpy() for k, v in dino.items()})
    return res, dino, gen


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["fixtures", "weights", "encode"])
    ap.add_argument("--out")
    ap.add_argument("--dir")
    ap.add_argument("--images")
    ap.add_argument("--size", choices=["tiny", "official"], default="tiny")
    a = ap.parse_args()
    if a.cmd == "encode":
        res, dino, _ = write_weights(a.dir)  # the same seed: the same weights
        x = torch.from_numpy(np.load(a.images))
        np.save(a.out, encode(res, dino, TINY, x, group=1).float().numpy())
        return
    os.makedirs(a.out, exist_ok=True)
    if a.size == "official":
        from make_fixtures import write_safetensors
        r = dict(image_size=256, patch_size=16, num_layers=6, num_heads=8, hidden_dim=384, mlp_dim=1536,
                 output_dim=8)
        res = random_residual(r, torch.Generator().manual_seed(1))
        return write_safetensors(os.path.join(a.out, "svg_official.safetensors"),
                                 {k: v.numpy() for k, v in res.items()})
    res, dino, gen = write_weights(a.out)
    if a.cmd == "weights":
        return
    x = (torch.rand(3, 3, 256, 256, generator=gen) * 2 - 1).float()
    np.save(os.path.join(a.out, "svg_tiny_x.npy"), x.numpy())
    np.save(os.path.join(a.out, "svg_tiny_out.npy"), encode(res, dino, TINY, x).float().numpy())
    np.save(os.path.join(a.out, "svg_tiny_out1.npy"), encode(res, dino, TINY, x, group=1).float().numpy())


if __name__ == "__main__":
    main()
