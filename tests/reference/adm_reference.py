#!/usr/bin/python3
"""Float64 reference of DiT's diffusion process (the ADM GaussianDiffusion + SpacedDiffusion copy in
facebookresearch/DiT:diffusion/), written from the formulas in docs/dit.md.

Writes adm.safetensors (all F64 except the I64 index tensors) for tests/unit/test_adm.cpp; called by
make_fixtures.py (CTest fixture make_torch_fixtures). Standalone:
    /usr/bin/python3 tests/reference/adm_reference.py --out DIR     # writes DIR/adm.safetensors
    /usr/bin/python3 tests/reference/adm_reference.py --doc         # the values docs/dit.md lists

Keys:
  map.<S>                    I64  space_timesteps(1000, S), ascending, for S in SECTIONS
  sched.<S>.<array>          F64  every schedule array of the diffusion respaced by S; "full" keeps
                                  all 1000 steps (respaced all the same, as create_diffusion(""));
                                  <array> in ARRAYS; sched.<S>.timestep_map I64
  ddpm.{i,x,model_out,noise,mean,log_variance,pred_x0,out}   one DDPM step on the '250' diffusion,
                                  per sample b at index i[b] (i = 0: no noise); model_out [B, 2C, N]
                                  holds eps (channels 0..C-1) and v (C..2C-1)
  ddpm.out_fixed_{large,small}    the same step with FIXED_LARGE / FIXED_SMALL variance
  ddim.{i,x,model_out,pred_x0,out}                           one DDIM (eta 0) step on 'ddim50'
  loss.{t,x0,noise,model_out,x_t,mse,vb,loss,grad}           the hybrid loss on the full diffusion:
                                  x_t = q_sample(x0, t, noise), model_out evaluated "at x_t";
                                  mse, vb [B]; loss [1] = mean_b(mse + vb); grad = d loss / d model_out
  loss_nosigma.{t,x0,noise,model_out,mse,loss,grad}          learn_sigma off: model_out [B, C, N], MSE only
"""

import argparse
import math
import os
import sys

import numpy as np
import torch

SECTIONS = ["250", "100", "50", "25", "10,20,30", "ddim25", "ddim50", "ddim30"]
SCHEDULES = ["full", "250", "ddim50"]
ARRAYS = ["betas", "alphas_cumprod", "alphas_cumprod_prev", "alphas_cumprod_next", "sqrt_alphas_cumprod",
          "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
          "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
          "posterior_mean_coef1", "posterior_mean_coef2"]
LN2 = math.log(2.0)


def linear_betas(n=1000):
    """ADM 'linear': np.linspace(s * 1e-4, s * 0.02, n) in float64 with s = 1000 / n."""
    s = 1000 / n
    return np.linspace(s * 0.0001, s * 0.02, n, dtype=np.float64)


def space_timesteps(num_timesteps, section):
    """Kept original steps, ascending. "ddimK": the smallest integer stride giving exactly K steps.
    Otherwise comma-separated counts, one per equal part of [0, num_timesteps); inside a part of size
    `size`, count k takes start + round(j * (size - 1) / (k - 1)) with the float stride accumulated and
    Python's round (half to even)."""
    if section.startswith("ddim"):
        k = int(section[4:])
        for stride in range(1, num_timesteps):
            if len(range(0, num_timesteps, stride)) == k:
                return sorted(range(0, num_timesteps, stride))
        raise ValueError("cannot create exactly %d steps with an integer stride" % k)
    counts = [int(v) for v in section.split(",")]
    per, extra = divmod(num_timesteps, len(counts))
    start, steps = 0, set()
    for n, k in enumerate(counts):
        size = per + (1 if n < extra else 0)
        if size < k:
            raise ValueError("cannot divide section of %d steps into %d" % (size, k))
        stride = 1 if k <= 1 else (size - 1) / (k - 1)
        cur = 0.0
        for _ in range(k):
            steps.add(start + round(cur))
            cur += stride
        start += size
    return sorted(steps)


