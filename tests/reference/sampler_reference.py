#!/usr/bin/env python3
"""Independent float64 numpy reference for uvit.cpp's sampler tests (SPEC 6, 9, 10, 11, 22.4).

Prints the toy end-to-end results (1-D data N(0, 0.5^2), exact eps, x_T = 1) that
tests/unit/test_diffusion.cpp asserts: the U-ViT pp DPM-Solver++ and old DPM-Solver-fast values of
SPEC 22.4, plus DDIM (eta = 0) on the DDPM index grid, which SPEC does not list.
Run: /usr/bin/python3 tests/reference/sampler_reference.py
"""
import numpy as np

N = 1000
betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, N) ** 2
knot_a = 0.5 * np.cumsum(np.log1p(-betas))
knot_t = np.arange(1, N + 1) / N


def interp(x, xs, ys):  # linear, extrapolating with the end segments
    k = int(np.clip(np.searchsorted(xs, x, side="right"), 1, len(xs) - 1)) - 1
    return ys[k] + (x - xs[k]) * (ys[k + 1] - ys[k]) / (xs[k + 1] - xs[k])


class Discrete:
    def log_alpha(self, t):
        return interp(t, knot_t, knot_a)

    def inv_lambda(self, lam):
        la = -0.5 * np.logaddexp(0, -2 * lam)
        return interp(la, knot_a[::-1], knot_t[::-1])


class Linear:
    b0, b1 = 0.1, 20.0

    def log_alpha(self, t):
        return -0.25 * t * t * (self.b1 - self.b0) - 0.5 * t * self.b0

    def inv_lambda(self, lam):
        tmp = 2 * (self.b1 - self.b0) * np.logaddexp(0, -2 * lam)
        return tmp / ((np.sqrt(self.b0 ** 2 + tmp) + self.b0) * (self.b1 - self.b0))


def alpha(ns, t):
    return np.exp(ns.log_alpha(t))


def sigma(ns, t):
    return np.sqrt(-np.expm1(2 * ns.log_alpha(t)))


def lam(ns, t):
    return np.log(alpha(ns, t)) - np.log(sigma(ns, t))


def eps_toy(ns, x, t):
    a, s = alpha(ns, t), sigma(ns, t)
    return s * x / (0.25 * a * a + s * s)


def fast_orders(steps):
    k = steps // 3 + 1
    if steps % 3 == 0:
        return [3] * (k - 2) + [2, 1]
    return [3] * (k - 1) + [1 if steps % 3 == 1 else 2]


def step3(ns, x, s, t, r1, r2, data):
    """Singlestep order 3, 'dpmsolver' form, written from the DPM-Solver papers' equations."""
    ls, lt = lam(ns, s), lam(ns, t)
    h = lt - ls
    s1, s2 = ns.inv_lambda(ls + r1 * h), ns.inv_lambda(ls + r2 * h)

    def model(xx, tt):
        e = eps_toy(ns, xx, tt)
        return (xx - sigma(ns, tt) * e) / alpha(ns, tt) if data else e

    m0 = model(x, s)
    if data:
        u1 = sigma(ns, s1) / sigma(ns, s) * x - alpha(ns, s1) * np.expm1(-r1 * h) * m0
        m1 = model(u1, s1)
        p22 = np.expm1(-r2 * h) / (r2 * h) + 1
        u2 = (sigma(ns, s2) / sigma(ns, s) * x - alpha(ns, s2) * np.expm1(-r2 * h) * m0
              + r2 / r1 * alpha(ns, s2) * p22 * (m1 - m0))
        m2 = model(u2, s2)
        p1 = np.expm1(-h)
        p2 = p1 / h + 1
        return sigma(ns, t) / sigma(ns, s) * x - alpha(ns, t) * p1 * m0 + alpha(ns, t) * p2 * (m2 - m0) / r2
    u1 = alpha(ns, s1) / alpha(ns, s) * x - sigma(ns, s1) * np.expm1(r1 * h) * m0
    m1 = model(u1, s1)
    p22 = np.expm1(r2 * h) / (r2 * h) - 1
    u2 = (alpha(ns, s2) / alpha(ns, s) * x - sigma(ns, s2) * np.expm1(r2 * h) * m0
          - r2 / r1 * sigma(ns, s2) * p22 * (m1 - m0))
    m2 = model(u2, s2)
    p1 = np.expm1(h)
    p2 = p1 / h - 1
    return alpha(ns, t) / alpha(ns, s) * x - sigma(ns, t) * p1 * m0 - sigma(ns, t) * p2 * (m2 - m0) / r2


