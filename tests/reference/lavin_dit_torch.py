"""PyTorch twin of LaVin-DiT, written from docs/lavin_dit.md (DerrickWang005/LaVin-DiT lib/model/dit.py,
blocks.py).

State_dict names, shapes and order equal the official LaVinDiT's (no buffers: the 3-D RoPE is computed
on the fly). Differences from the official module, on purpose:
- forward(x, t, context) takes the answer latent x [B, C, S, S] (T_x = 1) and the conditioning frames
  context [B, T_c, C, S, S] as images and packs both into "(pH pW C)" tokens itself (the official
  forward_with_cfg does that packing before forward); it returns [B, C, S, S] (the T_x axis dropped);
- apex FusedLayerNorm / FusedRMSNorm become plain formulas in the input dtype (float64 stays float64);
- flash_attn_func becomes explicit softmax attention; GQA repeats each kv head for its kv_group
  consecutive q heads (flash-attn's mapping: q head h reads kv head h // kv_group);
- the RoPE tables are computed in float32 then cast, as compute_freqs does under autocast(False).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from dit_torch import TimestepEmbedder
from uvit_torch import _dev, on_meta  # noqa: F401  (on_meta re-exported)


def rms(x, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class RMSNorm(nn.Module):
    """FusedRMSNorm(dim, eps) with a weight (the q/k norms)."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **_dev()))

    def forward(self, x):
        return rms(x, self.eps) * self.weight


def rope_3d(T, H, W, head_dim):
    """cos, sin [T*H*W, head_dim] (float32): three sections of head_dim/3 for (t, h, w), each NeoX style
    (cat[cos, cos] over its halves) with f_k = 10000^(-2k/sec)."""
    sec = head_dim // 3
    inv = 1.0 / (10000.0 ** (torch.arange(0, sec, 2)[: sec // 2].float() / sec))
    ct, ch, cw = torch.meshgrid(torch.arange(T, dtype=torch.float32), torch.arange(H, dtype=torch.float32),
                                torch.arange(W, dtype=torch.float32), indexing="ij")
    parts = [c.reshape(-1, 1) * inv[None, :] for c in (ct, ch, cw)]
    cos = torch.cat([torch.cat([p.cos(), p.cos()], -1) for p in parts], -1)
    sin = torch.cat([torch.cat([p.sin(), p.sin()], -1) for p in parts], -1)
    return cos, sin


def apply_rope(x, cos, sin, sec):
    """x [B, L, heads, head_dim]: rotate_half inside each section."""
    out = []
    for i, xs in enumerate(x.split(sec, dim=-1)):
        c = cos[:, i * sec:(i + 1) * sec].to(x.dtype)[None, :, None, :]
        s = sin[:, i * sec:(i + 1) * sec].to(x.dtype)[None, :, None, :]
        a, b = xs.chunk(2, dim=-1)
        out.append(xs * c + torch.cat((-b, a), dim=-1) * s)
    return torch.cat(out, dim=-1)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, kv_group):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_heads // kv_group, dim // num_heads
        Dq, Dk = num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        for s in ("cond", "x"):
            setattr(self, s + "_q", nn.Linear(dim, Dq, bias=False, **_dev()))
            setattr(self, s + "_k", nn.Linear(dim, Dk, bias=False, **_dev()))
            setattr(self, s + "_v", nn.Linear(dim, Dk, bias=False, **_dev()))
            setattr(self, s + "_qnorm", RMSNorm(Dq))
            setattr(self, s + "_knorm", RMSNorm(Dk))
            setattr(self, s + "_proj", nn.Linear(Dq, dim, bias=False, **_dev()))

    def forward(self, cond, x, shape):
        B, N, C = cond.shape
        M = x.shape[1]
        qs, ks, vs = [], [], []
        for s, h in (("cond", cond), ("x", x)):
            q = getattr(self, s + "_qnorm")(getattr(self, s + "_q")(h))
            k = getattr(self, s + "_knorm")(getattr(self, s + "_k")(h))
            v = getattr(self, s + "_v")(h)
            qs.append(q.reshape(B, -1, self.num_heads, self.head_dim))
            ks.append(k.reshape(B, -1, self.num_kv_heads, self.head_dim))
            vs.append(v.reshape(B, -1, self.num_kv_heads, self.head_dim))
        q, k, v = torch.cat(qs, 1), torch.cat(ks, 1), torch.cat(vs, 1)
        cos, sin = rope_3d(*shape, self.head_dim)
        sec = self.head_dim // 3
        q, k = apply_rope(q, cos, sin, sec), apply_rope(k, cos, sin, sec)
        g = self.num_heads // self.num_kv_heads
        q = q.transpose(1, 2)
        k = k.repeat_interleave(g, dim=2).transpose(1, 2)
        v = v.repeat_interleave(g, dim=2).transpose(1, 2)
        a = torch.softmax((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5, dim=-1)
        out = (a @ v).transpose(1, 2).reshape(B, N + M, C)
        c, xo = torch.split(out, [N, M], dim=1)
        return self.cond_proj(c), self.x_proj(xo)


class SwiGLU(nn.Module):
    def __init__(self, dim):
        super().__init__()
        inter = int((4 * dim * 2 / 3) / 64) * 64
        self.gate_proj = nn.Linear(dim, inter, bias=False, **_dev())
        self.down_proj = nn.Linear(inter, dim, bias=False, **_dev())
        self.up_proj = nn.Linear(dim, inter, bias=False, **_dev())

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, dim, num_heads, kv_group):
        super().__init__()
        self.joint_attn = Attention(dim, num_heads, kv_group)
        self.cond_mlp = SwiGLU(dim)
        self.x_mlp = SwiGLU(dim)
        self.cond_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim, **_dev()))
        self.x_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 4 * dim, **_dev()))

    def forward(self, cond, x, t_cond, t_x, shape):
        B = t_cond.shape[0]
        sc, gc, sc2, gc2 = self.cond_modulation(t_cond).reshape(B, 4, -1).chunk(4, dim=1)
        sx, gx, sx2, gx2 = self.x_modulation(t_x).reshape(B, 4, -1).chunk(4, dim=1)
        gc, gc2, gx, gx2 = gc.tanh(), gc2.tanh(), gx.tanh(), gx2.tanh()
        c, xm = self.joint_attn((1 + sc) * rms(cond), (1 + sx) * rms(x), shape)
        cond = cond + gc * rms(c)
        x = x + gx * rms(xm)
        cond = cond + gc2 * rms(self.cond_mlp((1 + sc2) * rms(cond)))
        x = x + gx2 * rms(self.x_mlp((1 + sx2) * rms(x)))
        return cond, x


