"""PyTorch twin of DiT and Skip-DiT, written from docs/dit.md (successors spec sections 1-2).

State_dict names, shapes and order equal the official checkpoints (facebookresearch/DiT:models.py
`DiT`, OpenSparseLLMs/Skip-DiT:class-to-image/models.py `DiT_skip`), so a state_dict of this module
loads official weights and vice versa. Differences from the official modules, on purpose:
- no label dropout inside forward (the trainer replaces labels by the null class itself);
- the Skip-DiT skip LayerNorm runs in max(float32, input dtype), so a float64 reference stays float64
  (the official FP32_Layernorm upcasts half/bf16 to float32 and casts back);
- the timestep embedding is taken in the network dtype from float32 arguments (the official code
  returns float32 and so only runs in float32).
"""

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from uvit_torch import _dev, on_meta, timestep_embedding  # noqa: F401  (on_meta re-exported)

FREQ_DIM = 256  # TimestepEmbedder.frequency_embedding_size


def sincos_pos_embed_2d(dim, grid):
    """Fixed 2-D sin-cos table [grid*grid, dim] in float64 (MAE convention as used by DiT).

    Token r*grid + c: channels [0, dim/2) encode the column c, [dim/2, dim) the row r; each half is
    [sin(pos*w_k)]_k ++ [cos(pos*w_k)]_k with w_k = 1 / 10000^(k / (dim/4)), k = 0..dim/4-1."""
    assert dim % 4 == 0, "hidden_size must be a multiple of 4 for the 2-D sin-cos table"
    q = dim // 4
    omega = np.arange(q, dtype=np.float64) / (dim / 2.0 / 2.0)
    omega = 1.0 / 10000 ** omega

    def half(pos):
        ang = pos.astype(np.float64)[:, None] * omega[None, :]
        return np.concatenate([np.sin(ang), np.cos(ang)], axis=1)

    idx = np.arange(grid * grid)
    return np.concatenate([half(idx % grid), half(idx // grid)], axis=1)


def unpatchify(x, channels, p):
    """[B, L, p*p*C] with features ordered (p_row, p_col, c) -> [B, C, h*p, w*p]."""
    B, L, F_ = x.shape
    h = int(round(L ** 0.5))
    assert h * h == L and F_ == p * p * channels
    x = x.reshape(B, h, h, p, p, channels).permute(0, 5, 1, 3, 2, 4)  # n c h p w q
    return x.reshape(B, channels, h * p, h * p)


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class PatchEmbed(nn.Module):
    def __init__(self, img_size, patch_size, in_chans, embed_dim):
        super().__init__()
        assert img_size % patch_size == 0
        self.img_size, self.patch_size = img_size, patch_size
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, bias=True, **_dev())

    def forward(self, x):
        assert x.shape[-1] == x.shape[-2] == self.img_size
        return self.proj(x).flatten(2).transpose(1, 2)  # token = row*(S/p) + col


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        assert dim % num_heads == 0
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True, **_dev())
        self.proj = nn.Linear(dim, dim, **_dev())

    def forward(self, x):
        B, N, D = x.shape
        H = self.num_heads
        qkv = self.qkv(x).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)  # feature k*D + h*Dh + d
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, **_dev())
        self.fc2 = nn.Linear(hidden, dim, **_dev())

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


def _ln(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # no affine


class DiTBlock(nn.Module):
    """adaLN-Zero block; modulation chunks: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp."""

    def __init__(self, dim, num_heads, mlp_ratio):
        super().__init__()
        self.attn = Attention(dim, num_heads)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, **_dev()))

    def forward(self, x, c):
        s1, c1, g1, s2, c2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(_ln(x), s1, c1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(_ln(x), s2, c2))


class FinalLayer(nn.Module):
    def __init__(self, dim, patch_size, out_channels):
        super().__init__()
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels, **_dev())
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim, **_dev()))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(_ln(x), shift, scale))


class TimestepEmbedder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(FREQ_DIM, dim, **_dev()), nn.SiLU(), nn.Linear(dim, dim, **_dev()))

    def forward(self, t):
        # [cos, sin], 128 float32 frequencies exp(-ln(1e4) i / 128), t*f formed in float32.
        return self.mlp(timestep_embedding(t, FREQ_DIM, dtype=self.mlp[0].weight.dtype))


class LabelEmbedder(nn.Module):
    def __init__(self, num_classes, dim, dropout_prob):
        super().__init__()
        self.num_classes = num_classes
        # Row num_classes is the null ("unconditional") class, present only when dropout_prob > 0.
        self.embedding_table = nn.Embedding(num_classes + int(dropout_prob > 0), dim, **_dev())

    def forward(self, y):
        return self.embedding_table(y)


class SkipLinear(nn.Module):
    """Skip-DiT's fusion linear (key `skip_linears.i.linear`)."""

    def __init__(self, dim):
        super().__init__()
        self.linear = nn.Linear(2 * dim, dim, **_dev())

    def forward(self, x):
        return self.linear(x)


