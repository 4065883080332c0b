"""PyTorch twin of FiTv2 and FiTv1, written from docs/fit.md (whlzy/FiT fit/model/fit_model.py,
modules.py, rope.py, norms.py; configs/fitv2/*.yaml, configs/fit/config_fit_xl.yaml).

`FiT` takes what the official module takes: packed tokens x [B, N, p*p*C] (use_sit; FiTv1's ADM
layout without it: [B, p*p*C, N]) with features ordered (c, p1, p2), t [B], y [B], grid [B, 2, N]
(row 0 the w index, row 1 the h index) and mask [B, N]; the output has p*p*2C features per token with
learn_sigma. `tokens()` calls it with [B, N, features] whatever the layout.
Its state_dict names, shapes and order equal the official checkpoints (the RoPE buffers are
non-persistent, so they are not in it). `FiTImage` wraps it for the engine's interface, an image
[B, C, H, W] in and out, one H x W grid for the whole batch and no padding.
Differences from the official module, on purpose:
- no label dropout inside forward (the trainer replaces labels by the null class itself);
- explicit softmax attention with the boolean mask as -inf (F.scaled_dot_product_attention's math);
- the network dtype follows the input, so a float64 reference stays float64; the RoPE tables are built
  in float32 as the official buffers are, then used in the network dtype.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dit_torch import LabelEmbedder, TimestepEmbedder, modulate
from uvit_torch import _dev, on_meta  # noqa: F401  (on_meta re-exported)

ROPE_KINDS = ("normal", "linear", "ntk-aware", "ntk-aware-pro1", "ntk-aware-pro2", "ntk-by-parts", "yarn")
MAX_CACHED_LEN = 256  # positions the official RoPE caches


# ---------------------------------------------------------------------------------------------- RoPE


def _correction_range(low_rot, high_rot, dim, base, max_pos):
    """YaRN's find_correction_range: indices between low_rot and high_rot rotations over max_pos."""
    def factor(rot):
        return dim * math.log(max_pos / (rot * 2 * math.pi)) / (2 * math.log(base))
    return max(math.floor(factor(low_rot)), 0), min(math.ceil(factor(high_rot)), dim - 1)


def _keep(lo, hi, n):
    """1 - linear ramp from lo to hi over n indices, float32."""
    if lo == hi:
        hi = hi + 0.001
    return 1 - ((torch.arange(n, dtype=torch.float32) - lo) / (hi - lo)).clamp(0, 1)