class FinalLayer(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.linear = nn.Linear(dim, out, **_dev())
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim, **_dev()))

    def forward(self, x, t):
        return self.linear(rms(x) * (1 + self.adaLN_modulation(t).unsqueeze(1)))


def pack(img, p):
    """[B, T, C, S, S] -> [B, T*(S/p)^2, p*p*C], "B C F (H pH) (W pW) -> B F H W (pH pW C)"."""
    B, T, C, S, _ = img.shape
    g = S // p
    return img.reshape(B, T, C, g, p, g, p).permute(0, 1, 3, 5, 4, 6, 2).reshape(B, T * g * g, p * p * C)


class LayerNorm(nn.Module):
    """FusedLayerNorm(D): affine, eps 1e-5."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, **_dev()))
        self.bias = nn.Parameter(torch.zeros(dim, **_dev()))

    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, 1e-5)


class LaVinDiT(nn.Module):
    def __init__(self, input_size=32, num_frames=9, patch_size=2, in_channels=16, hidden_size=1152, depth=28,
                 num_heads=16, kv_group=1):
        super().__init__()
        self.p, self.C, self.S, self.depth = patch_size, in_channels, input_size, depth
        pdim = patch_size * patch_size * in_channels
        self.cond_embedder = nn.Sequential(nn.Linear(pdim, hidden_size, **_dev()), LayerNorm(hidden_size))
        self.x_embedder = nn.Sequential(nn.Linear(pdim, hidden_size, **_dev()), LayerNorm(hidden_size))
        self.prompt_embed = nn.Parameter(0.02 * torch.randn(1, hidden_size, **_dev()))
        self.answer_embed = nn.Parameter(0.02 * torch.randn(1, hidden_size, **_dev()))
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, kv_group) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, pdim)
        self.pos_embed = None
        self.fixture_tokens = (num_frames + 1) * (input_size // patch_size) ** 2

    def forward(self, x, t, context):
        B, p, C, S = x.shape[0], self.p, self.C, self.S
        g = S // p
        Tc = context.shape[1]
        cond = self.cond_embedder(pack(context, p))
        h = self.x_embedder(pack(x[:, None], p))
        te = self.t_embedder(t)
        t_cond, t_x = te + self.prompt_embed, te + self.answer_embed
        for blk in self.blocks:
            cond, h = blk(cond, h, t_cond, t_x, (Tc + 1, g, g))
        h = self.final_layer(h, t_x)
        # "B (T_x H W) (ph pw c) -> B c T_x (H ph) (W pw)" with T_x = 1, the T_x axis dropped
        return h.reshape(B, g, g, p, p, C).permute(0, 5, 1, 3, 2, 4).reshape(B, C, S, S)


FIELDS = dict(input_size=32, num_frames=9, patch_size=2, in_channels=16, hidden_size=1152, depth=28,
              num_heads=16, kv_group=1)


def full_config(cfg):
    out = {"name": "lavin_dit"}
    for k, v in FIELDS.items():
        out[k] = cfg.get(k, v)
    return out


def build_from_config(cfg):
    return LaVinDiT(**{k: cfg[k] for k in FIELDS})


def preset_3b():
    """LaVinDiT_3B_2 at 512x512 (64x64 latents) with 4 prompt pairs + the query (inference.py)."""
    return full_config(dict(input_size=64, num_frames=9, patch_size=2, in_channels=16, hidden_size=2304,
                            depth=22, num_heads=32, kv_group=4))


def count(cfg):
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


TABLE_20 = [0.0000, 0.0056, 0.0111, 0.0167, 0.0222, 0.0278, 0.0333, 0.0389, 0.0444, 0.0500, 0.0524, 0.0730,
            0.1148, 0.1777, 0.2618, 0.3671, 0.4936, 0.6412, 0.8100, 1.0000]


def sample(net, frames, noise, cfg_scale, table=TABLE_20):
    """inference.py: torchdiffeq euler over the float32 table from noise (t = 0) to data (t = 1); each
    step forward_with_cfg: v_u + cfg_scale (v_c - v_u), the unconditional frames [zero, query].
    frames [B, T_c, C, S, S], noise [B, C, S, S], in the dtype of the run."""
    t = torch.tensor(table, dtype=torch.float32).to(noise.dtype)
    null = torch.cat([torch.zeros_like(frames[:, :1]), frames[:, -1:]], dim=1)
    x = noise
    with torch.no_grad():
        for i in range(len(t) - 1):
            tt = t[i].expand(x.shape[0])
            vc = net(x, tt, frames)
            vu = net(x, tt, null)
            x = x + (t[i + 1] - t[i]) * (vu + cfg_scale * (vc - vu))
    return x