class SkipNorm(nn.LayerNorm):
    """LayerNorm(2D, affine, eps 1e-6) computed in at least float32."""

    def forward(self, x):
        dt = torch.promote_types(x.dtype, torch.float32)
        return F.layer_norm(x.to(dt), self.normalized_shape, self.weight.to(dt), self.bias.to(dt),
                            self.eps).to(x.dtype)


def base_init(net, grid):
    """initialize_weights' shared part (DiT, DiffiT): xavier Linears with zero biases, the sin-cos table, the
    patch conv xavier over (D, C*p*p) with zero bias, N(0, .02) label table and timestep MLP weights."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        D = net.pos_embed.shape[-1]
        net.pos_embed.copy_(torch.from_numpy(sincos_pos_embed_2d(D, grid)).float().unsqueeze(0))
        w = net.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a (D, C*p*p) matrix
        nn.init.zeros_(net.x_embedder.proj.bias)
        nn.init.normal_(net.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(net.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(net.t_embedder.mlp[2].weight, std=0.02)


class DiT(nn.Module):
    """`DiT` (facebookresearch/DiT:models.py); with skip=True, `DiT_skip` (Skip-DiT)."""

    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True, skip=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.patch_size = patch_size
        self.depth = depth
        # Registration order fixes the state_dict order (pos_embed, an own parameter, comes first).
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        L = self.x_embedder.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, L, hidden_size, **_dev()), requires_grad=False)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        if not self.pos_embed.is_meta:
            self._official_init(int(round(L ** 0.5)))
        self.skip = skip
        if skip:
            # Created after the init, so they keep PyTorch's default init (as in Skip-DiT).
            assert depth % 2 == 0, "Skip-DiT needs an even depth"
            self.skip_norms = nn.ModuleList([SkipNorm(2 * hidden_size, eps=1e-6, **_dev())
                                             for _ in range(depth // 2)])
            self.skip_linears = nn.ModuleList([SkipLinear(hidden_size) for _ in range(depth // 2)])

    def _official_init(self, grid):
        base_init(self, grid)
        with torch.no_grad():
            for lin in [b.adaLN_modulation[1] for b in self.blocks] + [self.final_layer.adaLN_modulation[1],
                                                                        self.final_layer.linear]:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, x, t, y):
        """x [B, C, S, S], t [B] float (ADM index), y [B] int64 -> [B, out_channels, S, S]."""
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t) + self.y_embedder(y)
        half = self.depth // 2
        skips = []
        for k, block in enumerate(self.blocks):
            if self.skip and k >= half:
                h = self.skip_linears[k - half](self.skip_norms[k - half](torch.cat([h, skips.pop()], dim=-1)))
            h = block(h, c)
            if self.skip and k < half:
                skips.append(h)
        return unpatchify(self.final_layer(h, c), self.out_channels, self.patch_size)


class DiT_skip(DiT):
    """Skip-DiT (`DiT_skip`): DiT with the official constructor and depth/2 long skips."""

    def __init__(self, **kwargs):
        super().__init__(skip=True, **kwargs)


CONFIG_KEYS = ["input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
               "class_dropout_prob", "num_classes", "learn_sigma"]
DEFAULTS = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True)

# name -> (depth, hidden_size, num_heads) (models.py DiT_models)
SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}


def full_config(cfg):
    """All constructor fields (official names), defaults filled in, plus "name" (dit or skip_dit)."""
    name = cfg.get("name", "dit")
    if name not in ("dit", "skip_dit"):
        raise ValueError("unknown network name %r (expected dit or skip_dit)" % name)
    out = {"name": name}
    for k in CONFIG_KEYS:
        out[k] = cfg.get(k, DEFAULTS[k])
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["class_dropout_prob"] = float(out["class_dropout_prob"])
    return out


def build_from_config(cfg):
    cfg = full_config(cfg)
    name = cfg.pop("name")
    return DiT(skip=(name == "skip_dit"), **cfg)


def preset(size, patch, input_size=32):
    depth, hidden, heads = SIZES[size]
    return dict(name="dit", input_size=input_size, patch_size=patch, in_channels=4, hidden_size=hidden,
                depth=depth, num_heads=heads, num_classes=1000, class_dropout_prob=0.1, learn_sigma=True)


def count(cfg):
    """(tensors, parameters) of the state_dict, pos_embed included, without allocating."""
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


if __name__ == "__main__":
    rows = [("dit_%s_%d" % (s, p), preset(s, p)) for s in ("s", "b", "l", "xl") for p in (2, 4, 8)]
    rows.append(("dit_xl_2_512", preset("xl", 2, 64)))
    rows.append(("skip_dit_xl_2", dict(preset("xl", 2), name="skip_dit")))
    print("| config | tensors | parameters |\n|---|---:|---:|")
    for n, c in rows:
        nt, np_ = count(c)
        print("| %s | %d | %s |" % (n, nt, format(np_, ",")))
