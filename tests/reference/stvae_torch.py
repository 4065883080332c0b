#!/usr/bin/python3
"""PyTorch twin of LaVin-DiT's ST-VAE (AutoencoderKLSTVAE, docs/stvae.md), written from the facts
recorded there: real causal 3-D convolutions (first frame replicated in front), the spatial norm
of the decoder, time compression of the first two levels. Names follow the official state_dict.

Usage:
  stvae_torch.py fixtures --out DIR   small config, random weights: DIR/stvae_small.{json,pt}
                                      (the .pt as stvae.pt: {"state_dict": ...}),
                                      stvae_{images,moments,z,decoded}.npy (float64 references of
                                      float32 weights/inputs, stored as float32), and for clips
                                      stvae_clip{5,9}_{frames,moments}.npy (encode of 5 and 9
                                      frames) and stvae_clipz{2,3}_{z,decoded}.npy (decode of 2
                                      and 3 latent frames)
  stvae_torch.py save --out FILE [--config C] [--seed S]   random weights, torch.save'd
  stvae_torch.py run encode|decode --weights W [--config C] --in X.npy --out Y.npy
                                      images [B,3,H,W] as one-frame clips (or clips [B,3,T,H,W])
                                      -> moments, or LaVin latents [B,C,h,w] (or [B,C,t,h,w]) ->
                                      decoder(z / scaling + shift), in float64
  stvae_torch.py bench [--threads 1] [--latent 32] [--frames 1] [--config C]
                                      decode one latent (of `frames` latent frames; 1: the image
                                      path [1,C,h,w]), random weights
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LAVIN = dict(in_channels=3, out_channels=3, latent_channels=16, layers_per_block=3,
             block_out_channels=[128, 256, 256, 512], temporal_compression_ratio=4,
             shift_factor=0.032470703125, scaling_factor=1.08936170213)


def load_config(path):
    cfg = dict(LAVIN)
    if path and path != "lavin_stvae":
        with open(path) as f:
            cfg.update(json.load(f)["stvae"])
    return cfg


def group_norm(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class CausalConv3d(nn.Module):
    """Conv3d over [B, C, T, H, W]: k-1 copies of frame 0 in front, zero padding k//2 in space."""

    def __init__(self, cin, cout, k):
        super().__init__()
        self.k = k
        self.conv = nn.Conv3d(cin, cout, k)

    def forward(self, x):
        if self.k > 1:
            x = torch.cat([x[:, :, :1]] * (self.k - 1) + [x], dim=2)
        p = self.k // 2
        return self.conv(F.pad(x, (p, p, p, p)))


def per_frame(conv, x):
    b, c, t, h, w = x.shape
    y = conv(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
    return y.reshape(b, t, *y.shape[1:]).permute(0, 2, 1, 3, 4)


class SpatialNorm(nn.Module):
    def __init__(self, f, zc):
        super().__init__()
        self.norm_layer = group_norm(f)
        self.conv_y = CausalConv3d(zc, f, 1)
        self.conv_b = CausalConv3d(zc, f, 1)

    def forward(self, f, z):
        t = f.shape[2]
        if t > 1 and t % 2 == 1:  # first frame alone, the rest resized together
            z = torch.cat([F.interpolate(z[:, :, :1], size=(1,) + f.shape[-2:]),
                           F.interpolate(z[:, :, 1:], size=(t - 1,) + f.shape[-2:])], dim=2)
        else:
            z = F.interpolate(z, size=f.shape[-3:])
        return self.norm_layer(f) * self.conv_y(z) + self.conv_b(z)


class Resnet(nn.Module):
    def __init__(self, cin, cout, zc=None):
        super().__init__()
        self.norm1 = group_norm(cin) if zc is None else SpatialNorm(cin, zc)
        self.norm2 = group_norm(cout) if zc is None else SpatialNorm(cout, zc)
        self.conv1 = CausalConv3d(cin, cout, 3)
        self.conv2 = CausalConv3d(cout, cout, 3)
        if cin != cout:
            self.conv_shortcut = nn.Conv3d(cin, cout, 1)

    def forward(self, x, z):
        n = (lambda m, v: m(v)) if z is None else (lambda m, v: m(v, z))
        h = self.conv1(F.silu(n(self.norm1, x)))
        h = self.conv2(F.silu(n(self.norm2, h)))
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(x)
        return x + h


class Down(nn.Module):
    def __init__(self, c, compress_time):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)
        self.compress_time = compress_time

    def forward(self, x):
        if self.compress_time and x.shape[2] > 1:  # average frame pairs; an odd first frame stays
            b, c, t, h, w = x.shape
            y = x.permute(0, 3, 4, 1, 2).reshape(b * h * w, c, t)
            if t % 2 == 1:
                y = torch.cat([y[..., :1], F.avg_pool1d(y[..., 1:], 2, 2)], dim=-1)
            else:
                y = F.avg_pool1d(y, 2, 2)
            x = y.reshape(b, h, w, c, -1).permute(0, 3, 4, 1, 2)
        return per_frame(self.conv, F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c, compress_time):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.compress_time = compress_time

    def forward(self, x):
        if self.compress_time and x.shape[2] > 1:  # frame 0 in space only, the rest in time too
            first = F.interpolate(x[:, :, 0], scale_factor=2.0)[:, :, None]
            x = torch.cat([first, F.interpolate(x[:, :, 1:], scale_factor=2.0)], dim=2)
        else:
            b, c, t, h, w = x.shape
            y = F.interpolate(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w), scale_factor=2.0)
            x = y.reshape(b, t, c, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)
        return per_frame(self.conv, x)


