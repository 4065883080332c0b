#!/usr/bin/python3
"""References for MDT's training pieces (docs/mdt_diffusion.md), written from the formulas there:
the Adan optimizer (sail-sg/Adan adan.py's single-tensor update, in float32 torch operations in
the order that file applies them) and the min-SNR-gamma weighted ADM hybrid loss (MDT's
gaussian_diffusion.py training_losses; float64, autograd).

Writes mdt_diffusion.safetensors for tests/unit/test_mdt_diffusion.cpp:
    /usr/bin/python3 tests/reference/mdt_diffusion_reference.py --out DIR

Keys:
  adan.<c>.hyper     F64 [8]     lr, beta1, beta2, beta3, eps, weight_decay, no_prox, max_grad_norm
  adan.<c>.p0        F32 [n]     the starting parameters
  adan.<c>.grads     F32 [K, n]  the raw gradient of each step (before clipping)
  adan.<c>.{p, m, d, v, pre_grad}  F32 [K, n]  after each step: parameters, exp_avg,
                                 exp_avg_diff, exp_avg_sq and the (clipped) gradient kept for the
                                 next step's difference
  adan.<c>.clip      F64 [K]     the clipping factor of each step (1 without max_grad_norm)
  minsnr.{t (I64), x0, noise, model_out, weight, loss [1], grad}  the hybrid loss on DiT's full
                                 diffusion with weight[b] = min(snr, 5) / snr on sample b's MSE
"""

import argparse
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adm_reference  # noqa: E402

F32 = torch.float32
ADAN_CASES = {
    # name: (lr, (b1, b2, b3), eps, weight_decay, no_prox, max_grad_norm)
    "default": (0.01, (0.98, 0.92, 0.99), 1e-8, 0.02, False, 0.0),
    "clip_noprox": (0.005, (0.9, 0.8, 0.95), 1e-6, 0.05, True, 0.5),
}


def adan_run(p0, grads, lr, betas, eps, wd, no_prox, max_grad_norm):
    b1, b2, b3 = betas
    p = torch.tensor(p0, dtype=F32)
    m, d, v = torch.zeros_like(p), torch.zeros_like(p), torch.zeros_like(p)
    neg_prev = None  # minus the previous clipped gradient
    rec = {k: [] for k in ("p", "m", "d", "v", "pre_grad", "clip")}
    for k in range(1, len(grads) + 1):
        g = torch.tensor(grads[k - 1], dtype=F32)
        clip = 1.0
        if max_grad_norm > 0:  # fp32: clamp(max / (|g| + eps), max=1)
            norm = torch.sqrt(g.pow(2).sum())
            clip = torch.clamp(torch.tensor(max_grad_norm, dtype=F32) / (norm + eps), max=1.0).item()
        if k == 1:
            neg_prev = g * (-clip)  # step 1: the difference g - g_prev is zero
        g = g * clip
        u = neg_prev + g  # g - g_prev
        m = m * b1 + g * (1 - b1)
        d = d * b2 + u * (1 - b2)
        w = u * b2 + g
        v = v * b3 + (1 - b3) * w * w
        den = v.sqrt() / math.sqrt(1 - b3 ** k) + eps
        step, step_diff = lr / (1 - b1 ** k), lr * b2 / (1 - b2 ** k)
        if no_prox:
            p = p * (1 - lr * wd)
        p = p + (-step) * m / den
        p = p + (-step_diff) * d / den
        if not no_prox:
            p = p / (1 + lr * wd)
        neg_prev = -g
        for name, val in (("p", p), ("m", m), ("d", d), ("v", v), ("pre_grad", g)):
            rec[name].append(val.numpy().copy())
        rec["clip"].append(clip)
    return rec


def make_tensors():
    T = {}
    rng = np.random.default_rng(20251205)
    n, K = 1000, 6
    for name, (lr, betas, eps, wd, no_prox, mgn) in ADAN_CASES.items():
        p0 = rng.standard_normal(n).astype(np.float32)
        grads = (rng.standard_normal((K, n)) * rng.uniform(0.2, 2.0, (K, 1))).astype(np.float32)
        rec = adan_run(p0, grads, lr, betas, eps, wd, no_prox, mgn)
        pre = "adan.%s." % name
        T[pre + "hyper"] = np.array([lr, *betas, eps, wd, float(no_prox), mgn], dtype=np.float64)
        T[pre + "p0"], T[pre + "grads"] = p0, grads
        for k in ("p", "m", "d", "v", "pre_grad"):
            T[pre + k] = np.stack(rec[k]).astype(np.float32)
        T[pre + "clip"] = np.array(rec["clip"], dtype=np.float64)
    # min-SNR-5 on DiT's training diffusion: snr > 5 up to t = 129 (weight < 1), below 5 after.
    d = adm_reference.Adm(adm_reference.linear_betas(1000), range(1000))
    t = np.array([0, 40, 100, 600, 999], dtype=np.int64)
    B, C, N = len(t), 4, 6
    snr = (d.sqrt_alphas_cumprod[t] / d.sqrt_one_minus_alphas_cumprod[t]) ** 2
    weight = np.minimum(snr, 5.0) / snr
    x0 = rng.standard_normal((B, C, N))
    noise = rng.standard_normal((B, C, N))
    mo = np.concatenate([noise + 0.3 * rng.standard_normal((B, C, N)),
                         rng.uniform(-1.2, 1.2, (B, C, N))], axis=1)
    loss, _, _, grad, _ = adm_reference.hybrid_loss_torch(d, x0, noise, t, mo, mse_weight=weight)
    T.update({"minsnr.t": t, "minsnr.x0": x0, "minsnr.noise": noise, "minsnr.model_out": mo,
              "minsnr.weight": weight, "minsnr.loss": np.array([loss]), "minsnr.grad": grad})
    return T


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder for mdt_diffusion.safetensors")
    args = ap.parse_args()
    from make_fixtures import write_safetensors
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "mdt_diffusion.safetensors"), make_tensors(),
                      {"producer": "tests/reference/mdt_diffusion_reference.py"})