def axis_freqs(kind, theta, dim, length, ori):
    """The dim/2 float32 frequencies of one axis (dim = head_dim / 2) scaled for a length `length`
    trained at `ori` (docs/fit.md "RoPE")."""
    expo = torch.arange(0, dim, 2, dtype=torch.float32) / dim
    base = 1.0 / (theta ** expo)
    if kind == "normal":
        return base
    s = torch.clamp_min(torch.tensor(length) / ori, 1.0)
    lin = 1.0 / (s * theta ** expo)
    ntk = 1.0 / torch.pow(theta * s ** (dim / (dim - 2)), expo)
    if kind == "linear":
        return lin
    if kind in ("ntk-aware", "ntk-aware-pro1", "ntk-aware-pro2"):
        return ntk
    if kind == "ntk-by-parts":
        m = _keep(*_correction_range(1.25, 0.75, dim, theta, ori), dim // 2)
        f = lin * (1 - m) + ntk * m
        m = _keep(*_correction_range(16, 2, dim, theta, ori), dim // 2)
        return f * (1 - m) + base * m
    assert kind == "yarn", kind
    m = _keep(*_correction_range(32, 1, dim, theta, ori), dim // 2)
    return lin * (1 - m) + base * m


def _proportion(test, train):
    """sqrt(ln L / ln L_train) with the test length doubled, 1 when 2 L <= L_train (float32)."""
    test = 2 * test
    if float(torch.tensor(test / train)) <= 1.0:
        return torch.tensor(1.0)
    return torch.sqrt(torch.log(torch.tensor(float(test))) / torch.log(torch.tensor(float(train))))


def magnitude(kind, pe_h, pe_w, ori):
    """Factor on cos and sin: yarn's mscale, ntk-aware-pro1/2's proportions, else 1."""
    if kind == "yarn":
        s = torch.clamp_min(torch.tensor(max(pe_h, pe_w)) / ori, 1.0)
        return torch.where(s <= 1.0, torch.tensor(1.0), 0.1 * torch.log(s) + 1.0)
    if kind == "ntk-aware-pro1":
        return _proportion(max(pe_h, pe_w), ori)
    if kind == "ntk-aware-pro2":
        return _proportion(pe_h * pe_w, ori * ori)
    return torch.tensor(1.0)


class Rope(nn.Module):
    """VisionRotaryEmbedding(head_dim, custom_freqs, theta, max_pe_len_h/w, decouple, ori_max_pe_len):
    per-axis frequency tables for positions 0..255, then cos/sin of cat([h part, w part]) per token."""

    def __init__(self, head_dim, custom_freqs="normal", theta=10000.0, max_pe_len_h=None, max_pe_len_w=None,
                 decouple=False, ori_max_pe_len=None, online_rope=False):
        super().__init__()
        dim = head_dim // 2
        assert dim % 2 == 0
        self.kind = custom_freqs.lower()
        self.online = online_rope
        if online_rope:
            # online_get_2d_rope_from_grid: per-sample frequencies from `size`; the official raises for
            # normal (get_1d_rope_freqs) and lacks mscale / proportions (set only without online_rope).
            assert self.kind in ("linear", "ntk-aware", "ntk-by-parts"), self.kind
            self.theta, self.dim, self.decouple, self.ori = theta, dim, decouple, ori_max_pe_len
            return
        if self.kind == "normal":
            fh = fw = axis_freqs("normal", theta, dim, 0, 1)
            self.mag = torch.tensor(1.0)
        else:
            lh, lw = (max_pe_len_h, max_pe_len_w) if decouple else (max(max_pe_len_h, max_pe_len_w),) * 2
            fh = axis_freqs(self.kind, theta, dim, lh, ori_max_pe_len)
            fw = axis_freqs(self.kind, theta, dim, lw, ori_max_pe_len)
            self.mag = magnitude(self.kind, max_pe_len_h, max_pe_len_w, ori_max_pe_len)
        pos = torch.arange(MAX_CACHED_LEN, dtype=torch.float32)
        # Interleaved pairs: frequency k drives features 2k and 2k + 1.
        self.register_buffer("h_cached", (pos[:, None] * fh[None, :]).repeat_interleave(2, -1), persistent=False)
        self.register_buffer("w_cached", (pos[:, None] * fw[None, :]).repeat_interleave(2, -1), persistent=False)

    def tables(self, grid, size=None):
        """grid [B, 2, N] (w index, h index) -> cos, sin [B, N, head_dim] float32; online_rope reads size
        [B, 2] (each sample's h, w in tokens)."""
        if self.online:
            fs = []
            for b in range(grid.shape[0]):
                h, w = int(size[b][0]), int(size[b][1])
                lh, lw = (h, w) if self.decouple else (max(h, w),) * 2
                fh = axis_freqs(self.kind, self.theta, self.dim, lh, self.ori)
                fw = axis_freqs(self.kind, self.theta, self.dim, lw, self.ori)
                gw, gh = grid[b, 0].to(torch.float32), grid[b, 1].to(torch.float32)
                fs.append(torch.cat([(gh[:, None] * fh[None, :]).repeat_interleave(2, -1),
                                     (gw[:, None] * fw[None, :]).repeat_interleave(2, -1)], dim=-1))
            f = torch.stack(fs)
            return f.cos(), f.sin()
        f = torch.cat([self.h_cached[grid[:, 1]], self.w_cached[grid[:, 0]]], dim=-1)
        return f.cos() * self.mag, f.sin() * self.mag


def rotate_pairs(x):
    """Interleaved pairs (a, b) -> (-b, a)."""
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((-b, a), dim=-1).flatten(-2)


# ---------------------------------------------------------------------------------------------- blocks


def _ln(x):
    return F.layer_norm(x, x.shape[-1:], eps=1e-6)  # LayerNorm(eps=1e-6, elementwise_affine=False)


class RMSNorm(nn.Module):
    """norms.py RMSNorm(dim, eps=1e-6): x rsqrt(mean(x^2) + eps) weight, weight ones. (The official casts
    x to float32 for the norm; here the network dtype stays, so a float64 reference stays float64.)"""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim, **_dev()))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def create_norm(kind, dim):
    """norms.py create_norm(kind, dim) (eps 1e-6): None for Identity (None, "" or "none"), a parameter-free
    LayerNorm ("layernorm", a callable), "w_layernorm" = nn.LayerNorm(dim, eps=1e-6, bias=False) (torch 1.13
    has no bias=False: the bias is unregistered, so the state_dict holds the weight alone), "w_rmsnorm" =
    RMSNorm(dim). "rmsnorm" fails as officially (RMSNorm takes no include_weight)."""
    if kind in (None, "", "none"):
        return None
    if kind == "layernorm":
        return _ln
    if kind == "w_layernorm":
        m = nn.LayerNorm(dim, eps=1e-6, **_dev())
        m.register_parameter("bias", None)
        return m
    if kind == "w_rmsnorm":
        return RMSNorm(dim)
    if kind == "rmsnorm":
        raise TypeError("RMSNorm.__init__() got an unexpected keyword argument 'include_weight'")
    raise NotImplementedError("Unknown norm_type: '%s'" % kind)


def _norm(norm, x):
    return x if norm is None else norm(x)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, q_norm, k_norm, qkv_bias, rope, rope_v=False):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.rope = rope
        self.rope_v = rope_v  # add_rel_pe_to_v
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias, **_dev())
        # Registered between qkv and proj, as the official Attention.
        self.q_norm, self.k_norm = create_norm(q_norm, self.head_dim), create_norm(k_norm, self.head_dim)
        self.proj = nn.Linear(dim, dim, **_dev())

    def forward(self, x, mask, cos, sin):
        B, N, D = x.shape
        H, Dh = self.num_heads, self.head_dim
        q, k, v = self.qkv(x).reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4)
        q, k = _norm(self.q_norm, q), _norm(self.k_norm, k)
        if self.rope:
            if self.rope_v:
                v = v * cos + rotate_pairs(v) * sin
            q = q * cos + rotate_pairs(q) * sin
            k = k * cos + rotate_pairs(k) * sin
        # Valid tokens see valid tokens, pads see pads.
        allowed = mask[:, None, None, :] == mask[:, None, :, None]
        s = (q * Dh ** -0.5) @ k.transpose(-2, -1)
        a = s.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        o = (a @ v).transpose(1, 2).reshape(B, N, D) * (mask != 0).to(x.dtype)[..., None]
        return self.proj(o)