class Block(nn.Module):
    def __init__(self, cin, cout, n, sampler, zc=None):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(cin if j == 0 else cout, cout, zc) for j in range(n)])
        if sampler is not None:
            setattr(self, "downsamplers" if isinstance(sampler, Down) else "upsamplers",
                    nn.ModuleList([sampler]))

    def forward(self, x, z=None):
        for r in self.resnets:
            x = r(x, z)
        for name in ("downsamplers", "upsamplers"):
            if hasattr(self, name):
                x = getattr(self, name)[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        b, L = c["block_out_channels"], len(c["block_out_channels"])
        tl = int(np.log2(c["temporal_compression_ratio"]))
        self.conv_in = CausalConv3d(c["in_channels"], b[0], 3)
        self.down_blocks = nn.ModuleList([
            Block(b[max(i - 1, 0)], b[i], c["layers_per_block"],
                  Down(b[i], i < tl) if i != L - 1 else None) for i in range(L)])
        self.mid_block = Block(b[-1], b[-1], 2, None)
        self.norm_out = group_norm(b[-1])
        self.conv_out = CausalConv3d(b[-1], 2 * c["latent_channels"], 3)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.down_blocks:
            h = blk(h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        r, L, zc = list(reversed(c["block_out_channels"])), len(c["block_out_channels"]), c["latent_channels"]
        tl = int(np.log2(c["temporal_compression_ratio"]))
        self.conv_in = CausalConv3d(zc, r[0], 3)
        self.mid_block = Block(r[0], r[0], 2, None, zc)
        self.up_blocks = nn.ModuleList([
            Block(r[max(i - 1, 0)], r[i], c["layers_per_block"] + 1,
                  Up(r[i], i < tl) if i != L - 1 else None, zc) for i in range(L)])
        self.norm_out = SpatialNorm(r[-1], zc)
        self.conv_out = CausalConv3d(r[-1], c["out_channels"], 3)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z), z)
        for blk in self.up_blocks:
            h = blk(h, z)
        return self.conv_out(F.silu(self.norm_out(h, z)))


class STVAE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)

    def encode_images(self, x):  # [B, C, H, W] -> moments [B, 2C', h, w], each image one frame
        return self.encoder(x[:, :, None])[:, :, 0] if x.dim() == 4 else self.encoder(x)

    def decode_latents(self, z):  # LaVin latents -> images (inference.py decode_latents, unclamped)
        z = z / self.c["scaling_factor"] + self.c["shift_factor"]
        return self.decoder(z[:, :, None])[:, :, 0] if z.dim() == 4 else self.decoder(z)


def random_model(c, seed):
    torch.manual_seed(seed)
    m = STVAE(c)
    with torch.no_grad():
        for name, p in m.named_parameters():  # non-trivial norms and spatial-norm convs
            if name.endswith("norm_layer.weight") or (name.endswith(".weight") and p.dim() == 1):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return m.eval()


