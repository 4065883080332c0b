"""PyTorch twin of latent DiffiT, written from docs/diffit.md (arXiv 2312.02139 §3, Eq. 3-8 and Fig. 4;
the names, shapes and choices of NVlabs/DiffiT diffit/diffit.py `DiffiT`).

State_dict names, shapes and order are the official module's (pos_embed, x_embedder, t_embedder,
y_embedder, blocks with attn.{relative_position_bias_table, relative_position_index, qkv_temb, qkv, proj}
and mlp.{fc1, fc2}, final_layer.linear), so a state_dict of this module loads official weights and vice
versa. It reuses the DiT twin's patch embedding, embedders, MLP, LayerNorm and sin-cos table
(dit_torch.py). Differences from the official module, on purpose:
- no label dropout inside forward (the trainer replaces labels by the null class itself);
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from dit_torch import LabelEmbedder, Mlp, PatchEmbed, TimestepEmbedder, _ln, base_init, unpatchify
from uvit_torch import _dev, on_meta


def relative_index(g):
    """[g*g, g*g]: token i = (hi, wi) to token j reads table row (hi - hj + g - 1)(2g - 1) + (wi - wj + g - 1)."""
    h, w = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    h, w = h.flatten(), w.flatten()
    return (h[:, None] - h[None, :] + g - 1) * (2 * g - 1) + (w[:, None] - w[None, :] + g - 1)


class TMSA(nn.Module):
    """Time-dependent multi-head self-attention (Eq. 3-6): q, k, v = x_s W_s + x_t W_t, the time token's
    part one row per sample broadcast to every token; softmax(q k^T / sqrt(d) + B) v with a learned
    relative position bias B over the whole grid; then the output projection."""

    def __init__(self, dim, num_heads, grid):
        super().__init__()
        self.num_heads = num_heads
        self.grid = grid
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2, num_heads, **_dev()))
        self.register_buffer("relative_position_index", relative_index(grid).to(**_dev()))
        self.qkv_temb = nn.Linear(dim, 3 * dim, **_dev())
        self.qkv = nn.Linear(dim, 3 * dim, bias=True, **_dev())
        self.proj = nn.Linear(dim, dim, **_dev())

    def forward(self, x, c):
        B, N, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x) + self.qkv_temb(c).unsqueeze(1)
        qkv = qkv.reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(N, N, H)
        a = ((q * (D // H) ** -0.5) @ k.transpose(-2, -1) + bias.permute(2, 0, 1).unsqueeze(0)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class DiffiTBlock(nn.Module):
    """Eq. 7-8: x = x + TMSA(LN(x), x_t); x = x + MLP(LN(x)) (LayerNorm without affine, eps 1e-6)."""

    def __init__(self, dim, num_heads, mlp_ratio, grid):
        super().__init__()
        self.attn = TMSA(dim, num_heads, grid)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, c):
        x = x + self.attn(_ln(x), c)
        return x + self.mlp(_ln(x))


class FinalLayer(nn.Module):
    """linear(silu(LN(x)))."""

    def __init__(self, dim, patch_size, out_channels):
        super().__init__()
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels, **_dev())

    def forward(self, x):
        return self.linear(F.silu(_ln(x)))


class DiffiT(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=30, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.patch_size = patch_size
        grid = input_size // patch_size
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, hidden_size, **_dev()), requires_grad=False)
        self.blocks = nn.ModuleList([DiffiTBlock(hidden_size, num_heads, mlp_ratio, grid) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        if not self.pos_embed.is_meta:
            self._official_init(grid)

    def _official_init(self, grid):
        """Bias tables N(0, .02) (trunc_normal_ at +-2 absolute), DiT's shared rules (dit_torch.base_init:
        xavier Linears, qkv_temb included), zero final linear."""
        with torch.no_grad():
            for b in self.blocks:
                nn.init.trunc_normal_(b.attn.relative_position_bias_table, std=0.02)
            base_init(self, grid)
            nn.init.zeros_(self.final_layer.linear.weight)
            nn.init.zeros_(self.final_layer.linear.bias)

    def forward(self, x, t, y):
        """x [B, C, S, S], t [B] ADM step (float), y [B] int64 -> [B, out_channels, S, S]."""
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t) + self.y_embedder(y)  # the time token
        for block in self.blocks:
            h = block(h, c)
        return unpatchify(self.final_layer(h), self.out_channels, self.patch_size)


CONFIG_KEYS = ["input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
               "class_dropout_prob", "num_classes", "learn_sigma"]
# The constructor's defaults (DiffiT-XL/2, `Diffit()`, sets depth 28).
DEFAULTS = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=30, num_heads=16,
                mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True)
XL_2 = dict(DEFAULTS, depth=28)


def full_config(cfg):
    out = {"name": "diffit"}
    for k in CONFIG_KEYS:
        out[k] = cfg.get(k, DEFAULTS[k])
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["class_dropout_prob"] = float(out["class_dropout_prob"])
    # Accepted and unused by the official constructor; our full_config writes them too.
    out["mask_ratio"] = None
    out["decode_layer"] = None
    return out


def build_from_config(cfg):
    cfg = {k: v for k, v in full_config(cfg).items() if k in CONFIG_KEYS}
    return DiffiT(**cfg)


def randomize(net, g):
    """After make_weights_dit: the relative bias tables N(0, 0.5), so the bias carries a visible signal."""
    with torch.no_grad():
        for b in net.blocks:
            t = b.attn.relative_position_bias_table
            t.copy_(0.5 * torch.randn(t.shape, generator=g))


def count(cfg):
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


if __name__ == "__main__":
    n, p = count(XL_2)
    print("| diffit_xl_2 | %d | %s |" % (n, format(p, ",")))
