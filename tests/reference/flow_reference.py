#!/usr/bin/python3
"""Float64 references for flow matching (docs/flow.md), written from the official code's behaviour
(SiT / LightningDiT transport, torchdiffeq 0.2.x): our own re-implementations, not copies.

write_fixtures(outdir, write_safetensors, ...) writes, for make_fixtures.py:
- flow.safetensors: time grids (grid.K{K}_s{s}), the logit-normal draws (draw.u, draw.t), the loss
  and its gradient by torch autograd (loss.v, loss.noise, loss.data, loss.mse, loss.total_cos,
  loss.grad_mse, loss.grad_cos), dopri5 on a linear ODE (ode.A, ode.y0, ode.{atol,rtol},
  ode.steps (accepted step ends), ode.stats [nfe, accepted, rejected], ode.y1, ode.exact).
- flow_dit_sampling.json / .safetensors: a DiT (learn_sigma false, 4 channels) and the official
  sample_ode(euler / heun2, timestep_shift) with LightningDiT's forward_with_cfg (3 channels, cfg
  interval) from a stored x_T, in float64 (sample.x1 per run of FLOW_RUNS; sample.x1_all_channels:
  the first run with guidance on all 4 channels; sample.dopri5_{runs,nfe,x1}: dopri5 per
  DOPRI5_RUNS).
"""

import copy
import math

import numpy as np
import scipy.linalg
import scipy.stats
import torch

# ---------------------------------------------------------------- time grids and draws


def shifted_grid64(K, s):
    t = torch.linspace(0, 1, K, dtype=torch.float64)
    return (s * t / (1 + (s - 1) * t)).numpy()


def official_grid(K, s):
    """transport/integrators.py ode.__init__: a float32 linspace mapped element by element in
    float32 when timestep_shift > 0."""
    t = torch.linspace(0, 1, K)
    if s > 0:
        t = torch.tensor([s * tn / (1 + (s - 1) * tn) for tn in t])
    return t


def logit_normal(u):
    return 1 / (1 + np.exp(-scipy.stats.norm.ppf(u)))


# ---------------------------------------------------------------- loss


def cos_sim_torch2(a, b, dim=1, eps=1e-8):
    """torch >= 2.0 F.cosine_similarity: each norm clamped at eps outside autograd."""
    na = torch.linalg.vector_norm(a, 2, dim=dim, keepdim=True).clone()
    nb = torch.linalg.vector_norm(b, 2, dim=dim, keepdim=True).clone()
    with torch.no_grad():
        na.clamp_min_(eps)
        nb.clamp_min_(eps)
    return ((a / na) * (b / nb)).sum(dim)


def mean_flat(x):
    return x.mean(dim=list(range(1, x.dim())))


def flow_loss(v, noise, data, cos):
    """SiT training_losses (velocity, linear path) + LightningDiT's cosine term, batch-averaged
    as LightningDiT's train.py does."""
    u = data - noise
    loss = mean_flat((v - u) ** 2).mean()
    if cos:
        loss = loss + mean_flat(1 - cos_sim_torch2(v, u, dim=1)).mean()
    return loss


# ---------------------------------------------------------------- dopri5 (torchdiffeq semantics)