class Adm:
    """Schedule arrays (float64) of the diffusion with `betas`, optionally respaced to `use`."""

    def __init__(self, betas, use=None):
        betas = np.asarray(betas, dtype=np.float64)
        if use is None:
            self.timestep_map = list(range(len(betas)))
        else:
            ac = np.cumprod(1.0 - betas)
            keep = set(use)
            last, nb, self.timestep_map = 1.0, [], []
            for i, a in enumerate(ac):
                if i in keep:
                    nb.append(1 - a / last)  # beta'_i = 1 - abar[t_i] / abar[t_{i-1}]
                    last = a
                    self.timestep_map.append(i)
            betas = np.array(nb)
        a = {}
        a["betas"] = betas
        ac = np.cumprod(1.0 - betas)
        a["alphas_cumprod"] = ac
        a["alphas_cumprod_prev"] = np.append(1.0, ac[:-1])
        a["alphas_cumprod_next"] = np.append(ac[1:], 0.0)
        a["sqrt_alphas_cumprod"] = np.sqrt(ac)
        a["sqrt_one_minus_alphas_cumprod"] = np.sqrt(1.0 - ac)
        a["log_one_minus_alphas_cumprod"] = np.log(1.0 - ac)
        a["sqrt_recip_alphas_cumprod"] = np.sqrt(1.0 / ac)
        a["sqrt_recipm1_alphas_cumprod"] = np.sqrt(1.0 / ac - 1)
        pv = betas * (1.0 - a["alphas_cumprod_prev"]) / (1.0 - ac)
        a["posterior_variance"] = pv
        a["posterior_log_variance_clipped"] = np.log(np.append(pv[1], pv[1:]))  # entry 0 := entry 1
        a["posterior_mean_coef1"] = betas * np.sqrt(a["alphas_cumprod_prev"]) / (1.0 - ac)
        a["posterior_mean_coef2"] = (1.0 - a["alphas_cumprod_prev"]) * np.sqrt(1.0 - betas) / (1.0 - ac)
        self.a = a
        self.n = len(betas)

    def __getattr__(self, k):
        if k != "a" and k in self.a:
            return self.a[k]
        raise AttributeError(k)

    # ---- sampling (per element, index i of this diffusion, no clipping)
    def pred_x0(self, i, x, eps):
        return self.sqrt_recip_alphas_cumprod[i] * x - self.sqrt_recipm1_alphas_cumprod[i] * eps

    def fixed_log_variance(self, i, large):
        """FIXED_LARGE: log([posterior_variance_1, beta_1, beta_2, ...]); FIXED_SMALL: the clipped
        posterior log variance."""
        if large:
            return np.log(self.posterior_variance[1] if i == 0 else self.betas[i])
        return self.posterior_log_variance_clipped[i]

    def learned_log_variance(self, i, v):
        frac = (v + 1) / 2
        return frac * np.log(self.betas[i]) + (1 - frac) * self.posterior_log_variance_clipped[i]

    def p_mean_variance(self, i, x, eps, v):
        x0 = self.pred_x0(i, x, eps)
        mean = self.posterior_mean_coef1[i] * x0 + self.posterior_mean_coef2[i] * x
        return mean, self.learned_log_variance(i, v), x0

    def ddpm_step(self, i, x, eps, v, z):
        mean, logvar, x0 = self.p_mean_variance(i, x, eps, v)
        return mean + (1.0 if i != 0 else 0.0) * np.exp(0.5 * logvar) * z, mean, logvar, x0

    def ddim_step(self, i, x, eps):
        x0 = self.pred_x0(i, x, eps)
        e = (self.sqrt_recip_alphas_cumprod[i] * x - x0) / self.sqrt_recipm1_alphas_cumprod[i]
        ap = self.alphas_cumprod_prev[i]
        return x0 * np.sqrt(ap) + np.sqrt(1 - ap) * e, x0


# ---- the hybrid loss: torch float64 autograd, and the analytic gradient (numpy)

def _approx_cdf(u):
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u ** 3)))