class SwiGLU(nn.Module):
    """timm.layers.SwiGLU: fc2(silu(fc1_g(x)) * fc1_x(x))."""

    def __init__(self, dim, hidden, bias, out=None):
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden, bias=bias, **_dev())
        self.fc1_x = nn.Linear(dim, hidden, bias=bias, **_dev())
        self.fc2 = nn.Linear(hidden, out or dim, bias=bias, **_dev())

    def forward(self, x):
        return self.fc2(F.silu(self.fc1_g(x)) * self.fc1_x(x))


class Mlp(nn.Module):
    """timm.layers.Mlp with tanh GELU (FiT without use_swiglu)."""

    def __init__(self, dim, hidden, bias):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias, **_dev())
        self.fc2 = nn.Linear(hidden, dim, bias=bias, **_dev())

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, use_swiglu, use_swiglu_large, q_norm, k_norm, rope, qkv_bias,
                 ffn_bias, adaln_bias, lora_dim, adaln_swiglu=False, norm_type="layernorm", rope_v=False):
        super().__init__()
        # FiTBlock registers norm1, norm2 first.
        self.norm1, self.norm2 = create_norm(norm_type, dim), create_norm(norm_type, dim)
        self.attn = Attention(dim, num_heads, q_norm, k_norm, qkv_bias, rope, rope_v)
        hidden = int(dim * mlp_ratio)
        if use_swiglu:
            self.mlp = SwiGLU(dim, hidden if use_swiglu_large else hidden * 2 // 3, ffn_bias)
        else:
            self.mlp = Mlp(dim, hidden, ffn_bias)
        if adaln_swiglu:  # adaln_type "swiglu": SwiGLU of c itself (no SiLU first)
            self.adaLN_modulation = SwiGLU(dim, dim // 4 * 3, adaln_bias, out=6 * dim)
        elif lora_dim:  # AdaLN-LoRA: no activation between the two linears
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, lora_dim, bias=adaln_bias, **_dev()),
                                                  nn.Linear(lora_dim, 6 * dim, bias=adaln_bias, **_dev()))
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim, bias=adaln_bias, **_dev()))

    def forward(self, x, c, mask, cos, sin, global_mod):
        s1, c1, g1, s2, c2, g2 = (self.adaLN_modulation(c) + global_mod).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(_norm(self.norm1, x), s1, c1), mask, cos, sin)
        return x + g2.unsqueeze(1) * self.mlp(modulate(_norm(self.norm2, x), s2, c2))


