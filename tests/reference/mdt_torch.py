"""PyTorch twin of MDTv2 (and MDTv1, `v1=True`: the mdtv1 branch's `MDT`), written from docs/mdt.md (successors spec section 3 and the facts read from
sail-sg/MDT masked_diffusion/models.py recorded there).

State_dict names, shapes and order equal the official `MDTv2` (relative_position_index included, an
int64 persistent buffer), so a state_dict of this module loads the official checkpoint and vice
versa. It reuses the DiT twin's embedders, modulation and final layer (dit_torch.py). Differences
from the official module, on purpose:
- no label dropout inside forward (the trainer replaces labels by the null class itself);
- the masked pass takes its shuffle from the caller (`ids_shuffle`, `len_keep`) instead of drawing
  torch.rand itself, so the C++ engine can be fed the same mask;
- the timestep embedding is taken in the network dtype (float64 fixtures).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import dit_torch
from dit_torch import FinalLayer, LabelEmbedder, PatchEmbed, TimestepEmbedder, Mlp, modulate, unpatchify
from uvit_torch import _dev, on_meta  # noqa: F401


def relative_position_index(g):
    """[g*g, g*g] int64: token i = (hi, wi) to token j = (hj, wj) -> (hi-hj+g-1)(2g-1) + (wi-wj+g-1)."""
    pos = torch.arange(g * g)
    h, w = pos // g, pos % g
    return (h[:, None] - h[None, :] + g - 1) * (2 * g - 1) + (w[:, None] - w[None, :] + g - 1)


class RelativePositionBias(nn.Module):
    def __init__(self, grid, num_heads):
        super().__init__()
        self.grid = grid
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * grid - 1) ** 2 + 3, num_heads, **_dev()))
        self.register_buffer("relative_position_index", relative_position_index(grid).to(**_dev()))

    def forward(self, ids_keep=None):
        """[H, L, L], or [B, H, n, n] at the kept positions ids_keep [B, n]."""
        L = self.grid * self.grid
        idx = self.relative_position_index
        if ids_keep is None:
            return self.relative_position_bias_table[idx.reshape(-1)].reshape(L, L, -1).permute(2, 0, 1)
        sub = idx[ids_keep[:, :, None], ids_keep[:, None, :]]  # [B, n, n]
        return self.relative_position_bias_table[sub].permute(0, 3, 1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, grid):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True, **_dev())
        self.proj = nn.Linear(dim, dim, **_dev())
        self.rel_pos_bias = RelativePositionBias(grid, num_heads)

    def forward(self, x, ids_keep=None):
        B, N, D = x.shape
        H = self.num_heads
        q, k, v = self.qkv(x).reshape(B, N, 3, H, D // H).permute(2, 0, 3, 1, 4)
        s = (q @ k.transpose(-2, -1)) * self.scale + self.rel_pos_bias(ids_keep).to(x.dtype)
        return self.proj((s.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, N, D))


def _ln(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)


class MDTBlock(nn.Module):
    """DiT's adaLN-Zero block with the relative bias; skip: x = skip_linear(cat[x, skip]) first."""

    def __init__(self, dim, num_heads, mlp_ratio, grid, skip=False):
        super().__init__()
        self.attn = Attention(dim, num_heads, grid)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, **_dev()))
        self.skip_linear = nn.Linear(2 * dim, dim, **_dev()) if skip else None

    def forward(self, x, c, skip=None, ids_keep=None):
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))
        s1, c1, g1, s2, c2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(_ln(x), s1, c1), ids_keep)
        return x + g2.unsqueeze(1) * self.mlp(modulate(_ln(x), s2, c2))