def vb_elements(ex, x0, x_t, eps_frozen, v):
    """Per element, in nats: KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) with the mean from eps_frozen
    and the learned-range log variance from v, and the discretized-Gaussian decoder NLL (bins of 2/255,
    tanh-approximated normal CDF) used at t = 0. ex(name): a schedule array at each sample's t, shaped
    to broadcast."""
    x0_hat = ex("sqrt_recip_alphas_cumprod") * x_t - ex("sqrt_recipm1_alphas_cumprod") * eps_frozen
    mean = ex("posterior_mean_coef1") * x0_hat + ex("posterior_mean_coef2") * x_t
    frac = (v + 1) / 2
    logvar = frac * torch.log(ex("betas")) + (1 - frac) * ex("posterior_log_variance_clipped")
    tmean = ex("posterior_mean_coef1") * x0 + ex("posterior_mean_coef2") * x_t
    tlv = ex("posterior_log_variance_clipped")
    kl = 0.5 * (-1.0 + logvar - tlv + torch.exp(tlv - logvar) + (tmean - mean) ** 2 * torch.exp(-logvar))
    c = x0 - mean
    inv = torch.exp(-0.5 * logvar)
    cdf_plus = _approx_cdf(inv * (c + 1.0 / 255.0))
    cdf_min = _approx_cdf(inv * (c - 1.0 / 255.0))
    lp = torch.where(x0 < -0.999, torch.log(cdf_plus.clamp(min=1e-12)),
                     torch.where(x0 > 0.999, torch.log((1.0 - cdf_min).clamp(min=1e-12)),
                                 torch.log((cdf_plus - cdf_min).clamp(min=1e-12))))
    return kl, -lp


def hybrid_loss_torch(adm, x0, noise, t, model_out, learn_sigma=True, mse_weight=None):
    """x0, noise [B, C, N], t [B] (indices of adm), model_out [B, 2C or C, N], float64 numpy;
    mse_weight [B] (optional) multiplies each sample's MSE term (MDT's min-SNR weighting).
    Returns (loss, mse [B], vb [B] or None, grad of loss w.r.t. model_out) by autograd."""
    C = x0.shape[1]
    x0, noise = torch.from_numpy(x0), torch.from_numpy(noise)
    out = torch.from_numpy(model_out.copy()).requires_grad_(True)
    tt = torch.from_numpy(np.asarray(t))

    def ex(name):
        return torch.from_numpy(adm.a[name])[tt][:, None, None]

    x_t = ex("sqrt_alphas_cumprod") * x0 + ex("sqrt_one_minus_alphas_cumprod") * noise
    eps = out[:, :C]
    mse = ((noise - eps) ** 2).mean(dim=(1, 2))
    vb = None
    loss_b = mse if mse_weight is None else torch.from_numpy(np.asarray(mse_weight)) * mse
    if learn_sigma:
        kl, nll = vb_elements(ex, x0, x_t, eps.detach(), out[:, C:])
        vb = torch.where(tt == 0, nll.mean(dim=(1, 2)) / LN2, kl.mean(dim=(1, 2)) / LN2)
        loss_b = loss_b + vb
    loss = loss_b.mean()
    loss.backward()
    return (loss.item(), mse.detach().numpy(), None if vb is None else vb.detach().numpy(),
            out.grad.numpy().copy(), x_t.numpy())


def hybrid_loss_grad_numpy(adm, x0, noise, t, model_out, learn_sigma=True):
    """The same gradient from the derivative formulas (what uvit::AdmDiffusion::hybrid_loss uses)."""
    B, C, N = x0.shape
    g = np.zeros_like(model_out)
    K = math.sqrt(2.0 / math.pi)
    for b in range(B):
        i = t[b]
        sa, s1 = adm.sqrt_alphas_cumprod[i], adm.sqrt_one_minus_alphas_cumprod[i]
        x_t = sa * x0[b] + s1 * noise[b]
        eps = model_out[b, :C]
        g[b, :C] = 2.0 * (eps - noise[b]) / (B * C * N)
        if not learn_sigma:
            continue
        v = model_out[b, C:]
        mean, logvar, _ = adm.p_mean_variance(i, x_t, eps, v)
        dlogvar_dv = 0.5 * (np.log(adm.betas[i]) - adm.posterior_log_variance_clipped[i])
        if i != 0:
            tmean = adm.posterior_mean_coef1[i] * x0[b] + adm.posterior_mean_coef2[i] * x_t
            tlv = adm.posterior_log_variance_clipped[i]
            dkl = 0.5 * (1.0 - np.exp(tlv - logvar) - (tmean - mean) ** 2 * np.exp(-logvar))
        else:
            c = x0[b] - mean
            inv = np.exp(-0.5 * logvar)
            up, lo = inv * (c + 1 / 255.0), inv * (c - 1 / 255.0)

            def cdf(u):
                return 0.5 * (1 + np.tanh(K * (u + 0.044715 * u ** 3)))

            def pdf(u):  # d cdf / du
                th = np.tanh(K * (u + 0.044715 * u ** 3))
                return 0.5 * (1 - th * th) * K * (1 + 3 * 0.044715 * u * u)

            # d up / d logvar = -up / 2, d lo / d logvar = -lo / 2; d(-log p)/d logvar:
            cp, cm = cdf(up), cdf(lo)
            d_lo = np.where(cp >= 1e-12, -pdf(up) * (-0.5 * up) / np.maximum(cp, 1e-12), 0.0)
            om = 1 - cm
            d_hi = np.where(om >= 1e-12, pdf(lo) * (-0.5 * lo) / np.maximum(om, 1e-12), 0.0)
            dl = cp - cm
            d_mid = np.where(dl >= 1e-12, -(pdf(up) * (-0.5 * up) - pdf(lo) * (-0.5 * lo)) / np.maximum(dl, 1e-12),
                             0.0)
            dkl = np.where(x0[b] < -0.999, d_lo, np.where(x0[b] > 0.999, d_hi, d_mid))
        g[b, C:] = dkl * dlogvar_dv / (LN2 * B * C * N)
    return g


