"""PyTorch twin of the U-ViT networks (uvit and uvit_t2i), written from SPEC.md sections 2-4.

Parameter names, shapes and state_dict order equal the official checkpoints, so a state_dict of
this module loads official weights and vice versa. Only the exact ("math") attention is implemented.

The ablation variants of the paper (Bao et al. 2023, section 3 / Figure 2) are constructor arguments
too; VARIANT_DEFAULTS holds the official choices (which add nothing to the official layout).
"""

import math

import torch
import torch.nn as nn
import torch.utils.checkpoint

# Device on which modules are created. `on_meta()` switches it to "meta" so the full-size configs
# can be counted (names and shapes) without allocating or initialising anything.
_BUILD_DEVICE = None


class on_meta:
    def __enter__(self):
        global _BUILD_DEVICE
        self._old, _BUILD_DEVICE = _BUILD_DEVICE, torch.device("meta")

    def __exit__(self, *exc):
        global _BUILD_DEVICE
        _BUILD_DEVICE = self._old


# The ablation fields, each with its official value first.
VARIANTS = {
    "skip_mode": ("concat_linear", "add", "add_linear", "linear_add"),
    "pos_embed": ("learned_1d", "sincos_2d", "none"),
    "conv_position": ("after_linear", "before_linear"),
    "time_cond": ("token", "adaln"),
    "patch_embed": ("linear", "conv_stack"),
}
VARIANT_DEFAULTS = {k: v[0] for k, v in VARIANTS.items()}


def _check_variant(field, value):
    if value not in VARIANTS[field]:
        raise ValueError("nnet.%s %r is not one of %s" % (field, value, ", ".join(VARIANTS[field])))