class FinalLayer(nn.Module):
    def __init__(self, dim, patch_size, out_channels, adaln_bias, adaln_swiglu=False, norm_type="layernorm"):
        super().__init__()
        self.norm_final = create_norm(norm_type, dim)
        self.linear = nn.Linear(dim, patch_size * patch_size * out_channels, **_dev())
        if adaln_swiglu:
            self.adaLN_modulation = SwiGLU(dim, dim // 2, adaln_bias, out=2 * dim)
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim, bias=adaln_bias, **_dev()))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(_norm(self.norm_final, x), shift, scale))


class FiT(nn.Module):
    def __init__(self, patch_size=2, in_channels=4, hidden_size=1152, depth=36, num_heads=16, mlp_ratio=4.0,
                 class_dropout_prob=0.1, num_classes=1000, use_swiglu=True, use_swiglu_large=False,
                 rel_pos_embed="rope", q_norm="layernorm", k_norm="layernorm", qkv_bias=True, ffn_bias=True, adaln_bias=True,
                 adaln_type="lora", adaln_lora_dim=288, rope_theta=10000.0, custom_freqs="normal",
                 max_pe_len_h=None, max_pe_len_w=None, decouple=False, ori_max_pe_len=None, time_shifting=1,
                 learn_sigma=False, use_sit=True, time_clamp=True, qk_norm_weight=False, online_rope=False,
                 norm_type="layernorm", add_rel_pe_to_v=False):
        super().__init__()
        assert not (learn_sigma and use_sit)
        self.in_channels = in_channels
        self.out_channels = 2 * in_channels if learn_sigma else in_channels
        self.use_sit = use_sit
        self.time_clamp = time_clamp  # ours: False skips FiT.forward's clamp(t, max=1) (docs/fit.md)
        self.patch_size = patch_size
        self.time_shifting = time_shifting
        D = hidden_size
        self.x_embedder = nn.Module()
        self.x_embedder.proj = nn.Linear(in_channels * patch_size ** 2, D, **_dev())
        self.t_embedder = TimestepEmbedder(D)
        self.y_embedder = LabelEmbedder(num_classes, D, class_dropout_prob)
        rope = rel_pos_embed == "rope"
        self.rel_pos_embed = Rope(D // num_heads, custom_freqs, rope_theta, max_pe_len_h, max_pe_len_w, decouple,
                                  ori_max_pe_len, online_rope) if rope else None
        lora = adaln_lora_dim if adaln_type == "lora" else 0
        swiglu = adaln_type == "swiglu"

        def qk(kind):  # Attention.__init__: "layernorm" with qk_norm_weight is "w_layernorm"
            return "w_layernorm" if kind == "layernorm" and qk_norm_weight else kind
        self.global_adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D, bias=adaln_bias, **_dev())) \
            if lora else None
        self.blocks = nn.ModuleList([Block(D, num_heads, mlp_ratio, use_swiglu, use_swiglu_large,
                                           qk(q_norm), qk(k_norm), rope, qkv_bias, ffn_bias, adaln_bias, lora,
                                           swiglu, norm_type, add_rel_pe_to_v)
                                     for _ in range(depth)])
        self.final_layer = FinalLayer(D, patch_size, self.out_channels, adaln_bias, swiglu, norm_type)
        if not self.final_layer.linear.weight.is_meta:
            self._official_init()

    def _official_init(self):
        """initialize_weights: xavier_uniform + zero bias on every Linear; the label table and both t-MLP
        weights N(0, 0.02); the last linear of every adaLN modulation, the global one and the final linear
        zero (the LoRA down projection stays xavier)."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
            nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
            def last_of(mod):  # the modulation's last linear (a SwiGLU's fc2)
                return mod.fc2 if isinstance(mod, SwiGLU) else mod[-1]
            last = [last_of(b.adaLN_modulation) for b in self.blocks] + [last_of(self.final_layer.adaLN_modulation),
                                                                          self.final_layer.linear]
            if self.global_adaLN_modulation is not None:
                last.append(self.global_adaLN_modulation[-1])
            for m in last:
                nn.init.zeros_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x, t, y, grid, mask, size=None):
        """x [B, N, p*p*C] ([B, p*p*C, N] without use_sit), t [B] float32 (flow time, or FiTv1's ADM
        timestep 0..999), y [B], grid [B, 2, N], mask [B, N], size [B, 2] (h, w tokens; online_rope) ->
        [B, N, p*p*C_out] (transposed likewise)."""
        s = self.time_shifting
        if self.time_clamp:
            t = torch.clamp(s * t / (1 + (s - 1) * t), max=1.0)
        if not self.use_sit:
            x = x.transpose(1, 2)
        h = self.x_embedder.proj(x)
        c = self.t_embedder(t) + self.y_embedder(y)
        cos = sin = None
        if self.rel_pos_embed is not None:
            cos, sin = self.rel_pos_embed.tables(grid, size)
            cos, sin = cos.unsqueeze(1).to(x.dtype), sin.unsqueeze(1).to(x.dtype)
        g = self.global_adaLN_modulation(c) if self.global_adaLN_modulation is not None else 0.0
        for block in self.blocks:
            h = block(h, c, mask, cos, sin, g)
        out = self.final_layer(h, c) * mask[..., None]
        return out if self.use_sit else out.transpose(1, 2)

    def tokens(self, x, t, y, grid, mask, size=None):
        """forward with x and the result [B, N, features] for either layout."""
        if self.use_sit:
            return self(x, t, y, grid, mask, size)
        return self(x.transpose(1, 2), t, y, grid, mask, size).transpose(1, 2)


def patchify(img, p):
    """[B, C, H, W] -> [B, (H/p)(W/p), C p p]: "b c (h p1) (w p2) -> b (h w) (c p1 p2)"."""
    B, C, H, W = img.shape
    return img.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5).reshape(B, -1, C * p * p)


def unpatchify(tok, C, p, gh, gw):
    """The inverse of patchify (the official unpatchify with use_sit)."""
    B = tok.shape[0]
    return tok.reshape(B, gh, gw, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, gh * p, gw * p)


def make_grid(B, gh, gw):
    """sample_fitv2_ddp.py's grid: row 0 the w index, row 1 the h index, tokens row-major."""
    hh, ww = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    return torch.stack([ww.reshape(-1), hh.reshape(-1)]).unsqueeze(0).repeat(B, 1, 1)


