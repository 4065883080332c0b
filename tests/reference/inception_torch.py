#!/usr/bin/python3
"""PyTorch twin of the FID Inception (SPEC 17) and reference values for the FID/IS/PR metrics.

The network is torchvision's Inception3 (num_classes=1008, aux_logits=False) with the FID blocks
that pytorch-fid swaps in (written here from SPEC 17): Mixed_5b-d, Mixed_6b-e and Mixed_7b pool
with avg_pool 3x3/s1/p1 count_include_pad=False; Mixed_7c pools with max_pool 3x3/s1/p1. Input
pipeline: uint8 -> [0,1] -> bilinear 299x299 (align_corners=False) -> 2x-1.

    /usr/bin/python3 tests/reference/inception_torch.py --out DIR [--net-only]  # fixtures
    /usr/bin/python3 tests/reference/inception_torch.py --bench N --threads T --weights W.pth

Fixtures in DIR (random weights, fixed seeds):
  inception.pth            torch.save'd state_dict, torchvision key layout, with num_batches_tracked
  inception_nobt.pth       the same without num_batches_tracked
  images_{a,b,c}.npy       uint8 [N,H,W,3] inputs (32x32 upsampled, 299x299 identity, 401x350 down)
  pool3_{a,b,c}.npy        float32 [N,2048] reference features (computed in float64)
  logits_{a,b,c}.npy       float32 [N,1008] = pool3 @ fc.weight^T (no bias)
  spatial_{a,b,c}.npy      float32 [N,2023] sFID features: Mixed_6d.branch1x1 (the TF graph's
                           mixed_6/conv) channels 0..6, 17x17, flattened (h, w, c)
  adm_*.npy + adm_metrics.json  the ADM evaluator's IS and precision/recall (adm_evaluator_ref.py)
  frechet.json + stats_*.npz  random 2048-d statistics pairs and pytorch-fid's FID (scipy sqrtm)
  feats.npy + feats_stats.npz  features and np.mean/np.cov of them
  is_logits.npy, pr_real.npy, pr_fake.npy, metrics.json  Inception Score and precision/recall refs
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import inception as tvi


class FIDInceptionA(tvi.InceptionA):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(tvi.InceptionC):
    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for m in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                  self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = m(d)
        bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return torch.cat([b1, b7, d, bp], 1)


class FIDInceptionE(tvi.InceptionE):
    def __init__(self, in_channels, max_pool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x):
        b1 = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool:
            p = F.max_pool2d(x, 3, stride=1, padding=1)
        else:
            p = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([b1, b3, bd, self.branch_pool(p)], 1)


def build():
    m = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False,
                                        num_classes=1008)
    m.Mixed_5b = FIDInceptionA(192, pool_features=32)
    m.Mixed_5c = FIDInceptionA(256, pool_features=64)
    m.Mixed_5d = FIDInceptionA(288, pool_features=64)
    m.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    m.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    m.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    m.Mixed_7b = FIDInceptionE(1280, max_pool=False)
    m.Mixed_7c = FIDInceptionE(2048, max_pool=True)
    return m.eval()


def randomize(m, seed=0):
    """He-normal convs and non-trivial BatchNorm statistics, so activations stay O(1) and every
    fold term matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.Conv2d):
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            elif isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                mod.bias.copy_(0.1 * torch.randn(n, generator=g))
                mod.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(n, generator=g))
                mod.num_batches_tracked.fill_(1000)
            elif isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.05)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g))


def pool3(m, x01):
    """x01: [B,3,H,W] in [0,1] -> pool3 [B,2048] (pytorch-fid InceptionV3([3]) forward)."""
    x = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b",
                 "Mixed_7c", "avgpool"):
        x = getattr(m, name)(x)
    return x.flatten(1)


def spatial(m, x01):
    """sFID features [B, 2023]: the ADM evaluator's mixed_6/conv:0[..., :7], reshaped [B, -1]."""
    x = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False)
    x = 2 * x - 1
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                 "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
                 "Mixed_6b", "Mixed_6c"):
        x = getattr(m, name)(x)
    s = m.Mixed_6d.branch1x1(x)[:, :7]  # BasicConv2d: conv, BatchNorm, ReLU
    return s.permute(0, 2, 3, 1).flatten(1)  # NHWC as in the TF graph


def to01(u8):
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 255.0