def _dev():
    return {"device": _BUILD_DEVICE}


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    """SPEC 4.4: inverse-CDF truncated normal; bounds a, b are absolute, not multiples of std."""

    def cdf(v):
        return (1.0 + math.erf(v / math.sqrt(2.0))) / 2.0

    with torch.no_grad():
        lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
        tensor.uniform_(2 * lo - 1, 2 * hi - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
    return tensor


def timestep_embedding(timesteps, dim, max_period=10000, dtype=None):
    """SPEC 2.2: [cos(t*f), sin(t*f)], f_i = exp(-ln(max_period) i / half) in float32.

    The product t*f is formed in float32 exactly as the official code does; cos/sin are then taken
    in `dtype` (float64 for the reference fixtures, so the embedding carries no extra rounding).
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / half)
    args = timesteps[:, None].float() * freqs[None].to(timesteps.device)
    if dtype is not None:
        args = args.to(dtype)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def unpatchify(x, channels=3):
    """SPEC 2.7: token features ordered (p1, p2, C), C fastest -> image [B, C, h*p, w*p]."""
    B, L, F = x.shape
    p = int((F // channels) ** 0.5)
    h = w = int(L ** 0.5)
    assert h * w == L and p * p * channels == F
    x = x.reshape(B, h, w, p, p, channels)
    x = x.permute(0, 5, 1, 3, 2, 4)  # B, C, h, p1, w, p2
    return x.reshape(B, channels, h * p, w * p)


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, **_dev())
        self.act = nn.GELU()  # exact erf form
        self.fc2 = nn.Linear(hidden_features, in_features, **_dev())

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim ** -0.5  # `or`, as in the official code
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **_dev())
        self.proj = nn.Linear(dim, dim, **_dev())

    def forward(self, x):
        B, N, C = x.shape
        H = self.num_heads
        # qkv feature index = k*D + h*Dh + d (K=3 outermost)
        qkv = self.qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B, H, N, Dh]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)  # heads merged as h*Dh + d
        return self.proj(x)


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_scale=None,
                 norm_layer=nn.LayerNorm, skip=False, use_checkpoint=False, skip_mode="concat_linear",
                 adaln=False):
        super().__init__()
        # Registration order fixes the state_dict order: norm1, attn, norm2, mlp, skip_linear.
        self.norm1 = norm_layer(dim, **_dev())
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale)
        self.norm2 = norm_layer(dim, **_dev())
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        # concat_linear: Linear(2D -> D); add_linear / linear_add: Linear(D -> D); add: none.
        self.skip_mode = skip_mode if skip else None
        width = 2 * dim if skip_mode == "concat_linear" else dim
        self.skip_linear = nn.Linear(width, dim, **_dev()) if skip and skip_mode != "add" else None
        # time_cond adaln: time embedding -> (shift1, scale1, shift2, scale2); each norm's output
        # becomes (1 + scale) * LN(x) + shift (the paper's y_s LN(h) + y_b with y_s = 1 + ...).
        self.adaLN_modulation = nn.Linear(dim, 4 * dim, **_dev()) if adaln else None
        self.use_checkpoint = use_checkpoint

    def forward(self, x, skip=None, temb=None):
        if self.use_checkpoint:
            return torch.utils.checkpoint.checkpoint(self._forward, x, skip, temb)
        return self._forward(x, skip, temb)

    def _forward(self, x, skip=None, temb=None):
        if self.skip_mode == "concat_linear":
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # [current, skip]
        elif self.skip_mode == "add":
            x = x + skip
        elif self.skip_mode == "add_linear":
            x = self.skip_linear(x + skip)
        elif self.skip_mode == "linear_add":
            x = x + self.skip_linear(skip)
        if self.adaLN_modulation is not None:
            sh1, sc1, sh2, sc2 = self.adaLN_modulation(temb).unsqueeze(1).chunk(4, dim=-1)
            x = x + self.attn(self.norm1(x) * (1 + sc1) + sh1)
            return x + self.mlp(self.norm2(x) * (1 + sc2) + sh2)
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class PatchEmbed(nn.Module):
    def __init__(self, patch_size=16, in_chans=3, embed_dim=768, conv_stack=False):
        super().__init__()
        self.patch_size = patch_size
        if conv_stack:
            # log2(p) stride-2 3x3 convs with GELU, channels D/2^(k-1), ..., D, then a 1x1 conv
            # (Xiao et al. 2021's stem as docs/configs.md reads it, without BatchNorm).
            k = patch_size.bit_length() - 1
            if patch_size < 2 or 1 << k != patch_size or embed_dim % (1 << (k - 1)):
                raise ValueError("conv_stack needs a power-of-two patch_size and embed_dim % 2^(k-1) == 0")
            chans = [in_chans] + [embed_dim >> (k - 1 - i) for i in range(k)]
            self.convs = nn.ModuleList([nn.Conv2d(chans[i], chans[i + 1], 3, stride=2, padding=1, **_dev())
                                        for i in range(k)])
            self.proj = nn.Conv2d(chans[-1], embed_dim, 1, **_dev())
        else:
            self.convs = None
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, **_dev())

    def forward(self, x):
        B, C, H, W = x.shape
        assert H % self.patch_size == 0 and W % self.patch_size == 0
        for conv in self.convs or []:
            x = nn.functional.gelu(conv(x))
        return self.proj(x).flatten(2).transpose(1, 2)  # token = row*(S/p) + col


class _UViTBase(nn.Module):
    """Shared trunk. `extra_modules` registers label_emb / context_embed after time_embed."""

    def _build(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
               qk_scale, norm_layer, mlp_time_embed, use_checkpoint, conv, skip, extra_modules,
               skip_mode="concat_linear", pos_embed="learned_1d", conv_position="after_linear",
               time_cond="token", patch_embed="linear"):
        for field, value in (("skip_mode", skip_mode), ("pos_embed", pos_embed), ("conv_position", conv_position),
                             ("time_cond", time_cond), ("patch_embed", patch_embed)):
            _check_variant(field, value)
        self.num_features = self.embed_dim = embed_dim
        self.in_chans = in_chans
        self.time_token = time_cond == "token"
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
                                      conv_stack=patch_embed == "conv_stack")
        num_patches = (img_size // patch_size) ** 2
        self.time_embed = nn.Sequential(
            nn.Linear(embed_dim, 4 * embed_dim, **_dev()),
            nn.SiLU(),
            nn.Linear(4 * embed_dim, embed_dim, **_dev()),
        ) if mlp_time_embed else nn.Identity()
        extra_modules()
        tokens = self.extras + num_patches
        if pos_embed == "learned_1d":
            self.pos_embed = nn.Parameter(torch.zeros(1, tokens, embed_dim, **_dev()))
        elif pos_embed == "sincos_2d":
            # Fixed: DiT's 2-D sin-cos table for the patches, zero for the extra tokens (time, label,
            # text), which their own embeddings already tell apart. A buffer outside the
            # state_dict: no gradient, no weight decay, nothing to load.
            import dit_torch  # dit_torch imports this module
            table = torch.zeros(1, tokens, embed_dim, dtype=torch.float64)
            table[0, self.extras:] = torch.from_numpy(
                dit_torch.sincos_pos_embed_2d(embed_dim, img_size // patch_size))
            self.register_buffer("pos_embed", table.float().to(_BUILD_DEVICE or "cpu"), persistent=False)
        else:
            self.pos_embed = None

        def blk(with_skip):
            return Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                         qk_scale=qk_scale, norm_layer=norm_layer, skip=with_skip,
                         use_checkpoint=use_checkpoint, skip_mode=skip_mode, adaln=not self.time_token)

        self.in_blocks = nn.ModuleList([blk(False) for _ in range(depth // 2)])
        self.mid_block = blk(False)
        self.out_blocks = nn.ModuleList([blk(skip) for _ in range(depth // 2)])
        self.norm = norm_layer(embed_dim, **_dev())
        # before_linear: the 3x3 conv runs on the patch-token grid (D channels) before decoder_pred.
        self.token_conv = nn.Conv2d(embed_dim, embed_dim, 3, padding=1, **_dev()) \
            if conv and conv_position == "before_linear" else None
        self.patch_dim = patch_size ** 2 * in_chans
        self.decoder_pred = nn.Linear(embed_dim, self.patch_dim, bias=True, **_dev())
        self.final_layer = nn.Conv2d(in_chans, in_chans, 3, padding=1, **_dev()) \
            if conv and conv_position == "after_linear" else nn.Identity()

        # SPEC 4.4 (convs and Embedding keep their PyTorch defaults)
        if self.decoder_pred.weight.is_meta:
            return
        if isinstance(self.pos_embed, nn.Parameter):
            trunc_normal_(self.pos_embed, std=0.02)
        self.apply(self._init_weights)
        for m in self.modules():  # adaln starts as the plain LayerNorm
            if isinstance(m, Block) and m.adaLN_modulation is not None:
                nn.init.zeros_(m.adaLN_modulation.weight)
                nn.init.zeros_(m.adaLN_modulation.bias)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def no_weight_decay(self):
        return {"pos_embed"}

    def _time_token(self, timesteps):
        emb = timestep_embedding(timesteps, self.embed_dim, dtype=self.decoder_pred.weight.dtype)
        return self.time_embed(emb).unsqueeze(dim=1)

    def _trunk(self, x, L, temb=None):
        """temb: the time embedding [B, D] the blocks' adaLN_modulation read (time_cond adaln)."""
        if self.pos_embed is not None:
            x = x + self.pos_embed
        skips = []
        for blk in self.in_blocks:
            x = blk(x, None, temb)
            skips.append(x)
        x = self.mid_block(x, None, temb)
        for blk in self.out_blocks:
            x = blk(x, skips.pop(), temb)  # LIFO: out_blocks[0] gets in_blocks[-1]
        x = self.norm(x)
        if self.token_conv is not None:
            x = x[:, self.extras:, :]
            B, _, D = x.shape
            g = int(L ** 0.5)
            x = self.token_conv(x.transpose(1, 2).reshape(B, D, g, g)).flatten(2).transpose(1, 2)
            x = self.decoder_pred(x)
        else:
            x = self.decoder_pred(x)
            assert x.size(1) == self.extras + L
            x = x[:, self.extras:, :]
        x = unpatchify(x, self.in_chans)
        return self.final_layer(x)


class UViT(_UViTBase):
    """`uvit` (libs/uvit.py::UViT). Token order: [label?, time, patches]."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                 mlp_ratio=4.0, qkv_bias=False, qk_scale=None, norm_layer=nn.LayerNorm,
                 mlp_time_embed=False, num_classes=-1, use_checkpoint=False, conv=True, skip=True,
                 skip_mode="concat_linear", pos_embed="learned_1d", conv_position="after_linear",
                 time_cond="token", patch_embed="linear"):
        super().__init__()
        self.num_classes = num_classes

        def extra():
            if num_classes > 0:
                self.label_emb = nn.Embedding(num_classes, embed_dim, **_dev())
            self.extras = (num_classes > 0) + (time_cond == "token")

        self._build(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
                    qk_scale, norm_layer, mlp_time_embed, use_checkpoint, conv, skip, extra,
                    skip_mode, pos_embed, conv_position, time_cond, patch_embed)

    def forward(self, x, timesteps, y=None):
        x = self.patch_embed(x)
        L = x.size(1)
        time = self._time_token(timesteps)
        if self.time_token:
            x = torch.cat((time, x), dim=1)
        if y is not None:
            x = torch.cat((self.label_emb(y).unsqueeze(dim=1), x), dim=1)
        return self._trunk(x, L, None if self.time_token else time[:, 0])


class UViT_t2i(_UViTBase):
    """`uvit_t2i` (libs/uvit_t2i.py::UViT). Token order: [time, ctx_0..ctx_{n-1}, patches]."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, depth=12, num_heads=12,
                 mlp_ratio=4.0, qkv_bias=False, qk_scale=None, norm_layer=nn.LayerNorm,
                 mlp_time_embed=False, use_checkpoint=False, clip_dim=768, num_clip_token=77, conv=True,
                 skip=True, skip_mode="concat_linear", pos_embed="learned_1d", conv_position="after_linear",
                 time_cond="token", patch_embed="linear"):
        super().__init__()

        def extra():
            self.context_embed = nn.Linear(clip_dim, embed_dim, **_dev())
            self.extras = (time_cond == "token") + num_clip_token

        self._build(img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio, qkv_bias,
                    qk_scale, norm_layer, mlp_time_embed, use_checkpoint, conv, skip, extra,
                    skip_mode, pos_embed, conv_position, time_cond, patch_embed)

    def forward(self, x, timesteps, context):
        x = self.patch_embed(x)
        L = x.size(1)
        context_token = self.context_embed(context)
        time = self._time_token(timesteps)
        x = torch.cat((time, context_token, x) if self.time_token else (context_token, x), dim=1)
        return self._trunk(x, L, None if self.time_token else time[:, 0])


CONFIG_KEYS_COMMON = ["img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio",
                      "qkv_bias", "qk_scale", "mlp_time_embed", "use_checkpoint", "conv", "skip"]


def build_from_config(cfg):
    """cfg: dict of official constructor args plus "name" ("uvit" or "uvit_t2i")."""
    cfg = dict(cfg)
    name = cfg.pop("name", "uvit")
    if name == "uvit":
        return UViT(**cfg)
    if name == "uvit_t2i":
        return UViT_t2i(**cfg)
    raise ValueError("unknown network name %r (expected uvit or uvit_t2i)" % name)
