#!/usr/bin/python3
"""PyTorch twin of the FID TF graph's input pipeline (docs/evaluation.md "The TF graph's input
pipeline"), written from the formulas there, and fixtures for `--inception-input tf`.

TF 1.x's legacy ResizeBilinear (align_corners=False, no half-pixel centres), in float32:
  scale = float32(in) / float32(out); src = float32(dst) * scale
  lower = floor(src), upper = min(ceil(src), in - 1), lerp = src - floor(src)
  top = tl + (tr - tl) * x_lerp; bottom = bl + (br - bl) * x_lerp; out = top + (bottom - top) * y_lerp
each operation a separate float32 tensor op (rounded once, no FMA). Then (y - 128) * 0.0078125.
The network after it is the FID Inception of inception_torch.py (same blocks, random weights).

    /usr/bin/python3 tests/reference/inception_tf_input.py --out DIR

Checks the twin against hand-computed resizes first (exits non-zero when they disagree), then
writes to DIR:
  resize_{k}_in.npy / resize_{k}_out.npy   float32 [3, H, W] values in [0, 255] (integers) and the
                                           twin's TF1 resize of them to 299x299
  inception.pth                            random weights (inception_torch.randomize, seed 0)
  images_{k}.npy                           uint8 [N, H, W, 3]
  pool3_{k}.npy, logits_{k}.npy, spatial_{k}.npy  float32 features through the tf pipeline (the
                                           resize in float32 as the graph, the network in float64)
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inception_torch as it  # noqa: E402


def tf1_axis(n_in, n_out):
    scale = torch.tensor(float(n_in), dtype=torch.float32) / torch.tensor(float(n_out),
                                                                          dtype=torch.float32)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    f = torch.floor(src)
    lo = f.long().clamp(min=0)
    hi = torch.ceil(src).long().clamp(max=n_in - 1)
    return lo, hi, src - f


def tf1_resize(x, oh, ow):
    """x: float32 [..., H, W] -> [..., oh, ow], TF 1.x legacy bilinear."""
    assert x.dtype == torch.float32
    ylo, yhi, yl = tf1_axis(x.shape[-2], oh)
    xlo, xhi, xl = tf1_axis(x.shape[-1], ow)
    r0, r1 = x[..., ylo, :], x[..., yhi, :]
    tl, tr, bl, br = r0[..., xlo], r0[..., xhi], r1[..., xlo], r1[..., xhi]
    top = tl + (tr - tl) * xl
    bottom = bl + (br - bl) * xl
    return top + (bottom - top) * yl[:, None]


def hand_checks():
    # 3x3 -> 5x5: scale 0.6, src 0, .6, 1.2, 1.8, 2.4 -> (lower, upper, lerp) (0,0,0) (0,1,.6)
    # (1,2,.2) (1,2,.8) (2,2,.4): a linear image 30 r + 10 c samples at r, c in 0 .6 1.2 1.8 2.
    x = torch.tensor([[0., 10, 20], [30, 40, 50], [60, 70, 80]])
    pos = torch.tensor([0, .6, 1.2, 1.8, 2.0], dtype=torch.float64)
    want = 30 * pos[:, None] + 10 * pos[None, :]
    got = tf1_resize(x, 5, 5).double()
    assert (got - want).abs().max() < 1e-5, (got, want)
    # 2x2 -> 4x4: src 0, .5, 1, 1.5 -> rows a, (a+b)/2, b, b; exact in float32.
    x = torch.tensor([[0., 4], [8, 12]])
    want = torch.tensor([[0., 2, 4, 4], [4, 6, 8, 8], [8, 10, 12, 12], [8, 10, 12, 12]])
    assert torch.equal(tf1_resize(x, 4, 4), want), tf1_resize(x, 4, 4)
    # Same size: the identity.
    x = torch.rand(7, 5) * 255
    assert torch.equal(tf1_resize(x, 7, 5), x)


def tf_input(u8):
    """uint8 [N,H,W,3] -> the graph's float32 [N,3,299,299] after its Sub and Mul."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float()  # astype(np.float32): [0, 255]
    return (tf1_resize(x, 299, 299) - 128) * 0.0078125


def features(m, x):
    """pool3 [B,2048] and the spatial features [B,2023] from the 299x299 network input."""
    s = None
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
                 "Mixed_7c", "avgpool"):
        if name == "Mixed_6d":
            s = m.Mixed_6d.branch1x1(x)[:, :7].permute(0, 2, 3, 1).flatten(1)
        x = getattr(m, name)(x)
    return x.flatten(1), s


def main(out):
    hand_checks()
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(1)
    for k, (h, w) in {"256": (256, 256), "64": (64, 64), "32": (32, 32), "401x350": (401, 350),
                      "299": (299, 299)}.items():
        x = rng.randint(0, 256, (3, h, w)).astype(np.float32)
        np.save(os.path.join(out, f"resize_{k}_in.npy"), x)
        np.save(os.path.join(out, f"resize_{k}_out.npy"),
                tf1_resize(torch.from_numpy(x), 299, 299).numpy())
    torch.manual_seed(0)
    m = it.build()
    it.randomize(m)
    sd = m.state_dict()
    torch.save(sd, os.path.join(out, "inception.pth"))
    m64 = it.build().double()
    m64.load_state_dict(sd)
    m64.eval()
    fc = m.fc.weight.detach().double()
    images = {"a": rng.randint(0, 256, (2, 32, 32, 3)).astype(np.uint8),
              "b": rng.randint(0, 256, (1, 299, 299, 3)).astype(np.uint8),
              "c": rng.randint(0, 256, (1, 256, 256, 3)).astype(np.uint8)}
    yy, xx = np.mgrid[0:32, 0:32]  # a smooth image too: the resize on structured content
    images["a"][1] = np.stack([yy * 8, xx * 8, (yy + xx) * 4], -1).clip(0, 255).astype(np.uint8)
    for k, u8 in images.items():
        np.save(os.path.join(out, f"images_{k}.npy"), u8)
        with torch.no_grad():
            p, s = features(m64, tf_input(u8).double())
        np.save(os.path.join(out, f"pool3_{k}.npy"), p.float().numpy())
        np.save(os.path.join(out, f"logits_{k}.npy"), (p @ fc.T).float().numpy())
        np.save(os.path.join(out, f"spatial_{k}.npy"), s.float().numpy())
        print(f"images_{k} {list(u8.shape)}: |pool3| max {float(p.abs().max()):.4g}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    main(ap.parse_args().out)