def step1(ns, x, s, t):  # DPM-Solver-1 = DDIM(eta=0): both forms give alpha_t·D + sigma_t·eps
    e = eps_toy(ns, x, s)
    return alpha(ns, t) * (x - sigma(ns, s) * e) / alpha(ns, s) + sigma(ns, t) * e


def step2(ns, x, s, t, r1, data):
    ls, lt = lam(ns, s), lam(ns, t)
    h = lt - ls
    s1 = ns.inv_lambda(ls + r1 * h)
    e0 = eps_toy(ns, x, s)
    if data:
        m0 = (x - sigma(ns, s) * e0) / alpha(ns, s)
        u = sigma(ns, s1) / sigma(ns, s) * x - alpha(ns, s1) * np.expm1(-r1 * h) * m0
        m1 = (u - sigma(ns, s1) * eps_toy(ns, u, s1)) / alpha(ns, s1)
        p1 = np.expm1(-h)
        return sigma(ns, t) / sigma(ns, s) * x - alpha(ns, t) * p1 * m0 - 0.5 / r1 * alpha(ns, t) * p1 * (m1 - m0)
    u = alpha(ns, s1) / alpha(ns, s) * x - sigma(ns, s1) * np.expm1(r1 * h) * e0
    e1 = eps_toy(ns, u, s1)
    p1 = np.expm1(h)
    return alpha(ns, t) / alpha(ns, s) * x - sigma(ns, t) * p1 * e0 - 0.5 / r1 * sigma(ns, t) * p1 * (e1 - e0)


def uvit_pp(steps):
    ns = Discrete()
    g = np.linspace(1.0, 1e-3, steps + 1)
    x, i = 1.0, 0
    for o in fast_orders(steps):
        s, t = g[i], g[i + o]
        h = lam(ns, t) - lam(ns, s)
        r1 = (lam(ns, g[i + 1]) - lam(ns, s)) / h
        if o == 3:
            x = step3(ns, x, s, t, r1, (lam(ns, g[i + 2]) - lam(ns, s)) / h, True)
        elif o == 2:
            x = step2(ns, x, s, t, r1, True)
        else:
            x = step1(ns, x, s, t)
        i += o
    return x


def uvit_old(steps):
    ns = Linear()
    orders = fast_orders(steps)
    lg = np.linspace(lam(ns, 1.0), lam(ns, 1e-4), len(orders) + 1)
    g = [ns.inv_lambda(v) for v in lg]
    x = 1.0
    for k, o in enumerate(orders):
        if o == 3:
            x = step3(ns, x, g[k], g[k + 1], 1 / 3, 2 / 3, False)
        elif o == 2:
            x = step2(ns, x, g[k], g[k + 1], 0.5, False)
        else:
            x = step1(ns, x, g[k], g[k + 1])
    return x


def ddim(steps, eta=0.0):
    abar = np.concatenate([[1.0], np.cumprod(1 - betas)])  # abar[i + 1] for DDPM index i
    skip = N // steps
    seq = list(range(0, N, skip))[:steps]
    nxt = [-1] + seq[:-1]
    x = 1.0
    ns = Discrete()
    for i, j in zip(reversed(seq), reversed(nxt)):
        at, an = abar[i + 1], abar[j + 1]
        e = eps_toy(ns, x, (i + 1) / N)
        x0 = (x - np.sqrt(1 - at) * e) / np.sqrt(at)
        c1 = eta * np.sqrt((1 - at / an) * (1 - an) / (1 - at))
        x = np.sqrt(an) * x0 + np.sqrt(1 - an - c1 * c1) * e
    return x


if __name__ == "__main__":
    print("pp DPM-Solver++ 50 / 20 / 10:", [f"{uvit_pp(s):.10f}" for s in (50, 20, 10)])
    print("old DPM-Solver-fast 50 / 20 / 10:", [f"{uvit_old(s):.10f}" for s in (50, 20, 10)])
    print("DDIM eta=0, 50 / 20 steps:", [f"{ddim(s):.10f}" for s in (50, 20)])
