"""PyTorch twin of SVG's diffusion network, written from docs/svg.md (shiml20/SVG models/models_SVG.py `DiT`).

State_dict names, shapes and order equal the official module's (pos_embed, t_embedder, y_embedder, blocks
with attn.{qkv,q_norm,k_norm,proj}, ln1, final_layer), so a state_dict of this module loads official
weights and vice versa. It reuses the DiT twin's embedders, MLP, modulation and sin-cos table
(dit_torch.py). Differences from the official module, on purpose:
- the input is the feature map [B, C, S, S] (the official sequence [B, S*S, C] is its
  flatten(2).transpose(1, 2)) and the output is the velocity map [B, C, S, S]: the first C of the
  learned-sigma head's 2C channels, as rectified_flow.py's chunk(2, dim=2) keeps them;
- the pos_embed covers input_size**2 tokens (the official hard-codes 256 = 16x16);
- no label dropout inside forward (the trainer replaces labels by the null class itself);
- explicit softmax attention instead of F.scaled_dot_product_attention (same math, scale Dh^-1/2).
"""

import torch
import torch.nn as nn

from dit_torch import LabelEmbedder, Mlp, TimestepEmbedder, _ln, modulate, sincos_pos_embed_2d
from uvit_torch import _dev, on_meta  # noqa: F401  (on_meta re-exported)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qk_norm):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True, **_dev())
        # nn.LayerNorm(head_dim): affine, eps 1e-5, over each head's features.
        self.q_norm = nn.LayerNorm(self.head_dim, **_dev()) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim, **_dev()) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, **_dev())

    def forward(self, x):
        B, N, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        qkv = self.qkv(x).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k, v = self.q_norm(qkv[0]), self.k_norm(qkv[1]), qkv[2]
        a = ((q * Dh ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class Block(nn.Module):
    """DiTBlock: norm1/norm2 LayerNorm without affine (eps 1e-6), qkv bias, tanh-GELU Mlp, adaLN-Zero."""

    def __init__(self, dim, num_heads, mlp_ratio, qk_norm):
        super().__init__()
        self.attn = Attention(dim, num_heads, qk_norm)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, **_dev()))

    def forward(self, x, c):
        s1, c1, g1, s2, c2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(_ln(x), s1, c1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(_ln(x), s2, c2))


class FinalLayer(nn.Module):
    def __init__(self, dim, out_channels):
        super().__init__()
        self.linear = nn.Linear(dim, out_channels, **_dev())
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim, **_dev()))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(_ln(x), shift, scale))


class SVG(nn.Module):
    def __init__(self, input_size=16, patch_size=1, in_channels=392, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True, qk_norm=True):
        super().__init__()
        assert patch_size == 1
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.input_size = input_size
        # Registration order as the official; pos_embed (an own parameter) comes first in the state_dict.
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        L = input_size * input_size
        self.pos_embed = nn.Parameter(torch.zeros(1, L, hidden_size, **_dev()), requires_grad=False)
        self.blocks = nn.ModuleList([Block(hidden_size, num_heads, mlp_ratio, qk_norm) for _ in range(depth)])
        self.ln1 = nn.Linear(in_channels, hidden_size, **_dev())
        self.final_layer = FinalLayer(hidden_size, self.out_channels)
        if not self.pos_embed.is_meta:
            self._official_init()

    def _official_init(self):
        """initialize_weights: xavier Linears with zero biases, the sin-cos table, N(0, .02) label table and
        timestep MLP weights, zero adaLN modulations and final linear (LayerNorms keep 1 and 0)."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.zeros_(m.bias)
            D = self.pos_embed.shape[-1]
            self.pos_embed.copy_(torch.from_numpy(sincos_pos_embed_2d(D, self.input_size)).float().unsqueeze(0))
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
            for lin in [b.adaLN_modulation[1] for b in self.blocks] + [self.final_layer.adaLN_modulation[1],
                                                                        self.final_layer.linear]:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x, t, y):
        """x [B, C, S, S] features, t [B] flow time in [0, 1] (unscaled), y [B] int64 -> velocity [B, C, S, S]."""
        B, C, S, _ = x.shape
        seq = x.flatten(2).transpose(1, 2)  # the official (N, T, D) input
        h = self.ln1(seq) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t) + self.y_embedder(y)
        for block in self.blocks:
            h = block(h, c)
        out = self.final_layer(h, c)[:, :, :self.in_channels]  # chunk(2, dim=2)[0] with learn_sigma
        return out.transpose(1, 2).reshape(B, C, S, S)


CONFIG_KEYS = ["input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
               "class_dropout_prob", "num_classes", "learn_sigma", "qk_norm"]
# SVG-XL (config/example_svg_xl.yaml).
DEFAULTS = dict(input_size=16, patch_size=1, in_channels=392, hidden_size=1152, depth=28, num_heads=16,
                mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True, qk_norm=True)


def full_config(cfg):
    out = {"name": "svg"}
    for k in CONFIG_KEYS:
        out[k] = cfg.get(k, DEFAULTS[k])
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["class_dropout_prob"] = float(out["class_dropout_prob"])
    # Written by our full_config too (fixed choices of the release).
    out["head_dim"] = None
    out["use_swiglu"] = False
    return out


def build_from_config(cfg):
    cfg = {k: v for k, v in full_config(cfg).items() if k in CONFIG_KEYS}
    return SVG(**cfg)


def count(cfg):
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


if __name__ == "__main__":
    n, p = count(DEFAULTS)
    print("| svg_xl | %d | %s |" % (n, format(p, ",")))