def make_tensors():
    T = {}
    base = linear_betas(1000)
    for s in SECTIONS:
        T["map." + s] = np.array(space_timesteps(1000, s), dtype=np.int64)
    # DiT trains with create_diffusion(""): a SpacedDiffusion keeping all 1000 steps, so even "full"
    # has betas recomputed as 1 - abar_i / abar_{i-1} (they differ from linspace by ~1e-16).
    diffs = {"full": Adm(base, range(1000))}
    for s in SCHEDULES[1:]:
        diffs[s] = Adm(base, space_timesteps(1000, s))
    for s in SCHEDULES:
        for k in ARRAYS:
            T["sched.%s.%s" % (s, k)] = diffs[s].a[k]
        T["sched.%s.timestep_map" % s] = np.array(diffs[s].timestep_map, dtype=np.int64)

    rng = np.random.default_rng(20240611)
    C, N = 4, 6
    # DDPM step ('250')
    d = diffs["250"]
    idx = np.array([249, 120, 1, 0], dtype=np.int64)
    B = len(idx)
    x = rng.standard_normal((B, C, N))
    mo = np.concatenate([rng.standard_normal((B, C, N)), rng.uniform(-1.2, 1.2, (B, C, N))], axis=1)
    z = rng.standard_normal((B, C, N))
    outs = [d.ddpm_step(int(i), x[b], mo[b, :C], mo[b, C:], z[b]) for b, i in enumerate(idx)]
    T.update({"ddpm.i": idx, "ddpm.x": x, "ddpm.model_out": mo, "ddpm.noise": z,
              "ddpm.out": np.stack([o[0] for o in outs]), "ddpm.mean": np.stack([o[1] for o in outs]),
              "ddpm.log_variance": np.stack([o[2] for o in outs]), "ddpm.pred_x0": np.stack([o[3] for o in outs])})
    # the same inputs with a fixed variance (learn_sigma off: only the eps channels are read)
    for name, large in (("large", True), ("small", False)):
        T["ddpm.out_fixed_" + name] = np.stack([
            o[1] + (1.0 if i != 0 else 0.0) * np.exp(0.5 * d.fixed_log_variance(int(i), large)) * z[b]
            for b, (i, o) in enumerate(zip(idx, outs))])
    # DDIM step ('ddim50')
    d = diffs["ddim50"]
    idx = np.array([49, 17, 0], dtype=np.int64)
    B = len(idx)
    x = rng.standard_normal((B, C, N))
    mo = np.concatenate([rng.standard_normal((B, C, N)), rng.uniform(-1, 1, (B, C, N))], axis=1)
    outs = [d.ddim_step(int(i), x[b], mo[b, :C]) for b, i in enumerate(idx)]
    T.update({"ddim.i": idx, "ddim.x": x, "ddim.model_out": mo, "ddim.out": np.stack([o[0] for o in outs]),
              "ddim.pred_x0": np.stack([o[1] for o in outs])})
    # hybrid loss (full diffusion, as DiT trains)
    d = diffs["full"]
    t = np.array([0, 1, 137, 500, 999], dtype=np.int64)
    B = len(t)
    x0 = rng.standard_normal((B, C, N)) * 1.2
    x0[0, 0, :3] = [-0.999, 0.999, 0.0]  # bin edges: both take the middle branch
    noise = rng.standard_normal((B, C, N))
    mo = np.concatenate([noise + 0.3 * rng.standard_normal((B, C, N)), rng.uniform(-1.2, 1.2, (B, C, N))], axis=1)
    loss, mse, vb, grad, x_t = hybrid_loss_torch(d, x0, noise, t, mo)
    ok = True
    ga = hybrid_loss_grad_numpy(d, x0, noise, t, mo)
    err = np.abs(ga - grad).max() / np.abs(grad).max()
    good = err < 1e-12
    ok &= good
    print("self-check adm hybrid-loss gradient, analytic vs autograd rel %.1e: %s" % (err, "ok" if good else "FAIL"))
    T.update({"loss.t": t, "loss.x0": x0, "loss.noise": noise, "loss.model_out": mo, "loss.x_t": x_t,
              "loss.mse": mse, "loss.vb": vb, "loss.loss": np.array([loss]), "loss.grad": grad})
    t = np.array([3, 0, 999], dtype=np.int64)
    B = len(t)
    x0, noise = rng.standard_normal((B, C, N)), rng.standard_normal((B, C, N))
    mo = noise + 0.5 * rng.standard_normal((B, C, N))
    loss, mse, _, grad, _ = hybrid_loss_torch(d, x0, noise, t, mo, learn_sigma=False)
    good = np.abs(hybrid_loss_grad_numpy(d, x0, noise, t, mo, False) - grad).max() < 1e-15
    ok &= good
    T.update({"loss_nosigma.t": t, "loss_nosigma.x0": x0, "loss_nosigma.noise": noise,
              "loss_nosigma.model_out": mo, "loss_nosigma.mse": mse, "loss_nosigma.loss": np.array([loss]),
              "loss_nosigma.grad": grad})
    # hand-checkable facts (spec 1.3)
    m250, m50 = list(T["map.250"]), list(T["map.50"])
    good = (m250[:3] == [0, 4, 8] and m250[-2:] == [995, 999] and len(m250) == 250 and
            m50[:5] == [0, 20, 41, 61, 82] and m50[-2:] == [979, 999] and
            list(T["map.ddim25"][:3]) == [0, 40, 80] and len(T["map.ddim50"]) == 50 and
            T["map.ddim50"][-1] == 980 and T["map.ddim30"][1] == 34)
    ok &= good
    print("self-check adm respacing maps: %s" % ("ok" if good else "FAIL"))
    return T, ok