ALPHA = [1 / 5, 3 / 10, 4 / 5, 8 / 9, 1., 1.]
BETA = [[1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
C_ERR = [35 / 384 - 1951 / 21600, 0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
         -2187 / 6784 - -12231 / 42400, 11 / 84 - 649 / 6300, -1. / 60.]
C_MID = [6025192743 / 30085553152 / 2, 0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
         187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2]


def rms(x):
    return math.sqrt(float(np.mean(np.square(x))))


def dopri5(f, y0, t_end=1.0, atol=1e-6, rtol=1e-3):
    """odeint(f, y0, [0, ..., t_end], method='dopri5') in float64: Hairer's initial step, RMS error
    norm, safety 0.9, ifactor 10, dfactor 0.2 (1 after an accepted step), order 5, FSAL, the
    quartic interpolant at t_end. Returns (y(t_end), accepted step ends, nfe, rejected)."""
    nfe = [0]

    def F(t, y):
        nfe[0] += 1
        return f(t, y)

    t, y = 0.0, y0.copy()
    f0 = F(t, y)
    scale = atol + np.abs(y) * rtol
    d0, d1 = rms(y / scale), rms(f0 / scale)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    f1 = F(t + h0, y + h0 * f0)
    d2 = rms((f1 - f0) / scale) / h0
    h1 = max(1e-6, h0 * 1e-3) if (d1 <= 1e-15 and d2 <= 1e-15) else (0.01 / max(d1, d2)) ** (1 / 5)
    dt = min(100 * h0, h1)
    steps, rejected, interp, t_prev = [], 0, None, 0.0
    while t_end > t:
        t1 = t + dt
        k = [f0]
        for i in range(6):
            yi = y + dt * sum(b * kk for b, kk in zip(BETA[i], k))
            k.append(F(t1 if ALPHA[i] == 1 else t + ALPHA[i] * dt, yi))
        y1 = yi
        err = dt * sum(c * kk for c, kk in zip(C_ERR, k))
        ratio = rms(err / (atol + rtol * np.maximum(np.abs(y), np.abs(y1))))
        if ratio <= 1:
            ymid = y + dt * sum(c * kk for c, kk in zip(C_MID, k))
            g0, g1 = k[0], k[6]
            interp = [y, dt * g0, dt * (g1 - 4 * g0) - 11 * y - 5 * y1 + 16 * ymid,
                      dt * (5 * g0 - 3 * g1) + 18 * y + 14 * y1 - 32 * ymid,
                      2 * dt * (g1 - g0) - 8 * (y1 + y) + 16 * ymid]
            t_prev, t, y, f0 = t, t1, y1, k[6]
            steps.append(t)
        else:
            rejected += 1
        if ratio == 0:
            factor = 10.0
        else:
            factor = min(10.0, max(0.9 / ratio ** (1 / 5), 1.0 if ratio < 1 else 0.2))
        dt = dt * factor
    x = (t_end - t_prev) / (t - t_prev)
    out = interp[0] + x * interp[1] + x ** 2 * interp[2] + x ** 3 * interp[3] + x ** 4 * interp[4]
    return out, steps, nfe[0], rejected


# ---------------------------------------------------------------- the official sampler on a DiT


def forward_with_cfg(net, x, t, y, w, t0, ch=3):
    """LightningDiT's forward_with_cfg(cfg_interval=True): the network on [x[:B]; x[:B]], channels
    0..ch-1 of both halves become u + w (c - u), or c while t[0] < t0; the other channels come
    from each half's own pass."""
    B = x.shape[0] // 2
    out = net(torch.cat([x[:B], x[:B]]), t, y)
    eps, rest = out[:, :ch], out[:, ch:]
    c, u = eps[:B], eps[B:]
    h = u + w * (c - u)
    if t[0] < t0:
        h = c
    return torch.cat([torch.cat([h, h]), rest], dim=1)


def guided_batch(x_T, y, w, null):
    """inference.py's batch in float64: [z; z] with labels [y; null] when w > 1, else z and y."""
    x = torch.from_numpy(x_T).double()
    labels = torch.from_numpy(y)
    if w > 1:
        x = torch.cat([x, x])
        labels = torch.cat([labels, torch.full_like(labels, null)])
    return x, labels


def velocity(net, x, t, labels, w, t0, ch):
    """The samplers' model call at time t on the whole batch: forward_with_cfg (w > 1) or the net."""
    tt = torch.ones(x.shape[0], dtype=torch.float64) * t
    with torch.no_grad():
        return forward_with_cfg(net, x, tt, labels, w, t0, ch) if w > 1 else net(x, tt, labels)


def sample_ode(net, x_T, y, method, K, shift, w, t0, null, ch=3):
    """Sampler.sample_ode(sampling_method=method, num_steps=K, timestep_shift=shift) with
    inference.py's batch [z; z], labels [y; null] (w > 1) or model.forward (w = 1); torchdiffeq's
    fixed grid: euler y += dt f(t0, y), heun2 y += dt (k1 + k2) / 2 with k2 = f(t0 + dt, y + dt k1).
    Returns the first half at t = 1."""
    x, labels = guided_batch(x_T, y, w, null)
    grid = official_grid(K, shift).double()

    def fn(t, xx):
        return velocity(net, xx, t, labels, w, t0, ch)

    for a, b in zip(grid[:-1], grid[1:]):
        dt = b - a
        k1 = fn(a, x)
        if method == "euler":
            x = x + dt * k1
        else:
            k2 = fn(a + dt, x + dt * k1)
            x = x + dt * (0.5 * k1 + 0.5 * k2)
    return x[:x_T.shape[0]].numpy()


def sample_dopri5(net, x_T, y, w, t0, null, ch=4, atol=1e-6, rtol=1e-3):
    """Sampler.sample_ode(sampling_method='dopri5') with forward_with_cfg: odeint's state is the
    whole batch ([z; z] with guidance), its error norm the RMS over all of it. With guidance on all
    channels (ch = C) the two halves stay equal, so the norm equals the conditional half's."""
    x, labels = guided_batch(x_T, y, w, null)
    shape = x.shape

    def f(t, yy):
        return velocity(net, torch.from_numpy(yy).view(shape), t, labels, w, t0, ch).numpy().reshape(-1)

    y1, steps, nfe, rej = dopri5(f, x.numpy().reshape(-1), 1.0, atol, rtol)
    return y1.reshape(shape)[:x_T.shape[0]], nfe


class Float32Net(torch.nn.Module):
    """The network in float32 on float64 inputs, its output back in float64."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x, t, y):
        return self.net(x.float(), t.float(), y).double()


FLOW_DIT = dict(name="dit", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=2,
                num_classes=10, class_dropout_prob=0.1, learn_sigma=False)
# (method, K, shift, our scale S (w = 1 + S), cfg interval t0); t0 0.3 lies between grid points.
FLOW_RUNS = [("euler", 12, 0.3, 3.0, 0.3), ("euler", 12, 1.0, 0.0, 0.0), ("heun", 8, 0.3, 3.0, 0.3),
             ("euler", 10, 1.0, 2.0, 0.0)]

# dopri5 runs (S, t0), guidance on all 4 channels, atol 1e-6, rtol 1e-3.
DOPRI5_RUNS = [(0.0, 0.0), (2.0, 0.3)]


def rel(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def write_fixtures(outdir, write_safetensors, atomic, json, dit_torch, make_weights_dit, f32, seed=401):
    import os
    ok = True
    t = {}
    for K in (250, 5):
        for s in (0.3, 1.0):
            t["grid.K%d_s%g" % (K, s)] = shifted_grid64(K, s)
    # The float32 official grid rounds differently but agrees to float32 precision.
    d = np.abs(official_grid(250, 0.3).double().numpy() - t["grid.K250_s0.3"]).max()
    good = d < 1e-6
    ok &= good
    print("self-check flow grid float32 official vs float64 max|diff|=%.1e: %s" % (d, "ok" if good else "FAIL"))
    u = np.array([1e-6, 0.02, 0.3, 0.5, 0.77, 0.97, 0.999999], dtype=np.float64)
    t["draw.u"], t["draw.t"] = u, logit_normal(u)

    g = torch.Generator().manual_seed(seed)
    B, C, S = 3, 4, 5
    v = torch.randn(B, C, S, S, generator=g, dtype=torch.float64).float().double()
    noise = torch.randn(B, C, S, S, generator=g, dtype=torch.float64).float().double()
    data = torch.randn(B, C, S, S, generator=g, dtype=torch.float64).float().double()
    for cos in (False, True):
        vv = v.clone().requires_grad_(True)
        L = flow_loss(vv, noise, data, cos)
        L.backward()
        name = "cos" if cos else "mse"
        t["loss." + name] = np.array([L.item()])
        t["loss.grad_" + name] = vv.grad.numpy()
    # torch 1.13's cosine_similarity (clamp of the product) agrees away from zero norms.
    alt = torch.nn.functional.cosine_similarity(v, data - noise, dim=1)
    d = (alt - cos_sim_torch2(v, data - noise)).abs().max().item()
    good = d < 1e-12
    ok &= good
    print("self-check flow cosine (torch 2 formula vs this torch) max|diff|=%.1e: %s" % (d, "ok" if good else "FAIL"))
    t["loss.v"], t["loss.noise"], t["loss.data"] = v.numpy(), noise.numpy(), data.numpy()

    # dopri5 on y' = A y (a damped rotation, a stiffer pair, a growing mode).
    A = np.zeros((6, 6))
    A[0:2, 0:2] = [[-0.5, 3.0], [-3.0, -0.5]]
    A[2:4, 2:4] = [[-60.0, 1.0], [0.0, -4.0]]
    A[4, 4], A[5, 5], A[5, 4] = 1.5, -0.2, 0.7
    y0 = np.array([1.0, -0.5, 2.0, 0.3, -1.2, 0.8])
    exact = scipy.linalg.expm(A) @ y0
    for name, atol, rtol in (("ode", 1e-6, 1e-3), ("ode_tight", 1e-9, 1e-7)):
        y1, steps, nfe, rej = dopri5(lambda tt, yy: A @ yy, y0, 1.0, atol, rtol)
        t[name + ".steps"] = np.array(steps)
        t[name + ".stats"] = np.array([nfe, len(steps), rej], dtype=np.float64)
        t[name + ".tol"] = np.array([atol, rtol])
        t[name + ".y1"] = y1
        print("flow dopri5 %-9s atol %g rtol %g: %d accepted, %d rejected, %d evaluations, |y1 - exact| %.1e"
              % (name, atol, rtol, len(steps), rej, nfe, np.abs(y1 - exact).max()))
    t["ode.A"], t["ode.y0"], t["ode.exact"] = A, y0, exact
    write_safetensors(os.path.join(outdir, "flow.safetensors"), t, {"producer": "tests/reference/flow_reference.py"})

    # The official sampler on a 4-channel DiT (velocity output, no learned sigma).
    cfg = dit_torch.full_config(FLOW_DIT)
    torch.manual_seed(seed)
    net = dit_torch.build_from_config(cfg)
    make_weights_dit(net, seed)
    sd = net.state_dict()
    net64 = copy.deepcopy(net).double()
    g = torch.Generator().manual_seed(seed + 1)
    n = 3
    x_T = torch.randn(n, 4, 8, 8, generator=g).numpy()
    y = torch.randint(0, 10, (n,), generator=g, dtype=torch.int64).numpy()
    null = cfg["num_classes"]
    outs = []
    for method, K, shift, s, t0 in FLOW_RUNS:
        outs.append(sample_ode(net64, x_T, y, method, K, shift, 1 + s, t0, null))
    # The fixture must tell the official semantics from near misses: guidance on all channels,
    # no cfg interval, no shift, Euler instead of Heun.
    m, K, sh, s, t0 = FLOW_RUNS[0]
    x1_all = sample_ode(net64, x_T, y, m, K, sh, 1 + s, t0, null, ch=4)
    d_all = rel(x1_all, outs[0])
    d_int = rel(sample_ode(net64, x_T, y, m, K, sh, 1 + s, 0.0, null), outs[0])
    d_sh = rel(sample_ode(net64, x_T, y, m, K, 1.0, 1 + s, t0, null), outs[0])
    m, K, sh, s, t0 = FLOW_RUNS[2]
    d_heun = rel(sample_ode(net64, x_T, y, "euler", K, sh, 1 + s, t0, null), outs[2])
    good = min(d_all, d_int, d_sh, d_heun) > 1e-2
    ok &= good
    print("flow_dit_sampling rel diff to: 4-channel guidance %.1e, no interval %.1e, no shift %.1e, euler for "
          "heun %.1e (must be > 1e-2: %s)" % (d_all, d_int, d_sh, d_heun, "ok" if good else "FAIL"))
    # dopri5 where the official state's halves coincide: unguided, and guided on all channels.
    # Its error estimate of a step is close to float32 rounding here, so the step sizes follow the
    # network's precision: the reference runs the network in float32 as the official does (the
    # state in float64). A float64 network changes the steps and the result by up to 7e-3.
    net32 = Float32Net(copy.deepcopy(net).float())
    dop = [sample_dopri5(net32, x_T, y, 1 + s, t0, null) for s, t0 in DOPRI5_RUNS]
    print("flow_dit_sampling dopri5: %s network evaluations" % ", ".join(str(d[1]) for d in dop))
    tensors = {"sample.x_T": x_T, "sample.y": y,
               "sample.dopri5_runs": np.array(DOPRI5_RUNS, dtype=np.float64),
               "sample.dopri5_nfe": np.array([d[1] for d in dop], dtype=np.int64),
               "sample.dopri5_x1": np.stack([d[0] for d in dop]).astype(np.float32),
               "sample.runs": np.array([[K, sh, s, t0] for _, K, sh, s, t0 in FLOW_RUNS], dtype=np.float64),
               "sample.heun": np.array([m == "heun" for m, *_ in FLOW_RUNS], dtype=np.int64),
               "sample.x1": np.stack(outs).astype(np.float32),
               "sample.x1_all_channels": x1_all.astype(np.float32)}
    for k, p in sd.items():
        tensors["param." + k] = f32(p)
    with atomic(os.path.join(outdir, "flow_dit_sampling.json")) as f:
        f.write((json.dumps(cfg, indent=1) + "\n").encode("utf-8"))
    write_safetensors(os.path.join(outdir, "flow_dit_sampling.safetensors"), tensors,
                      {"producer": "tests/reference/flow_reference.py"})
    return ok


if __name__ == "__main__":
    for K in (5,):
        for s in (0.3, 1.0):
            print("K=%d shift=%g:" % (K, s), " ".join("%.17g" % v for v in shifted_grid64(K, s)))
    g = shifted_grid64(250, 0.3)
    print("K=250 shift=0.3: t[1]=%.17g t[80]=%.17g t[81]=%.17g t[248]=%.17g" % (g[1], g[80], g[81], g[248]))
    print("unguided steps at t0=0.125:", int((g[:-1] < 0.125).sum()))
    print("logit-normal t(u):", " ".join("%.17g" % v for v in logit_normal(np.array([0.3, 0.5, 0.77]))))
