"""PyTorch twin of LightningDiT, written from docs/lightningdit.md (hustvl/LightningDiT
models/lightningdit.py, rmsnorm.py, swiglu_ffn.py, pos_embed.py).

State_dict names, shapes and order equal the official checkpoints (feat_rope buffers included), so a
state_dict of this module loads official weights and vice versa. It reuses the DiT twin's embedders,
patch embedding and sin-cos table (dit_torch.py). Differences from the official module, on purpose:
- no label dropout inside forward (the trainer replaces labels by the null class itself);
- RMSNorm statistics in max(float32, input dtype), so a float64 reference stays float64 (the official
  RMSNorm upcasts to float32 and casts back);
- explicit softmax attention instead of F.scaled_dot_product_attention (same math, scale Dh^-1/2).
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dit_torch
from dit_torch import LabelEmbedder, PatchEmbed, TimestepEmbedder, sincos_pos_embed_2d, unpatchify
from uvit_torch import _dev, on_meta  # noqa: F401  (on_meta re-exported)


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight over the last dimension; weight init 1, eps 1e-6."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, **_dev()))

    def forward(self, x):
        dt = torch.promote_types(x.dtype, torch.float32)
        xf = x.to(dt)
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope_tables(head_dim, grid):
    """VisionRotaryEmbeddingFast(dim=head_dim/2, pt_seq_len=grid) in float32: [grid*grid, head_dim] cos and
    sin. Token i*grid + j; features [0, Dh/2) from the row i, [Dh/2, Dh) from the column j; each frequency
    10000^(-2k/dim) used by the interleaved pair (2k, 2k+1)."""
    dim = head_dim // 2
    freqs = 1.0 / (10000 ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
    pos = torch.arange(grid) / grid * grid
    f = (pos[:, None] * freqs[None, :]).repeat_interleave(2, dim=-1)  # [grid, dim]
    full = torch.cat([f[:, None, :].expand(grid, grid, dim), f[None, :, :].expand(grid, grid, dim)], dim=-1)
    full = full.reshape(grid * grid, head_dim)
    return full.cos(), full.sin()


def rotate_half(x):
    """Interleaved pairs (a, b) -> (-b, a)."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((-b, a), dim=-1).flatten(-2)


class FeatRope(nn.Module):
    def __init__(self, head_dim, grid):
        super().__init__()
        cos, sin = rope_tables(head_dim, grid)
        self.register_buffer("freqs_cos", cos.to(_dev()["device"]))
        self.register_buffer("freqs_sin", sin.to(_dev()["device"]))

    def forward(self, t):
        return t * self.freqs_cos.to(t.dtype) + rotate_half(t) * self.freqs_sin.to(t.dtype)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qk_norm):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True, **_dev())
        self.q_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, **_dev())

    def forward(self, x, rope=None):
        B, N, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = rope(q), rope(k)
        a = ((q * Dh ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class SwiGLUFFN(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden, **_dev())
        self.w3 = nn.Linear(hidden, dim, **_dev())

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


def _ln(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


def modulate(x, shift, scale):
    x = x * (1 + scale.unsqueeze(1))
    return x if shift is None else x + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, use_qknorm, use_swiglu, use_rmsnorm, wo_shift):
        super().__init__()
        if use_rmsnorm:
            self.norm1, self.norm2 = RMSNorm(dim), RMSNorm(dim)
        else:
            self.norm1 = self.norm2 = _ln
        self.attn = Attention(dim, num_heads, use_qknorm)
        hidden = int(dim * mlp_ratio)
        self.mlp = SwiGLUFFN(dim, int(2 / 3 * hidden)) if use_swiglu else dit_torch.Mlp(dim, hidden)
        self.wo_shift = wo_shift
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, (4 if wo_shift else 6) * dim, **_dev()))

    def forward(self, x, c, rope):
        if self.wo_shift:
            c1, g1, c2, g2 = self.adaLN_modulation(c).chunk(4, dim=1)
            s1 = s2 = None
        else:
            s1, c1, g1, s2, c2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, c1), rope)
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, c2))


class FinalLayer(nn.Module):
    def __init__(self, dim, patch_size, out_channels, use_rmsnorm):
        super().__init__()
        self.norm_final = RMSNorm(dim) if use_rmsnorm else _ln
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels, **_dev())
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim, **_dev()))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class LightningDiT(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=32, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=False, use_qknorm=False,
                 use_swiglu=False, use_rope=False, use_rmsnorm=False, wo_shift=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.patch_size = patch_size
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        L = self.x_embedder.num_patches
        grid = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, L, hidden_size, **_dev()), requires_grad=False)
        self.feat_rope = FeatRope(hidden_size // num_heads, grid) if use_rope else None
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, mlp_ratio, use_qknorm, use_swiglu, use_rmsnorm,
                                           wo_shift) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels, use_rmsnorm)
        if not self.pos_embed.is_meta:
            self._official_init(grid)

    # The same official initialisation as DiT (pos_embed, patch embedder, label/time embedders,
    # zeroed adaLN and output layers).
    _official_init = dit_torch.DiT._official_init

    def forward(self, x, t, y):
        """x [B, C, S, S], t [B] float (flow time in [0, 1]), y [B] int64 -> [B, in_channels, S, S]."""
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            h = block(h, c, self.feat_rope)
        out = unpatchify(self.final_layer(h, c), self.out_channels, self.patch_size)
        return out[:, :self.in_channels] if self.learn_sigma else out


CONFIG_KEYS = ["input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
               "class_dropout_prob", "num_classes", "learn_sigma", "use_qknorm", "use_swiglu", "use_rope",
               "use_rmsnorm", "wo_shift"]
DEFAULTS = dict(input_size=32, patch_size=2, in_channels=32, hidden_size=1152, depth=28, num_heads=16,
                mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=False, use_qknorm=False,
                use_swiglu=False, use_rope=False, use_rmsnorm=False, wo_shift=False)

# name -> (depth, hidden_size, num_heads) (lightningdit.py LightningDiT_models)
SIZES = {"b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16), "1p0b": (24, 1536, 24),
         "1p6b": (28, 1792, 28)}


def full_config(cfg):
    out = {"name": "lightningdit"}
    for k in CONFIG_KEYS:
        out[k] = cfg.get(k, DEFAULTS[k])
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["class_dropout_prob"] = float(out["class_dropout_prob"])
    return out


def build_from_config(cfg):
    cfg = full_config(cfg)
    cfg.pop("name")
    return LightningDiT(**cfg)


def preset(size, patch):
    """The released configuration (configs/reproductions/*.yaml) on 16x16x32 VA-VAE latents."""
    depth, hidden, heads = SIZES[size]
    return dict(name="lightningdit", input_size=16, patch_size=patch, in_channels=32, hidden_size=hidden,
                depth=depth, num_heads=heads, num_classes=1000, class_dropout_prob=0.1, learn_sigma=False,
                use_qknorm=False, use_swiglu=True, use_rope=True, use_rmsnorm=True, wo_shift=False)


def count(cfg):
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


if __name__ == "__main__":
    print("| config | tensors | parameters |\n|---|---:|---:|")
    for s in SIZES:
        for p in (1, 2):
            n, np_ = count(preset(s, p))
            print("| lightningdit_%s_%d | %d | %s |" % (s, p, n, format(np_, ",")))