class MDTv2(nn.Module):
    def __init__(self, input_size=32, patch_size=2, in_channels=4, hidden_size=1152, depth=28, num_heads=16,
                 mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True, mask_ratio=None,
                 decode_layer=4, v1=False):
        """v1: the mdtv1 branch's `MDT`: `blocks` without long skips; the side-interpolater (or the
        decoder position) before the last decode_layer of them."""
        super().__init__()
        self.v1 = v1
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        # Registration order: the module's own parameters (pos_embed, decoder_pos_embed, mask_token)
        # come first in the state_dict whatever their place here; the submodules follow in order.
        self.x_embedder = PatchEmbed(input_size, patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        L = self.x_embedder.num_patches
        g = input_size // patch_size
        self.pos_embed = nn.Parameter(torch.zeros(1, L, hidden_size, **_dev()))
        blk = lambda skip: MDTBlock(hidden_size, num_heads, mlp_ratio, g, skip)  # noqa: E731
        if v1:
            self.blocks = nn.ModuleList([blk(False) for _ in range(depth)])
            self.decode_layer = decode_layer
        else:
            half = (depth - decode_layer) // 2
            self.en_inblocks = nn.ModuleList([blk(False) for _ in range(half)])
            self.en_outblocks = nn.ModuleList([blk(True) for _ in range(half)])
            self.de_blocks = nn.ModuleList([blk(True) for _ in range(decode_layer)])
        self.sideblocks = nn.ModuleList([blk(False)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, L, hidden_size, **_dev()))
        self.mask_token = nn.Parameter(torch.zeros(1, 1, hidden_size, **_dev()),
                                       requires_grad=mask_ratio is not None)
        if not self.pos_embed.is_meta:
            with torch.no_grad():
                pe = torch.from_numpy(dit_torch.sincos_pos_embed_2d(hidden_size, g)).float()
                self.pos_embed.copy_(pe)
                self.decoder_pos_embed.copy_(pe)

    def forward(self, x, t, y, ids_shuffle=None, len_keep=None):
        """x [B, C, S, S], t [B] (ADM index), y [B]; with ids_shuffle [B, L] (a permutation per sample)
        and len_keep, the masked pass (the official enable_mask=True with this shuffle)."""
        x = self.x_embedder(x) + self.pos_embed.to(x.dtype)
        c = self.t_embedder(t) + self.y_embedder(y)
        input_skip = x
        ids_keep = None
        if ids_shuffle is not None:
            B, L, D = x.shape
            ids_keep = ids_shuffle[:, :len_keep]
            ids_restore = torch.argsort(ids_shuffle, dim=1)
            mask = torch.ones(B, L, dtype=x.dtype)
            mask[:, :len_keep] = 0
            mask = torch.gather(mask, 1, ids_restore)  # 1: masked
            x = torch.gather(x, 1, ids_keep[:, :, None].expand(-1, -1, D))
        if self.v1:
            encoder, decoder = self.blocks[:len(self.blocks) - self.decode_layer], \
                self.blocks[len(self.blocks) - self.decode_layer:]
            for b in encoder:
                x = b(x, c, ids_keep=ids_keep)
        else:
            skips = []
            for b in self.en_inblocks:
                x = b(x, c, ids_keep=ids_keep)
                skips.append(x)
            for b in self.en_outblocks:
                x = b(x, c, skip=skips.pop(), ids_keep=ids_keep)
        if ids_shuffle is not None:
            # side-interpolater: append mask tokens, unshuffle, + decoder_pos_embed, the side block,
            # then the side block's output on masked tokens only.
            tokens = self.mask_token.to(x.dtype).expand(B, L - len_keep, -1)
            x = torch.gather(torch.cat([x, tokens], 1), 1, ids_restore[:, :, None].expand(-1, -1, D))
            x = x + self.decoder_pos_embed.to(x.dtype)
            before = x
            for b in self.sideblocks:
                x = b(x, c)
            m = mask[:, :, None]
            x = x * m + (1 - m) * before
        else:
            x = x + self.decoder_pos_embed.to(x.dtype)
        if self.v1:
            for b in decoder:
                x = b(x, c)
        else:
            for b in self.de_blocks:
                x = b(x, c, skip=input_skip)
        return unpatchify(self.final_layer(x, c), self.out_channels, self.patch_size)


CONFIG_KEYS = ["input_size", "patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
               "class_dropout_prob", "num_classes", "learn_sigma", "mask_ratio", "decode_layer"]
DEFAULTS = dict(dit_torch.DEFAULTS, mask_ratio=None, decode_layer=4)
SIZES = {"s": (12, 384, 6), "b": (12, 768, 12), "l": (24, 1024, 16), "xl": (28, 1152, 16)}


def full_config(cfg):
    out = {"name": cfg.get("name", "mdt")}
    for k in CONFIG_KEYS:
        out[k] = cfg.get(k, DEFAULTS[k])
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["class_dropout_prob"] = float(out["class_dropout_prob"])
    if out["mask_ratio"] is not None:
        out["mask_ratio"] = float(out["mask_ratio"])
    return out


def build_from_config(cfg):
    cfg = full_config(cfg)
    return MDTv2(v1=cfg.pop("name") == "mdtv1", **cfg)


def preset(size, decode_layer, input_size=32, name="mdt"):
    depth, hidden, heads = SIZES[size]
    return dict(name=name, input_size=input_size, patch_size=2, in_channels=4, hidden_size=hidden, depth=depth,
                num_heads=heads, num_classes=1000, class_dropout_prob=0.1, learn_sigma=True, decode_layer=decode_layer)


def count(cfg):
    """(tensors, parameters) of the state_dict, the int64 index buffers included, without allocating."""
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


def randomize(net, g):
    """After make_weights_dit: the relative bias tables N(0, 0.5), mask_token and the learnable
    positions perturbed, so every MDT-specific path carries a visible signal."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, RelativePositionBias):
                m.relative_position_bias_table.copy_(0.5 * torch.randn(m.relative_position_bias_table.shape,
                                                                       generator=g))
        net.mask_token.copy_(torch.randn(net.mask_token.shape, generator=g))
        net.pos_embed.add_(0.3 * torch.randn(net.pos_embed.shape, generator=g))
        net.decoder_pos_embed.add_(0.3 * torch.randn(net.decoder_pos_embed.shape, generator=g))


if __name__ == "__main__":
    for n, c in [("mdt_xl_2", preset("xl", 4)), ("mdt_s_2", preset("s", 6)),
                 ("mdtv1_xl_2", preset("xl", 2, name="mdtv1"))]:
        print(n, count(c))