def load_model(c, path):
    m = STVAE(c)
    sd = torch.load(path, map_location="cpu")
    m.load_state_dict(sd.get("state_dict", sd))
    return m.eval()


def f64(m, x):
    return m.double(), torch.from_numpy(np.asarray(x, dtype=np.float64))


def save_atomic(path, write):
    tmp = path + ".tmp%d" % os.getpid()
    write(tmp)
    os.replace(tmp, path)


SMALL = dict(block_out_channels=[32, 64, 64], layers_per_block=2, latent_channels=4)


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    c = dict(LAVIN, **SMALL)
    save_atomic(os.path.join(out, "stvae_small.json"),
                lambda p: open(p, "w").write(json.dumps({"stvae": SMALL})))
    m = random_model(c, 7)
    save_atomic(os.path.join(out, "stvae_small.pt"), lambda p: torch.save({"state_dict": m.state_dict()}, p))
    rs = np.random.RandomState(3)
    images = rs.uniform(-1, 1, (2, 3, 16, 24)).astype(np.float32)
    z = rs.randn(2, 4, 3, 5).astype(np.float32)
    md, x = f64(m, images)
    with torch.no_grad():
        moments = md.encode_images(x).float().numpy()
        decoded = md.decode_latents(torch.from_numpy(z.astype(np.float64))).float().numpy()
    arrays = [("images", images), ("z", z), ("moments", moments), ("decoded", decoded)]
    # Clips [B, C, T, H, W]: 5 and 9 frames (1 + 4k: two and three latent frames), and the decode
    # of 2 latent frames (an even count: the mid block's spatial norm resizes z whole) and 3.
    for t, shape in [(5, (2, 3, 5, 16, 24)), (9, (1, 3, 9, 8, 8))]:
        frames = rs.uniform(-1, 1, shape).astype(np.float32)
        with torch.no_grad():
            m_t = md.encode_images(torch.from_numpy(frames.astype(np.float64))).float().numpy()
        arrays += [("clip%d_frames" % t, frames), ("clip%d_moments" % t, m_t)]
    for t, shape in [(2, (2, 4, 2, 3, 5)), (3, (1, 4, 3, 2, 3))]:
        zt = rs.randn(*shape).astype(np.float32)
        with torch.no_grad():
            x_t = md.decode_latents(torch.from_numpy(zt.astype(np.float64))).float().numpy()
        arrays += [("clipz%d_z" % t, zt), ("clipz%d_decoded" % t, x_t)]
    for n, a in arrays:
        save_atomic(os.path.join(out, "stvae_%s.npy" % n), lambda p, a=a: np.save(open(p, "wb"), a))
    print("stvae fixtures in %s: moments %s, decoded %s" % (out, moments.shape, decoded.shape))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fixtures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("save")
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("run")
    p.add_argument("what", choices=["encode", "decode"])
    p.add_argument("--weights", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--out", required=True)
    p = sub.add_parser("bench")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--frames", type=int, default=1)
    p.add_argument("--config", default="")
    a = ap.parse_args()
    torch.set_num_threads(getattr(a, "threads", 1))
    if a.cmd == "fixtures":
        fixtures(a.out)
    elif a.cmd == "save":
        m = random_model(load_config(a.config), a.seed)
        save_atomic(a.out, lambda p: torch.save({"state_dict": m.state_dict()}, p))
    elif a.cmd == "run":
        md, x = f64(load_model(load_config(a.config), a.weights), np.load(a.inp))
        with torch.no_grad():
            y = md.encode_images(x) if a.what == "encode" else md.decode_latents(x)
        np.save(a.out, y.float().numpy())
    else:
        c = load_config(a.config)
        m = random_model(c, 0)
        z = torch.randn(1, c["latent_channels"], *([a.frames] if a.frames > 1 else []), a.latent,
                        a.latent)
        with torch.no_grad():
            m.decode_latents(z)  # warm-up
            t0, c0 = time.time(), time.process_time()
            y = m.decode_latents(z)
            dt, cpu = time.time() - t0, time.process_time() - c0
        print(json.dumps({"torch": torch.__version__, "threads": a.threads, "latent": list(z.shape),
                          "image": list(y.shape), "seconds": round(dt, 3),
                          "decode_cpu_s": round(cpu, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