class FiTImage(nn.Module):
    """The engine's interface: image [B, C, H, W] in and out (one grid, no padding). Its state_dict is
    the FiT one (the wrapped module is registered under no prefix)."""

    def __init__(self, **kw):
        super().__init__()
        self.net = FiT(**kw)

    def state_dict(self, *a, **kw):
        return self.net.state_dict(*a, **kw)

    def named_parameters(self, *a, **kw):
        return self.net.named_parameters(*a, **kw)

    def forward(self, x, t, y):
        B, C, H, W = x.shape
        p = self.net.patch_size
        gh, gw = H // p, W // p
        mask = torch.ones(B, gh * gw, dtype=x.dtype)
        size = torch.tensor([[gh, gw]] * B)
        out = self.net.tokens(patchify(x, p), t, y, make_grid(B, gh, gw), mask, size)
        return unpatchify(out, self.net.out_channels, p, gh, gw)


# ---------------------------------------------------------------------------------------------- configs

# Our nnet section: FiT's constructor names (config_fitv2_xl.yaml's values as defaults) plus input_size,
# the latent side (an int) or [height, width].
DEFAULTS = dict(input_size=32, context_size=256, patch_size=2, in_channels=4, hidden_size=1152, depth=36,
                num_heads=16, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=False,
                use_sit=True, use_swiglu=True, use_swiglu_large=False, rel_pos_embed="rope", q_norm="layernorm",
                k_norm="layernorm", qk_norm_weight=False, norm_type="layernorm", qkv_bias=True, ffn_bias=True,
                adaln_bias=True, adaln_type="lora", adaln_lora_dim=288, rope_theta=10000.0, custom_freqs="normal",
                time_shifting=1)