def write_fixture(path, write_safetensors):
    T, ok = make_tensors()
    write_safetensors(path, T, {"case": "adm", "producer": "tests/reference/adm_reference.py"})
    return ok


def print_doc():
    base = linear_betas(1000)
    for s in ["250", "100", "50", "25", "ddim25", "ddim50"]:
        m = space_timesteps(1000, s)
        print("%s (%d): %s" % (s, len(m), m if len(m) <= 50 else "%s ... %s" % (m[:8], m[-4:])))
    for s in ["250", "ddim50"]:
        d = Adm(base, space_timesteps(1000, s))
        for i in [0, 1, 2, d.n // 2, d.n - 1]:
            print("%s i=%d t=%d beta=%.17g posterior_variance=%.17g plvc=%.17g" % (
                s, i, d.timestep_map[i], d.betas[i], d.posterior_variance[i], d.posterior_log_variance_clipped[i]))
    d = Adm(base, range(1000))
    for i in [0, 1, 999]:
        print("full i=%d beta=%.17g alphas_cumprod=%.17g" % (i, d.betas[i], d.alphas_cumprod[i]))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="folder for adm.safetensors")
    ap.add_argument("--doc", action="store_true", help="print the values docs/dit.md lists")
    args = ap.parse_args()
    if args.doc:
        print_doc()
    if args.out:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_fixtures import write_safetensors
        os.makedirs(args.out, exist_ok=True)
        sys.exit(0 if write_fixture(os.path.join(args.out, "adm.safetensors"), write_safetensors) else 1)
