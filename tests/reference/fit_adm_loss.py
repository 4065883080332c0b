#!/usr/bin/python3
"""Float64 twin of FiTv1's masked ADM loss: the FiT copy of improved-diffusion's training_losses
(whlzy/FiT fit/scheduler/improved_diffusion/gaussian_diffusion.py and diffusion_utils.py:
get_flexible_mask_and_ratio, commit b22b7b0; docs/fit.md "FiTv1"), written from its formulas in the
official (B, C, N) token layout of a packed batch, as train_fit.py calls it.

A batch of images of different sizes on one canvas (the engine's interface) is packed as the official
loader and train_fit.py pack it: each sample's valid tokens first, features (c, p1, p2), zero features
after them, mask 1 on the valid tokens, the sequences cut to N = the longest sample's token count
(train_fit.py's N_batch). The noise is randn over the whole (B, C, N) tensor (randn_like), padding
included; the network's output is its raw output times the mask (FiT.forward's `x * mask`). Then, per
sample, ratio = N / valid, mse = mean_flat((noise · mask - eps_out)^2) · ratio, vb = the variational
bound of the learned-range variance with the mean frozen, mean_flat over every element, · ratio,
loss = mean_b(mse + vb). The vb of the padding (x0 = 0, eps_out = 0, v = 0) is a constant without
gradient: written separately as pad_vb.

Writes fitv1_loss.safetensors (F64 except the I64 t, sizes) for tests/unit/test_fitv1_packed.cpp:
  t [B], sizes [B, 2] (valid height, width in pixels), x0, noise [B, C, H, W], out [B, 2C, H, W] (the
  canvas: valid region = the packed values, elsewhere values the loss must ignore), mse, vb, pad_vb
  [B] (the official terms), loss [1] (official), grad [B, 2C, H, W] (d loss / d out on the canvas).
Self-checks: the padding gets no gradient; with every sample at the full canvas the official masked
loss and its gradient equal DiT's unmasked hybrid loss (adm_reference.hybrid_loss_torch).
"""

import math

import numpy as np
import torch

import adm_reference
import fit_torch

LN2 = math.log(2.0)
C, H, W, P = 2, 6, 8, 2
T_VALUES = [0, 1, 500, 999, 137]
SIZES = [[4, 8], [6, 6], [2, 2], [6, 8], [2, 6]]  # 2 x 4, 3 x 3, 1, 3 x 4 (full), 1 x 3 tokens


def training_losses(adm, x_start, t, raw_out, mask, noise):
    """The official masked training_losses (LossType.MSE, EPSILON, LEARNED_RANGE) on (B, Cf, N):
    returns (loss_b, mse_b, vb_b, pad_vb_b). raw_out (B, 2 Cf, N) is the network before `x * mask`."""
    tt = torch.as_tensor(t)

    def ex(name):
        return torch.from_numpy(adm.a[name])[tt][:, None, None]

    ratio = mask.shape[-1] / mask.sum(dim=-1)  # float(N) / count_nonzero(mask)
    m = mask[:, None, :]
    model_output = raw_out * m  # FiT.forward: x * mask[..., None]
    x_t = ex("sqrt_alphas_cumprod") * x_start + ex("sqrt_one_minus_alphas_cumprod") * noise
    Cf = x_start.shape[1]
    eps_out, v = model_output[:, :Cf], model_output[:, Cf:]
    # _vb_terms_bpd with frozen_out = cat([eps_out.detach(), v]), per element in bits
    kl, nll = adm_reference.vb_elements(ex, x_start, x_t, eps_out.detach(), v)
    term = torch.where((tt == 0)[:, None, None], nll, kl) / LN2
    vb = term.mean(dim=(1, 2)) * ratio
    pad_vb = (term * (1 - m)).mean(dim=(1, 2)) * ratio
    mse = ((noise * m - eps_out) ** 2).mean(dim=(1, 2)) * ratio
    return mse + vb, mse, vb, pad_vb