# "fitv1": configs/fit/config_fit_xl.yaml's values (the Python signature's, but SwiGLU-large and RoPE).
DEFAULTS_V1 = dict(DEFAULTS, depth=28, learn_sigma=True, use_sit=False, use_swiglu_large=True, q_norm=None,
                   k_norm=None, adaln_type="normal", adaln_lora_dim=None)
ROPE_SCALING = ["max_pe_len_h", "max_pe_len_w", "decouple", "ori_max_pe_len"]


def full_config(cfg):
    out = {"name": cfg.get("name", "fitv2")}
    for k, v in (DEFAULTS_V1 if out["name"] == "fitv1" else DEFAULTS).items():
        out[k] = cfg.get(k, v)
    if out["adaln_lora_dim"] is None:  # adaLN "normal" (FiTv1's default) has none
        del out["adaln_lora_dim"]
    for k in ("time_clamp", "online_rope", "add_rel_pe_to_v"):  # written only when given
        if k in cfg:
            out[k] = cfg[k]
    for k in ROPE_SCALING:
        if k in cfg:
            out[k] = cfg[k]
    out["mlp_ratio"] = float(out["mlp_ratio"])
    out["class_dropout_prob"] = float(out["class_dropout_prob"])
    out["rope_theta"] = float(out["rope_theta"])
    return out


def input_hw(cfg):
    s = cfg["input_size"]
    return (s, s) if isinstance(s, int) else tuple(s)


def build_from_config(cfg):
    cfg = full_config(cfg)
    kw = {k: cfg[k] for k in ("patch_size", "in_channels", "hidden_size", "depth", "num_heads", "mlp_ratio",
                              "class_dropout_prob", "num_classes", "use_swiglu", "use_swiglu_large",
                              "rel_pos_embed", "q_norm", "k_norm", "qkv_bias", "ffn_bias", "adaln_bias", "adaln_type",
                              "rope_theta", "custom_freqs", "time_shifting", "learn_sigma", "use_sit",
                              "qk_norm_weight", "norm_type")}
    kw["online_rope"] = cfg.get("online_rope", False)
    kw["add_rel_pe_to_v"] = cfg.get("add_rel_pe_to_v", False)
    kw["adaln_lora_dim"] = cfg.get("adaln_lora_dim")
    kw["time_clamp"] = cfg.get("time_clamp", True)
    gh, gw = (s // cfg["patch_size"] for s in input_hw(cfg))
    if cfg["custom_freqs"] != "normal":
        kw["max_pe_len_h"] = cfg.get("max_pe_len_h", gh)
        kw["max_pe_len_w"] = cfg.get("max_pe_len_w", gw)
        kw["decouple"] = cfg.get("decouple", False)
        kw["ori_max_pe_len"] = cfg["ori_max_pe_len"]
    return FiTImage(**kw)


def preset(size):
    """configs/fitv2/config_fitv2_{xl,3B}.yaml (256-px ImageNet, sd-vae latents 4 x 32 x 32), and
    configs/fit/config_fit_xl.yaml for "v1_xl"."""
    if size == "v1_xl":
        return dict(name="fitv1", input_size=32)
    depth, hidden, heads, lora = {"xl": (36, 1152, 16, 288), "3b": (40, 2304, 24, 576)}[size]
    return dict(name="fitv2", input_size=32, depth=depth, hidden_size=hidden, num_heads=heads,
                adaln_lora_dim=lora)


def count(cfg):
    with on_meta():
        sd = build_from_config(cfg).state_dict()
    return len(sd), sum(v.numel() for v in sd.values())


if __name__ == "__main__":
    for s in ("xl", "3b", "v1_xl"):
        print(s, count(preset(s)))