def frechet_pytorch_fid(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance, step by step (SPEC 17)."""
    import scipy.linalg
    diff = mu1 - mu2
    covmean, _ = scipy.linalg.sqrtm(sigma1.dot(sigma2), disp=False)
    fallback = False
    if not np.isfinite(covmean).all():
        fallback = True
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        covmean = covmean.real
    tr_covmean = np.trace(covmean)
    fid = diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean
    return float(fid), float(tr_covmean), fallback, max_imag


def inception_score_ref(logits, splits=10):
    x = logits.astype(np.float64)
    x = x - x.max(1, keepdims=True)
    lp = x - np.log(np.exp(x).sum(1, keepdims=True))
    p = np.exp(lp)
    n = len(x)
    scores = []
    for i in range(splits):
        a, b = i * n // splits, (i + 1) * n // splits
        q = p[a:b].mean(0, keepdims=True)
        scores.append(np.exp((p[a:b] * (lp[a:b] - np.log(q))).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def precision_recall_ref(real, fake, k=3):
    def d2(a, b):
        return ((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1)
    rr = np.sort(d2(real, real), axis=1)[:, k]
    rf = np.sort(d2(fake, fake), axis=1)[:, k]
    precision = (d2(fake, real) <= rr[None, :]).any(1).mean()
    recall = (d2(real, fake) <= rf[None, :]).any(1).mean()
    return float(precision), float(recall)


def save_stats(path, mu, sigma):
    np.savez(path, mu=mu, sigma=sigma)


def make_fixtures(out, net_only=False):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    m = build()
    randomize(m)
    sd = m.state_dict()
    torch.save(sd, os.path.join(out, "inception.pth"))
    torch.save({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")},
               os.path.join(out, "inception_nobt.pth"))
    rng = np.random.RandomState(0)
    images = {"a": rng.randint(0, 256, (2, 32, 32, 3)).astype(np.uint8),
              "b": rng.randint(0, 256, (1, 299, 299, 3)).astype(np.uint8),
              "c": rng.randint(0, 256, (1, 401, 350, 3)).astype(np.uint8)}
    # Smooth images too (a blurred gradient), so the resize is exercised on structured content.
    yy, xx = np.mgrid[0:32, 0:32]
    images["a"][1] = np.stack([yy * 8, xx * 8, (yy + xx) * 4], -1).clip(0, 255).astype(np.uint8)
    m64 = build().double()
    m64.load_state_dict(sd)
    m64.eval()
    fc = m.fc.weight.detach().double()
    worst = 0.0
    for k, u8 in images.items():
        np.save(os.path.join(out, f"images_{k}.npy"), u8)
        with torch.no_grad():
            f64 = pool3(m64, to01(u8).double())
            f32 = pool3(m, to01(u8))
        rel = float((f32.double() - f64).abs().max() / f64.abs().max())
        worst = max(worst, rel)
        np.save(os.path.join(out, f"pool3_{k}.npy"), f64.float().numpy())
        np.save(os.path.join(out, f"logits_{k}.npy"), (f64 @ fc.T).float().numpy())
        with torch.no_grad():
            np.save(os.path.join(out, f"spatial_{k}.npy"),
                    spatial(m64, to01(u8).double()).float().numpy())
        print(f"images_{k} {list(u8.shape)}: |pool3| max {float(f64.abs().max()):.4g} "
              f"mean {float(f64.mean()):.4g}; fp32 twin vs fp64 rel {rel:.2e}")

    if net_only:
        return
    # Frechet distance references on random 2048-d statistics.
    d = 2048
    cases = {}

    def stats_pair(name, n1, n2, shift):
        a = rng.randn(n1, d) @ (rng.randn(d, d) * 0.05 + np.eye(d)) * 0.3
        b = rng.randn(n2, d) * 0.35 + shift
        mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
        mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
        save_stats(os.path.join(out, f"stats_{name}_1.npz"), mu1, s1)
        save_stats(os.path.join(out, f"stats_{name}_2.npz"), mu2, s2)
        t = time.time()
        fid, tr, fallback, imag = frechet_pytorch_fid(mu1, s1, mu2, s2)
        cases[name] = {"fid": fid, "tr_covmean": tr, "fallback": fallback, "max_imag": imag,
                       "scipy_s": time.time() - t}
        print(f"frechet {name}: fid {fid:.10g} tr {tr:.10g} fallback {fallback} imag {imag:.2e}")

    stats_pair("full", 4000, 3000, 0.01)        # full rank
    stats_pair("rankdef", 600, 500, 0.02)       # rank 599 / 499 of 2048
    with open(os.path.join(out, "frechet.json"), "w") as f:
        json.dump(cases, f, indent=1)

    feats = (rng.randn(300, d) * rng.rand(d) + rng.rand(d)).astype(np.float32)
    np.save(os.path.join(out, "feats.npy"), feats)
    f64 = feats.astype(np.float64)
    save_stats(os.path.join(out, "feats_stats.npz"), f64.mean(0), np.cov(f64, rowvar=False))

    is_logits = (rng.randn(100, 1008) * 3).astype(np.float32)
    np.save(os.path.join(out, "is_logits.npy"), is_logits)
    real = rng.randn(120, 16).astype(np.float32)
    fake = (rng.randn(90, 16) * 1.3 + 0.4).astype(np.float32)
    np.save(os.path.join(out, "pr_real.npy"), real)
    np.save(os.path.join(out, "pr_fake.npy"), fake)
    ism, iss = inception_score_ref(is_logits)
    prec, rec = precision_recall_ref(real, fake)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"is_mean": ism, "is_std": iss, "precision": prec, "recall": rec}, f, indent=1)
    print(f"IS {ism:.6f} +- {iss:.6f}; precision {prec:.4f} recall {rec:.4f}")
    adm_fixtures(out, rng)
    with open(os.path.join(out, "done"), "w") as f:
        f.write("ok\n")


def adm_fixtures(out, rng):
    """The ADM evaluator's metrics on data whose fp16/fp32 arithmetic is exact (multiples of 1/8
    near 8, like pool3 features: far from 0 and close together, so the fp16 rounding of the norms
    changes the answer), so every rounding is deterministic; in the last set a few rows are large enough that their fp16
    squared norms overflow, so those blocks (and only those) fall back to fp32."""
    import adm_evaluator_ref as adm
    res = {}
    real = (8 + rng.randint(-4, 5, (120, 32)) / 8).astype(np.float32)
    fake = (8 + rng.randint(-3, 7, (90, 32)) / 8).astype(np.float32)
    big_r, big_f = real.copy(), fake.copy()
    big_r[[3, 70, 71]] *= 8
    big_f[[5, 50]] *= 8
    for name, r, f, rb, cb in (("exact", real, fake, 10000, 10000), ("blocks", real, fake, 50, 40),
                               ("fallback", big_r, big_f, 50, 40)):
        np.save(os.path.join(out, f"adm_real_{name}.npy"), r)
        np.save(os.path.join(out, f"adm_fake_{name}.npy"), f)
        p, rc = adm.precision_recall(r, f, 3, rb, cb)
        res[name] = {"precision": p, "recall": rc, "row_batch": rb, "col_batch": cb}
    logits = (rng.randn(23, 1008) * 3).astype(np.float32)
    np.save(os.path.join(out, "adm_is_logits.npy"), logits)
    res["is_split10"] = adm.inception_score(logits, 10)
    res["is_split5000"] = adm.inception_score(logits)
    with open(os.path.join(out, "adm_metrics.json"), "w") as fh:
        json.dump(res, fh, indent=1)
    print("adm:", {k: (v["precision"], v["recall"]) for k, v in res.items() if isinstance(v, dict)})


def bench(n, threads, weights, device="cpu", batch=10):
    torch.set_num_threads(threads)
    m = build()
    if weights:
        m.load_state_dict(torch.load(weights))
    else:
        randomize(m)
    dev = torch.device(device)
    m = m.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    x = torch.rand(n, 3, 32, 32)
    with torch.no_grad():
        pool3(m, x[:batch].to(dev))
        sync()
        t = time.time()
        for i in range(0, n, batch):  # batches, as a DataLoader would feed (copies included)
            pool3(m, x[i:i + batch].to(dev))
        sync()
        dt = time.time() - t
    print(json.dumps({"impl": "torch", "threads": threads, "device": device, "batch": batch,
                      "images": n, "seconds": dt, "img_per_s": n / dt,
                      "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                      "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--bench", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default="")
    ap.add_argument("--net-only", action="store_true", help="only the weights, images, features")
    ap.add_argument("--device", default="cpu", help="--bench: cpu or cuda")
    ap.add_argument("--batch", type=int, default=10, help="--bench: images per forward")
    a = ap.parse_args()
    if a.bench:
        bench(a.bench, a.threads, a.weights, a.device, a.batch)
    elif a.out:
        make_fixtures(a.out, a.net_only)
    else:
        ap.print_help()
        sys.exit(2)