def pack(img, sizes, n, feat_fill=None):
    """Canvas [B, K, H, W] -> (B, K p^2, n): valid tokens first, then zeros (or feat_fill's values)."""
    B, K = img.shape[:2]
    tok = torch.zeros(B, K * P * P, n, dtype=img.dtype) if feat_fill is None else feat_fill.clone()
    for b, (h, w) in enumerate(sizes):
        v = (h // P) * (w // P)
        tok[b, :, :v] = fit_torch.patchify(img[b:b + 1, :, :h, :w], P)[0].T
    return tok


def unpack(tok, sizes, K):
    img = torch.zeros(tok.shape[0], K, H, W, dtype=tok.dtype)
    for b, (h, w) in enumerate(sizes):
        v = (h // P) * (w // P)
        img[b, :, :h, :w] = fit_torch.unpatchify(tok[b, :, :v].T[None], K, P, h // P, w // P)[0]
    return img


def run(adm, x0, noise, out, t, sizes, g):
    """The official loss of a canvas batch; the padding's noise and raw outputs drawn from g."""
    B = x0.shape[0]
    n = max((h // P) * (w // P) for h, w in sizes)
    mask = torch.zeros(B, n, dtype=torch.float64)
    for b, (h, w) in enumerate(sizes):
        mask[b, :(h // P) * (w // P)] = 1
    x_tok = pack(x0, sizes, n)
    z_tok = pack(noise, sizes, n, torch.randn(B, C * P * P, n, generator=g, dtype=torch.float64))
    raw = pack(out, sizes, n, torch.randn(B, 2 * C * P * P, n, generator=g, dtype=torch.float64))
    raw.requires_grad_(True)
    loss_b, mse, vb, pad_vb = training_losses(adm, x_tok, t, raw, mask, z_tok)
    loss = loss_b.mean()
    loss.backward()
    pad_grad = (raw.grad * (1 - mask[:, None, :])).abs().max().item()
    return loss.item(), mse, vb, pad_vb, unpack(raw.grad, sizes, 2 * C), pad_grad


def write_fixture(path, write_safetensors):
    adm = adm_reference.Adm(adm_reference.linear_betas(1000), range(1000))  # create_diffusion("")
    g = torch.Generator().manual_seed(20260105)
    B = len(SIZES)
    t = np.array(T_VALUES, dtype=np.int64)
    # float32-representable inputs, so the C++ side reads exactly these values
    f32 = lambda a: a.float().double()  # noqa: E731
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    x0, noise = f32(1.2 * r(B, C, H, W)), f32(r(B, C, H, W))
    x0[0, 0, 0, :3] = f32(torch.tensor([-0.9995, 0.9995, 0.0]))  # t = 0: the NLL's edge bins
    out = f32(torch.cat([noise + 0.3 * r(B, C, H, W),
                         torch.rand(B, C, H, W, generator=g, dtype=torch.float64) * 2.4 - 1.2], 1))
    loss, mse, vb, pad_vb, grad, pad_grad = run(adm, x0, noise, out, t, SIZES, g)
    ok = pad_grad == 0
    print("self-check fitv1_loss: the padding gets no gradient: %s" % ("ok" if ok else "FAIL"))
    # Full canvas: the official masked loss is DiT's (mask all ones, ratio 1).
    full = [[H, W]] * B
    lf, _, _, pf, gf, _ = run(adm, x0, noise, out, t, full, g)
    ld, _, _, gd, _ = adm_reference.hybrid_loss_torch(adm, x0.reshape(B, C, -1).numpy(),
                                                      noise.reshape(B, C, -1).numpy(), t,
                                                      out.reshape(B, 2 * C, -1).numpy())
    err = max(abs(lf - ld) / abs(ld), np.abs(gf.reshape(B, 2 * C, -1).numpy() - gd).max() / np.abs(gd).max())
    good = err < 1e-12 and pf.abs().max().item() == 0
    ok &= good
    print("self-check fitv1_loss: full mask = DiT's unmasked hybrid loss, rel %.1e: %s"
          % (err, "ok" if good else "FAIL"))
    # The canvas outside each valid region: garbage the loss must not read.
    for b, (h, w) in enumerate(SIZES):
        for a in (x0, noise, out):
            keep = a[b, :, :h, :w].clone()
            a[b] = f32(1e3 * r(*a[b].shape))
            a[b, :, :h, :w] = keep
    T = {"t": t, "sizes": np.array(SIZES, dtype=np.int64), "x0": x0.numpy(), "noise": noise.numpy(),
         "out": out.numpy(), "mse": mse.detach().numpy(), "vb": vb.detach().numpy(),
         "pad_vb": pad_vb.detach().numpy(), "loss": np.array([loss]), "grad": grad.numpy()}
    write_safetensors(path, T, {"case": "fitv1_loss", "producer": "tests/reference/fit_adm_loss.py"})
    print("fitv1_loss         B=%d sizes=%s loss %.6f (padding's vb %.6f of it)"
          % (B, SIZES, loss, pad_vb.mean().item()))
    return ok
