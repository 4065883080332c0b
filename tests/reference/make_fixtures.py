#!/usr/bin/python3
"""Writes the PyTorch reference fixtures that the C++ tests compare against.

Usage: /usr/bin/python3 make_fixtures.py --out DIR [--only CASE[,CASE...]]

Per case, into DIR: CASE.json (constructor args + "name"), CASE.safetensors (inputs, output,
every parameter and its gradient), CASE.pth (float32 state_dict) and CASE_{x,t,y,context,out}.npy.
References are computed in float64 from float32 weights/inputs and stored as float32.
U-ViT cases (uvit_torch.py) in CASES, DiT / Skip-DiT cases (dit_torch.py) in DIT_CASES; the case
"adm" writes adm.safetensors (adm_reference.py, DiT's diffusion process); SAMPLING_CASES write CASE.json
and CASE.safetensors only: a DiT case's network and a float64 DDIM run of DiT's sample loop.
The case "flow" writes flow.safetensors and flow_dit_sampling.{json,safetensors}
(flow_reference.py: flow matching's grids, loss, dopri5 and the official sample_ode on a DiT).
The case "fitv1_loss" writes fitv1_loss.safetensors (fit_adm_loss.py: FiTv1's masked ADM loss).
Exits non-zero if a self-check fails.
"""

import argparse
import copy
import inspect
import json
import math
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import adm_reference  # noqa: E402
import diffit_fixtures  # noqa: E402
import diffit_torch  # noqa: E402
import dit_torch  # noqa: E402
import fit_adm_loss  # noqa: E402
import fit_data_twin  # noqa: E402
import fit_fixtures  # noqa: E402
import fit_torch  # noqa: E402
import mdt_torch  # noqa: E402
import lavin_dit_torch  # noqa: E402
import lightningdit_torch  # noqa: E402
import flow_reference  # noqa: E402
import svg_fixtures  # noqa: E402
import svg_torch  # noqa: E402
import uvit_torch  # noqa: E402
from uvit_torch import UViT, UViT_t2i, build_from_config, timestep_embedding, unpatchify  # noqa: E402

# name, network config (non-default args), batch, seed
CASES = [
    ("cond_p2", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=4, num_heads=2,
                     num_classes=10, conv=True), 2, 101),
    ("uncond_p4_h64", dict(name="uvit", img_size=16, patch_size=4, in_chans=3, embed_dim=128, depth=2,
                           num_heads=2, num_classes=-1, conv=False, qkv_bias=True), 2, 102),
    ("uncond_p1_mlptime", dict(name="uvit", img_size=4, patch_size=1, in_chans=2, embed_dim=64, depth=2,
                               num_heads=2, mlp_time_embed=True, conv=True, mlp_ratio=4.0), 3, 103),
    ("t2i", dict(name="uvit_t2i", img_size=8, patch_size=2, in_chans=4, embed_dim=64, depth=2, num_heads=2,
                 clip_dim=32, num_clip_token=5, conv=True), 2, 104),
    # Same seed as cond_p2: weights, inputs, output and grads must be identical to it.
    ("cond_ckpt", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=4, num_heads=2,
                       num_classes=10, conv=True, use_checkpoint=True), 2, 101),
    ("noskip_qkscale", dict(name="uvit", img_size=8, patch_size=2, in_chans=1, embed_dim=64, depth=4,
                            num_heads=4, skip=False, qk_scale=0.2, num_classes=5, mlp_ratio=2.0), 2, 106),
    ("fmnist", dict(name="uvit", img_size=28, patch_size=2, in_chans=1, embed_dim=64, depth=2, num_heads=2,
                    num_classes=10, conv=True), 2, 107),
    # The paper's ablation variants (uvit_torch.VARIANTS); depth 4 gives two long skips.
    ("skip_add", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=4, num_heads=2,
                      num_classes=10, skip_mode="add"), 2, 111),
    ("skip_add_linear", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=4,
                             num_heads=2, num_classes=10, skip_mode="add_linear"), 2, 112),
    ("skip_linear_add", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=4,
                             num_heads=2, num_classes=-1, skip_mode="linear_add", use_checkpoint=True), 2, 113),
    ("pos_sincos", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=2, num_heads=2,
                        num_classes=10, pos_embed="sincos_2d"), 2, 114),
    ("pos_none_t2i", dict(name="uvit_t2i", img_size=8, patch_size=2, in_chans=4, embed_dim=64, depth=2,
                          num_heads=2, clip_dim=32, num_clip_token=5, pos_embed="none"), 2, 115),
    ("conv_before", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=2, num_heads=2,
                         num_classes=10, conv_position="before_linear", mlp_time_embed=True), 2, 116),
    # time_cond adaln: no time token; class-conditional (extras 1), unconditional with the time MLP
    # and checkpointing (extras 0), text (extras = the context tokens only).
    ("time_adaln", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=4, num_heads=2,
                        num_classes=10, time_cond="adaln"), 2, 117),
    ("time_adaln_uncond", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=2,
                               num_heads=2, num_classes=-1, time_cond="adaln", mlp_time_embed=True,
                               use_checkpoint=True), 3, 118),
    ("time_adaln_t2i", dict(name="uvit_t2i", img_size=8, patch_size=2, in_chans=4, embed_dim=64, depth=2,
                            num_heads=2, clip_dim=32, num_clip_token=5, time_cond="adaln"), 2, 119),
    # patch_embed conv_stack: one stride-2 conv (p 2), and two (p 4, 32 then 64 channels).
    ("patch_conv_p2", dict(name="uvit", img_size=8, patch_size=2, in_chans=3, embed_dim=64, depth=2,
                           num_heads=2, num_classes=10, patch_embed="conv_stack"), 2, 120),
    ("patch_conv_p4", dict(name="uvit", img_size=16, patch_size=4, in_chans=1, embed_dim=64, depth=2,
                           num_heads=2, num_classes=-1, patch_embed="conv_stack", time_cond="adaln"), 2, 121),
]

# DiT / Skip-DiT (tests/reference/dit_torch.py): official constructor names; "name" is dit or skip_dit.
DIT_CASES = [
    ("dit_p2", dict(name="dit", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                    num_heads=2, num_classes=10, class_dropout_prob=0.1, learn_sigma=True), 3, 201),
    ("dit_p4_nosigma", dict(name="dit", input_size=16, patch_size=4, in_channels=3, hidden_size=96, depth=2,
                            num_heads=4, num_classes=10, class_dropout_prob=0.1, learn_sigma=False), 3, 202),
    # class_dropout_prob 0: the label table has no null row (num_classes rows).
    ("dit_p8", dict(name="dit", input_size=16, patch_size=8, in_channels=1, hidden_size=64, depth=2,
                    num_heads=2, num_classes=5, class_dropout_prob=0.0, learn_sigma=True), 2, 203),
    # head size 24 (not a power of two) and mlp_ratio 2
    ("dit_h24", dict(name="dit", input_size=8, patch_size=2, in_channels=4, hidden_size=72, depth=2,
                     num_heads=3, mlp_ratio=2.0, num_classes=10, class_dropout_prob=0.1, learn_sigma=True), 3, 204),
    ("skipdit_p2", dict(name="skip_dit", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=4,
                        num_heads=2, num_classes=10, class_dropout_prob=0.1, learn_sigma=True), 3, 205),
    ("skipdit_sigma_off", dict(name="skip_dit", input_size=8, patch_size=4, in_channels=3, hidden_size=48,
                               depth=6, num_heads=2, num_classes=7, class_dropout_prob=0.1, learn_sigma=False),
     3, 206),
]
# LightningDiT (tests/reference/lightningdit_torch.py): RoPE and qk-norm on and off, patch 1 and 2,
# learn_sigma on and off (its forward keeps only the first in_channels), wo_shift, the plain DiT pieces.
LDIT_CASES = [
    ("ldit_p1", dict(name="lightningdit", input_size=8, patch_size=1, in_channels=4, hidden_size=64, depth=2,
                     num_heads=2, num_classes=10, use_swiglu=True, use_rope=True, use_rmsnorm=True), 2, 401),
    ("ldit_p2_qknorm_sigma", dict(name="lightningdit", input_size=8, patch_size=2, in_channels=3, hidden_size=64,
                                  depth=2, num_heads=4, num_classes=10, learn_sigma=True, use_qknorm=True,
                                  use_swiglu=True, use_rope=True, use_rmsnorm=True), 3, 402),
    ("ldit_p2_plain_woshift", dict(name="lightningdit", input_size=8, patch_size=2, in_channels=4,
                                   hidden_size=48, depth=2, num_heads=2, num_classes=5, class_dropout_prob=0.0,
                                   learn_sigma=True, wo_shift=True), 2, 403),
    ("ldit_p1_qknorm_norope", dict(name="lightningdit", input_size=4, patch_size=1, in_channels=2,
                                   hidden_size=48, depth=3, num_heads=2, mlp_ratio=2.0, num_classes=7,
                                   use_qknorm=True, use_swiglu=True, use_rmsnorm=True, wo_shift=True), 3, 404),
]
# MDTv2 (tests/reference/mdt_torch.py): decoder blocks, an odd depth - decode_layer (official floor),
# learn_sigma off; "mask": (len_keep, seed) adds a masked pass with an injected shuffle
# (input.ids_shuffle, input.len_keep), the official enable_mask=True path.
MDT_CASES = [
    ("mdt_p2", dict(name="mdt", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=5, num_heads=2,
                    num_classes=10, class_dropout_prob=0.1, learn_sigma=True, decode_layer=1), 3, 501),
    ("mdt_odd_nosigma", dict(name="mdt", input_size=12, patch_size=4, in_channels=3, hidden_size=48, depth=4,
                             num_heads=4, num_classes=7, class_dropout_prob=0.0, learn_sigma=False,
                             mask_ratio=0.3, decode_layer=1), 2, 502),
    ("mdt_p2_masked", dict(name="mdt", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=5,
                           num_heads=2, num_classes=10, class_dropout_prob=0.1, learn_sigma=True, mask_ratio=0.3,
                           decode_layer=1, mask=(9, 7)), 3, 503),
    # MDTv1 (the mdtv1 branch's MDT): plain blocks, the decoder's last decode_layer 2 of depth 4; masked
    # with the official fixed len_keep int(16 (1 - 0.3)) = 11.
    ("mdtv1_p2", dict(name="mdtv1", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=4,
                      num_heads=2, num_classes=10, class_dropout_prob=0.1, learn_sigma=True, decode_layer=2), 3, 504),
    ("mdtv1_p2_masked", dict(name="mdtv1", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=4,
                             num_heads=2, num_classes=10, class_dropout_prob=0.1, learn_sigma=True, mask_ratio=0.3,
                             decode_layer=2, mask=(11, 8)), 3, 505),
]
# LaVin-DiT (tests/reference/lavin_dit_torch.py): GQA with 2 q heads per kv head, and MQA (one kv head),
# patch 2 and 1, Dh 36 and 24 (RoPE sections of 12 and 8).
LAVIN_CASES = [
    ("lavin_tiny", dict(name="lavin_dit", input_size=4, num_frames=3, patch_size=2, in_channels=4, hidden_size=144,
                        depth=2, num_heads=4, kv_group=2), 2, 601),
    ("lavin_p1_mqa", dict(name="lavin_dit", input_size=4, num_frames=2, patch_size=1, in_channels=3,
                          hidden_size=96, depth=2, num_heads=4, kv_group=4), 3, 602),
]
ADM_CASE = "adm"  # tests/reference/adm_reference.py -> adm.safetensors
FLOW_CASE = "flow"  # tests/reference/flow_reference.py -> flow.safetensors, flow_dit_sampling.*

# DDIM sampling of a DiT fixture network through DiT's ADM process (docs/dit.md), float64:
# name, the DIT_CASES network it reuses (same weights), respacing, number of samples, seed of x_T and y.
SAMPLING_CASES = [
    ("dit_p2_sampling", "dit_p2", "ddim10", 3, 301),
    ("skipdit_p2_sampling", "skipdit_p2", "ddim5", 3, 302),
    # FiTv1 (learned sigma, the (B, C, N) layout's 3 p^2-feature guidance) on the same process.
    ("fitv1_p2_sampling", "fitv1_p2", "ddim10", 3, 303),
]
# Our guidance scale s (eps_c + s (eps_c - eps_u)); DiT's cfg_scale is w = s + 1 (sample.py's 4.0).
SAMPLING_SCALES = [0.0, 3.0]

TIME_VALUES = [0.5, 999.0, 250.7]  # the network time input (e.g. 999*t or 1000*t)
FLOW_TIME_VALUES = [0.25, 0.9, 0.03]  # flow time in [0, 1] (LightningDiT)


def is_dit(cfg):
    """DiT-family networks (DiT, Skip-DiT, LightningDiT, MDT, FiTv2): DiT's weight and input makers."""
    return cfg.get("name") in ("dit", "skip_dit", "lightningdit", "mdt", "mdtv1", "fitv2", "fitv1", "svg",
                               "diffit")


def is_lightning(cfg):
    return cfg.get("name") == "lightningdit"


def is_fit(cfg):
    return cfg.get("name") in ("fitv2", "fitv1")


def full_config(cfg):
    """All constructor fields (official names), defaults filled in, plus "name"."""
    if is_lightning(cfg):
        return lightningdit_torch.full_config(cfg)
    if cfg.get("name") == "lavin_dit":
        return lavin_dit_torch.full_config(cfg)
    if cfg.get("name") in ("mdt", "mdtv1"):
        return mdt_torch.full_config(cfg)
    if is_fit(cfg):
        return fit_torch.full_config(cfg)
    if cfg.get("name") == "svg":
        return svg_torch.full_config(cfg)
    if cfg.get("name") == "diffit":
        return diffit_torch.full_config(cfg)
    if is_dit(cfg):
        return dit_torch.full_config(cfg)
    cls = UViT if cfg["name"] == "uvit" else UViT_t2i
    out = {"name": cfg["name"]}
    for k, p in inspect.signature(cls.__init__).parameters.items():
        if k in ("self", "norm_layer"):
            continue
        # Ablation fields are written only when they differ from the official choice (the
        # official cases' JSON stays as it was).
        if k in uvit_torch.VARIANT_DEFAULTS and cfg.get(k, p.default) == p.default:
            continue
        out[k] = cfg.get(k, p.default)
    out["mlp_ratio"] = float(out["mlp_ratio"])
    if out["qk_scale"] is not None:
        out["qk_scale"] = float(out["qk_scale"])
    return out


# ---------------------------------------------------------------- safetensors writer

_ST_DTYPES = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("float64"): "F64"}


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> numpy array (F32/I64/F64). Little-endian, C order."""
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dt = _ST_DTYPES[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)  # pad to a multiple of 8 so the data is aligned
    with _atomic(path) as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


class _atomic:
    """Write to a temp file in the same folder, rename on success."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        d = os.path.dirname(os.path.abspath(self.path))
        fd, self.tmp = tempfile.mkstemp(dir=d, prefix=".tmp_" + os.path.basename(self.path))
        self.f = os.fdopen(fd, "wb")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        self.f.close()
        if exc_type is None:
            os.chmod(self.tmp, 0o644)
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


def save_npy(path, a):
    with _atomic(path) as f:
        np.save(f, a)


# ---------------------------------------------------------------- weights and inputs


def make_weights(net, seed):
    """SPEC 4.4 init happened in the constructor; now make every parameter non-trivial.

    Linear weights get std 1/sqrt(fan_in) (instead of .02) so attention logits and GELU inputs are
    O(1); pos_embed gets std 0.5; LayerNorm weights 1 + N(0, .1); every bias + N(0, .05)."""
    g = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=g))
        for name, p in net.named_parameters():
            if name.endswith(".bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        if isinstance(net.pos_embed, torch.nn.Parameter):  # a fixed table (or none) stays as built
            net.pos_embed.copy_(0.5 * torch.randn(net.pos_embed.shape, generator=g))


def make_weights_dit(net, seed):
    """Official init happened in the constructor (adaLN and final linear zero); now make every trainable
    parameter non-trivial: Linear weights std 1/sqrt(fan_in), the label table N(0, 1), skip LayerNorm
    weights 1 + N(0, .1), every bias + N(0, .05). pos_embed stays the fixed sin-cos table."""
    g = torch.Generator().manual_seed(seed + 7919)
    with torch.no_grad():
        for name, m in net.named_modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
            elif isinstance(m, (torch.nn.LayerNorm, lightningdit_torch.RMSNorm, lavin_dit_torch.RMSNorm,
                                lavin_dit_torch.LayerNorm, fit_torch.RMSNorm)):
                m.weight.add_(0.1 * torch.randn(m.weight.shape, generator=g))
            elif isinstance(m, torch.nn.Embedding):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
        for name, p in net.named_parameters():
            if name.endswith(".bias"):
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def make_inputs_dit(cfg, batch, seed):
    """x, t (TIME_VALUES: ADM indices as floats), y in [0, num_classes) with the null class
    num_classes as the last label when the table has a null row, gout for out_channels."""
    g = torch.Generator().manual_seed(seed + 104729)
    S, C = cfg["input_size"], cfg["in_channels"]
    inp = {"x": torch.randn(batch, C, S, S, generator=g)}
    times = FLOW_TIME_VALUES if is_lightning(cfg) else TIME_VALUES
    inp["t"] = torch.tensor([times[i % len(times)] for i in range(batch)], dtype=torch.float32)
    y = torch.randint(0, cfg["num_classes"], (batch,), generator=g, dtype=torch.int64)
    if cfg["class_dropout_prob"] > 0:
        y[-1] = cfg["num_classes"]
    inp["y"] = y
    out_c = 2 * C if cfg["learn_sigma"] and not is_lightning(cfg) else C
    inp["gout"] = torch.randn(batch, out_c, S, S, generator=g)
    return inp


def make_inputs(cfg, batch, seed):
    g = torch.Generator().manual_seed(seed + 104729)
    S, C = cfg["img_size"], cfg["in_chans"]
    inp = {"x": torch.randn(batch, C, S, S, generator=g)}
    inp["t"] = torch.tensor([TIME_VALUES[i % len(TIME_VALUES)] for i in range(batch)], dtype=torch.float32)
    if cfg["name"] == "uvit" and cfg["num_classes"] > 0:
        inp["y"] = torch.randint(0, cfg["num_classes"], (batch,), generator=g, dtype=torch.int64)
    if cfg["name"] == "uvit_t2i":
        inp["context"] = torch.randn(batch, cfg["num_clip_token"], cfg["clip_dim"], generator=g)
    inp["gout"] = torch.randn(batch, C, S, S, generator=g)
    return inp


def run_net(net, inp, dtype):
    """Forward + backward of sum(out*gout). Returns (out, {param: grad}, {input: grad})."""
    net = copy.deepcopy(net).to(dtype)
    net.zero_grad(set_to_none=True)
    x = inp["x"].to(dtype).requires_grad_(True)
    extra = []
    if "y" in inp:
        extra = [inp["y"]]
    ctx = None
    if "context" in inp:
        ctx = inp["context"].to(dtype).requires_grad_(True)
        extra = [ctx]
    kw = {}
    if "ids_shuffle" in inp:  # MDT's masked pass
        kw = dict(ids_shuffle=inp["ids_shuffle"], len_keep=int(inp["len_keep"]))
    out = net(x, inp["t"], *extra, **kw)
    (out * inp["gout"].to(dtype)).sum().backward()
    # A frozen parameter (DiT's pos_embed) has no .grad: its gradient is stored as zeros.
    grads = {n: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
             for n, p in net.named_parameters()}
    igrads = {"x": x.grad.detach().clone()}
    if ctx is not None:
        igrads["context"] = ctx.grad.detach().clone()
    return out.detach(), grads, igrads


def f32(t):
    return t.detach().to(torch.float32).contiguous().numpy()


def make_case(name, cfg_partial, batch, seed, outdir):
    mask = cfg_partial.get("mask")
    cfg = full_config({k: v for k, v in cfg_partial.items() if k != "mask"})
    torch.manual_seed(seed)
    if cfg["name"] in ("mdt", "mdtv1"):
        net = mdt_torch.build_from_config(cfg)
        make_weights_dit(net, seed)
        mdt_torch.randomize(net, torch.Generator().manual_seed(seed + 31))
        inp = make_inputs_dit(cfg, batch, seed)
        if mask:  # official random_masking: argsort of uniform noise per sample
            L = (cfg["input_size"] // cfg["patch_size"]) ** 2
            noise = torch.rand(batch, L, generator=torch.Generator().manual_seed(mask[1]))
            inp["ids_shuffle"] = torch.argsort(noise, dim=1)
            inp["len_keep"] = mask[0]
    elif is_fit(cfg):
        net = fit_torch.build_from_config(cfg)
        make_weights_dit(net, seed)
        inp = fit_fixtures.make_inputs(cfg, batch, seed)
    elif cfg["name"] == "svg":
        net = svg_torch.build_from_config(cfg)
        make_weights_dit(net, seed)
        inp = svg_fixtures.make_inputs(cfg, batch, seed)
    elif cfg["name"] == "diffit":
        net = diffit_torch.build_from_config(cfg)
        make_weights_dit(net, seed)
        diffit_torch.randomize(net, torch.Generator().manual_seed(seed + 31))
        inp = make_inputs_dit(cfg, batch, seed)
    elif cfg["name"] == "lavin_dit":
        net = lavin_dit_torch.build_from_config(cfg)
        make_weights_dit(net, seed)
        g = torch.Generator().manual_seed(seed + 104729)
        S, C, T = cfg["input_size"], cfg["in_channels"], cfg["num_frames"]
        inp = {"x": torch.randn(batch, C, S, S, generator=g),
               "t": torch.tensor([FLOW_TIME_VALUES[i % 3] for i in range(batch)], dtype=torch.float32),
               "context": torch.randn(batch, T, C, S, S, generator=g),
               "gout": torch.randn(batch, C, S, S, generator=g)}
    elif is_dit(cfg):
        net = (lightningdit_torch if is_lightning(cfg) else dit_torch).build_from_config(cfg)
        make_weights_dit(net, seed)
        inp = make_inputs_dit(cfg, batch, seed)
    else:
        net = build_from_config(cfg)
        make_weights(net, seed)
        inp = make_inputs(cfg, batch, seed)

    out64, grads64, igrads64 = run_net(net, inp, torch.float64)
    out32, _, _ = run_net(net, inp, torch.float32)

    tensors = {"input.x": f32(inp["x"]), "input.t": f32(inp["t"])}
    if "y" in inp:
        tensors["input.y"] = inp["y"].numpy().astype(np.int64)
    if "context" in inp:
        tensors["input.context"] = f32(inp["context"])
    if "ids_shuffle" in inp:
        tensors["input.ids_shuffle"] = inp["ids_shuffle"].numpy().astype(np.int64)
        tensors["input.len_keep"] = np.array([inp["len_keep"]], np.int64)
    tensors["input.gout"] = f32(inp["gout"])
    tensors["output"] = f32(out64)
    for k, v in igrads64.items():
        tensors["grad_input." + k] = f32(v)
    sd = net.state_dict()
    for pname, p in sd.items():
        tensors["param." + pname] = f32(p)
        # Buffers (LightningDiT's RoPE tables) are not trained: zero gradient, like a frozen parameter.
        tensors["grad." + pname] = f32(grads64[pname]) if pname in grads64 else np.zeros(p.shape, np.float32)

    with open(os.path.join(outdir, name + ".json.tmp"), "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    os.replace(os.path.join(outdir, name + ".json.tmp"), os.path.join(outdir, name + ".json"))
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors,
                      {"case": name, "producer": "tests/reference/make_fixtures.py"})
    with _atomic(os.path.join(outdir, name + ".pth")) as f:
        # The real state_dict (an OrderedDict carrying `_metadata`), like the released checkpoints.
        torch.save(sd, f)
    save_npy(os.path.join(outdir, name + "_x.npy"), tensors["input.x"])
    save_npy(os.path.join(outdir, name + "_t.npy"), tensors["input.t"])
    if "input.y" in tensors:
        save_npy(os.path.join(outdir, name + "_y.npy"), tensors["input.y"])
    if "input.context" in tensors:
        save_npy(os.path.join(outdir, name + "_context.npy"), tensors["input.context"])
    save_npy(os.path.join(outdir, name + "_out.npy"), tensors["output"])

    d32 = (out32.double() - out64).abs().max().item()
    print("%-18s B=%d tokens=%d params=%d |out|max=%.3f  fp32-vs-fp64 max|diff|=%.2e"
          % (name, batch, inp["x"][0, 0].numel() // cfg["patch_size"] ** 2 if is_fit(cfg)
             else net.fixture_tokens if hasattr(net, "fixture_tokens") else net.pos_embed.shape[1] if net.pos_embed is not None
          else net.extras + (cfg["img_size"] // cfg["patch_size"]) ** 2, sum(p.numel() for p in sd.values()),
             out64.abs().max().item(), d32))
    return tensors


# ---------------------------------------------------------------- self-checks


def check_counts():
    ok = True
    for label, cls, kw, want_n, want_p in [
        ("cifar10_uvit_small", UViT, dict(img_size=32, patch_size=2, embed_dim=512, depth=12, num_heads=8,
                                          num_classes=-1, conv=True), 164, 44255328),
        ("mscoco_uvit_small", UViT_t2i, dict(img_size=32, patch_size=2, in_chans=4, embed_dim=512, depth=12,
                                             num_heads=8), 166, 44692644),
    ]:
        with uvit_torch.on_meta():
            sd = cls(**kw).state_dict()
        n, p = len(sd), sum(v.numel() for v in sd.values())
        good = (n, p) == (want_n, want_p)
        ok &= good
        print("self-check %-18s %d tensors, %d params: %s" % (label, n, p, "ok" if good else
                                                                 "FAIL (want %d, %d)" % (want_n, want_p)))
    # Key order of the mscoco model (the last built): own parameter first, context_embed after patch_embed.
    keys = list(sd.keys())
    good = keys[:3] == ["pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"] and \
        keys[3:5] == ["context_embed.weight", "context_embed.bias"] and keys[-2:] == ["final_layer.weight",
                                                                                         "final_layer.bias"]
    ok &= good
    print("self-check key order: %s" % ("ok" if good else "FAIL"))
    return ok


def check_counts_dit():
    """Official DiT / Skip-DiT state_dict sizes (pos_embed included) and key order."""
    ok = True
    for label, cfg, want_n, want_p in [
        ("DiT-XL/2", dit_torch.preset("xl", 2), 292, 675129632),
        ("DiT-S/2", dit_torch.preset("s", 2), 132, 32963360),
        ("Skip-DiT-XL/2", dict(dit_torch.preset("xl", 2), name="skip_dit"), 348, 712369184),
    ]:
        n, p = dit_torch.count(cfg)
        good = (n, p) == (want_n, want_p)
        ok &= good
        print("self-check %-18s %d tensors, %d params: %s" % (label, n, p, "ok" if good else
                                                                 "FAIL (want %d, %d)" % (want_n, want_p)))
    with uvit_torch.on_meta():
        keys = list(dit_torch.build_from_config(dict(dit_torch.preset("s", 2), name="skip_dit",
                                                     depth=4)).state_dict().keys())
    want = ["pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias", "t_embedder.mlp.0.weight",
            "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias",
            "y_embedder.embedding_table.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
            "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias", "blocks.0.mlp.fc1.weight",
            "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias",
            "blocks.0.adaLN_modulation.1.weight", "blocks.0.adaLN_modulation.1.bias"]
    tail = ["final_layer.linear.weight", "final_layer.linear.bias", "final_layer.adaLN_modulation.1.weight",
            "final_layer.adaLN_modulation.1.bias", "skip_norms.0.weight", "skip_norms.0.bias",
            "skip_norms.1.weight", "skip_norms.1.bias", "skip_linears.0.linear.weight",
            "skip_linears.0.linear.bias", "skip_linears.1.linear.weight", "skip_linears.1.linear.bias"]
    good = keys[:len(want)] == want and keys[-len(tail):] == tail
    ok &= good
    print("self-check DiT key order: %s" % ("ok" if good else "FAIL"))
    # pos_embed: token r*g + c, channel k < D/4: sin(c * w_k); D/4 + k: cos(c * w_k); D/2 + k: sin(r * w_k)
    D, g = 8, 3
    pe = dit_torch.sincos_pos_embed_2d(D, g)
    w = [1.0, 0.01]
    good = all(abs(pe[r * g + c, j] - f(pos * w[k])) < 1e-15
               for r in range(g) for c in range(g)
               for j, (f, pos, k) in enumerate([(math.sin, c, 0), (math.sin, c, 1), (math.cos, c, 0),
                                                (math.cos, c, 1), (math.sin, r, 0), (math.sin, r, 1),
                                                (math.cos, r, 0), (math.cos, r, 1)]))
    ok &= good
    print("self-check DiT pos_embed layout: %s" % ("ok" if good else "FAIL"))
    return ok


def check_building_blocks():
    ok = True
    # unpatchify: feature (p1*p + p2)*C + c of token (i, j) -> pixel [c, i*p + p1, j*p + p2]
    B, h, p, C = 2, 3, 2, 3
    x = torch.randn(B, h * h, p * p * C)
    img = unpatchify(x, C)
    ref = torch.empty(B, C, h * p, h * p)
    for i in range(h):
        for j in range(h):
            for p1 in range(p):
                for p2 in range(p):
                    for c in range(C):
                        ref[:, c, i * p + p1, j * p + p2] = x[:, i * h + j, (p1 * p + p2) * C + c]
    good = torch.equal(img, ref)
    ok &= good
    print("self-check unpatchify layout: %s" % ("ok" if good else "FAIL"))
    # timestep embedding: cos first; float32 freqs
    t = torch.tensor([0.5, 999.0])
    e = timestep_embedding(t, 6, dtype=torch.float64)
    f = [np.float32(math.exp(-math.log(10000) * i / 3)) for i in range(3)]
    want = [[math.cos(float(np.float32(tv * fi))) for fi in f] + [math.sin(float(np.float32(tv * fi))) for fi in f]
            for tv in (0.5, 999.0)]
    good = torch.allclose(e, torch.tensor(want, dtype=torch.float64), atol=1e-5)  # freqs may differ by 1 ulp (f32 exp)
    ok &= good
    print("self-check timestep embedding: %s" % ("ok" if good else "FAIL"))
    return ok


def numpy_forward(cfg, sd, x, t, y=None, context=None):
    """An independent float64 forward written with explicit index formulas (SPEC 2-3), used to
    cross-check the twin's reshapes/permutes. sd: name -> float64 numpy array."""
    from math import erf
    D, p, C, S, H = cfg["embed_dim"], cfg["patch_size"], cfg["in_chans"], cfg["img_size"], cfg["num_heads"]
    Dh, g = D // H, S // p
    scale = cfg["qk_scale"] or Dh ** -0.5
    B = x.shape[0]
    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / math.sqrt(2.0))))

    def lin(v, pre):
        out = v @ sd[pre + ".weight"].T
        return out + sd[pre + ".bias"] if pre + ".bias" in sd else out

    def ln(v, pre):
        mu = v.mean(-1, keepdims=True)
        var = ((v - mu) ** 2).mean(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-5) * sd[pre + ".weight"] + sd[pre + ".bias"]

    # patch tokens: token r*g + c = sum over (ci, a, b) of w[:, ci, a, b] * x[ci, r*p + a, c*p + b]
    w = sd["patch_embed.proj.weight"]
    patches = np.zeros((B, g * g, D))
    if cfg.get("patch_embed", "linear") == "conv_stack":
        # stride-2 3x3 convs (padding 1) + GELU as explicit sums over taps, then the 1x1 conv
        im, i = x, 0
        while "patch_embed.convs.%d.weight" % i in sd:
            wf, bf = sd["patch_embed.convs.%d.weight" % i], sd["patch_embed.convs.%d.bias" % i]
            ho = im.shape[2] // 2
            pad = np.pad(im, ((0, 0), (0, 0), (1, 1), (1, 1)))
            out = np.zeros((B, wf.shape[0], ho, ho)) + bf[None, :, None, None]
            for a in range(3):
                for b in range(3):
                    out += np.einsum("bcij,oc->boij", pad[:, :, a:a + 2 * ho:2, b:b + 2 * ho:2], wf[:, :, a, b])
            im, i = gelu(out), i + 1
        for r in range(g):
            for c in range(g):
                patches[:, r * g + c] = im[:, :, r, c] @ w[:, :, 0, 0].T + sd["patch_embed.proj.bias"]
    else:
        for r in range(g):
            for c in range(g):
                blk = x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p]  # B, C, p, p
                patches[:, r * g + c] = np.einsum("bcij,dcij->bd", blk, w) + sd["patch_embed.proj.bias"]
    half = D // 2
    # torch's float32 exp, as the official code (numpy's f32 exp differs by an ulp for some i)
    freqs = torch.exp(-math.log(10000) * torch.arange(0, half, dtype=torch.float32) / half).numpy()
    args = (t.astype(np.float32)[:, None] * freqs[None]).astype(np.float64)
    temb = np.concatenate([np.cos(args), np.sin(args)], -1)
    if cfg["mlp_time_embed"]:
        h1 = lin(temb, "time_embed.0")
        temb = lin(h1 / (1 + np.exp(-h1)), "time_embed.2")
    adaln = cfg.get("time_cond", "token") == "adaln"
    toks = [] if adaln else [temb[:, None]]
    if context is not None:
        toks.append(lin(context, "context_embed"))
    if y is not None:
        toks.insert(0, sd["label_emb.weight"][y][:, None])
    seq = np.concatenate(toks + [patches], 1)
    E = seq.shape[1] - g * g
    pos_mode = cfg.get("pos_embed", "learned_1d")
    if pos_mode == "learned_1d":
        seq = seq + sd["pos_embed"]
    elif pos_mode == "sincos_2d":  # the patches get the table (rounded to float32), extras nothing
        seq[:, E:] += dit_torch.sincos_pos_embed_2d(D, g).astype(np.float32)
    skip_mode = cfg.get("skip_mode", "concat_linear")

    def block(v, pre, skip=None):
        if skip is not None and cfg["skip"]:
            if skip_mode == "concat_linear":
                v = lin(np.concatenate([v, skip], -1), pre + ".skip_linear")
            elif skip_mode == "add":
                v = v + skip
            elif skip_mode == "add_linear":
                v = lin(v + skip, pre + ".skip_linear")
            else:
                v = v + lin(skip, pre + ".skip_linear")
        if adaln:  # (1 + scale) * LN + shift, chunks shift1, scale1, shift2, scale2
            mod = lin(temb, pre + ".adaLN_modulation")[:, None]
            n1 = ln(v, pre + ".norm1") * (1 + mod[..., D:2 * D]) + mod[..., :D]
        else:
            n1 = ln(v, pre + ".norm1")
        qkv = lin(n1, pre + ".attn.qkv")
        heads = []
        for h in range(H):
            q, k, vv = (qkv[..., kk * D + h * Dh: kk * D + (h + 1) * Dh] for kk in range(3))
            a = np.einsum("bnd,bmd->bnm", q, k) * scale
            a = np.exp(a - a.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            heads.append(np.einsum("bnm,bmd->bnd", a, vv))
        v = v + lin(np.concatenate(heads, -1), pre + ".attn.proj")
        n2 = ln(v, pre + ".norm2")
        if adaln:
            n2 = n2 * (1 + mod[..., 3 * D:]) + mod[..., 2 * D:3 * D]
        return v + lin(gelu(lin(n2, pre + ".mlp.fc1")), pre + ".mlp.fc2")

    nb = cfg["depth"] // 2
    skips = []
    for i in range(nb):
        seq = block(seq, "in_blocks.%d" % i)
        skips.append(seq)
    seq = block(seq, "mid_block")
    for i in range(nb):
        seq = block(seq, "out_blocks.%d" % i, skips[nb - 1 - i])
    def conv3x3(im, pre):  # padding 1
        wf, bf = sd[pre + ".weight"], sd[pre + ".bias"]
        hh, ww = im.shape[2], im.shape[3]
        pad = np.pad(im, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((im.shape[0], wf.shape[0], hh, ww)) + bf[None, :, None, None]
        for a in range(3):
            for b in range(3):
                out += np.einsum("bcij,oc->boij", pad[:, :, a:a + hh, b:b + ww], wf[:, :, a, b])
        return out

    feat = ln(seq, "norm")[:, E:]
    if "token_conv.weight" in sd:
        # token r*g + c is pixel (r, c) of a D-channel g x g image
        grid = np.zeros((B, D, g, g))
        for r in range(g):
            for c in range(g):
                grid[:, :, r, c] = feat[:, r * g + c]
        grid = conv3x3(grid, "token_conv")
        feat = np.stack([grid[:, :, r, c] for r in range(g) for c in range(g)], 1)
    feat = lin(feat, "decoder_pred")
    img = np.zeros((B, C, S, S))
    for r in range(g):
        for c in range(g):
            for p1 in range(p):
                for p2 in range(p):
                    for ch in range(C):
                        img[:, ch, r * p + p1, c * p + p2] = feat[:, r * g + c, (p1 * p + p2) * C + ch]
    if "final_layer.weight" in sd:
        img = conv3x3(img, "final_layer")
    return img


def numpy_forward_dit(cfg, sd, x, t, y, cache=None):
    """Independent float64 DiT / Skip-DiT forward with explicit index formulas (spec 1.1, 2).

    cache (Skip-Cache, Skip-DiT's DiT_cache): None runs every block; {"use": None} runs every block
    and stores the input of block depth-4 in cache["store"]; {"use": h} runs blocks 0..3, then the
    last 4 blocks from h (their skips are the outputs of blocks 3..0)."""
    D, p, C, S, H = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"], cfg["input_size"], cfg["num_heads"]
    Dh, g, B, depth = D // H, S // p, x.shape[0], cfg["depth"]
    Co = 2 * C if cfg["learn_sigma"] else C

    def lin(v, pre):
        return v @ sd[pre + ".weight"].T + sd[pre + ".bias"]

    def ln(v, w=None, b=None):
        mu = v.mean(-1, keepdims=True)
        out = (v - mu) / np.sqrt(((v - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
        return out if w is None else out * w + b

    def silu(v):
        return v / (1 + np.exp(-v))

    def gelu_tanh(v):
        return 0.5 * v * (1 + np.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))

    w = sd["x_embedder.proj.weight"]
    h = np.zeros((B, g * g, D))
    for r in range(g):
        for c in range(g):
            blk = x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p]
            h[:, r * g + c] = np.einsum("bcij,dcij->bd", blk, w) + sd["x_embedder.proj.bias"]
    h = h + sd["pos_embed"]
    freqs = torch.exp(-math.log(10000) * torch.arange(0, 128, dtype=torch.float32) / 128).numpy()
    args = (t.astype(np.float32)[:, None] * freqs[None]).astype(np.float64)
    temb = lin(silu(lin(np.concatenate([np.cos(args), np.sin(args)], -1), "t_embedder.mlp.0")),
               "t_embedder.mlp.2")
    cvec = temb + sd["y_embedder.embedding_table.weight"][y]
    sc = silu(cvec)

    def block(v, pre):
        mod = lin(sc, pre + ".adaLN_modulation.1")  # [B, 6D]
        sh1, sc1, g1, sh2, sc2, g2 = (mod[:, i * D:(i + 1) * D][:, None] for i in range(6))
        a_in = ln(v) * (1 + sc1) + sh1
        qkv = lin(a_in, pre + ".attn.qkv")
        heads = []
        for hh in range(H):
            q, k, vv = (qkv[..., kk * D + hh * Dh: kk * D + (hh + 1) * Dh] for kk in range(3))
            a = np.einsum("bnd,bmd->bnm", q, k) / math.sqrt(Dh)
            a = np.exp(a - a.max(-1, keepdims=True))
            heads.append(np.einsum("bnm,bmd->bnd", a / a.sum(-1, keepdims=True), vv))
        v = v + g1 * lin(np.concatenate(heads, -1), pre + ".attn.proj")
        m_in = ln(v) * (1 + sc2) + sh2
        return v + g2 * lin(gelu_tanh(lin(m_in, pre + ".mlp.fc1")), pre + ".mlp.fc2")

    outs = []
    for k in range(depth):
        if cache is not None and k == depth - 4:
            if cache["use"] is None:
                cache["store"] = h
            else:
                h = cache["use"]
        if cache is not None and cache["use"] is not None and 4 <= k < depth - 4:
            outs.append(None)  # skipped: its output is never popped
            continue
        if cfg["name"] == "skip_dit" and k >= depth // 2:
            j = k - depth // 2  # pairs with the output of block depth-1-k
            cat = np.concatenate([h, outs[depth - 1 - k]], -1)
            h = lin(ln(cat, sd["skip_norms.%d.weight" % j], sd["skip_norms.%d.bias" % j]),
                    "skip_linears.%d.linear" % j)
        h = block(h, "blocks.%d" % k)
        outs.append(h)
    mod = lin(sc, "final_layer.adaLN_modulation.1")
    feat = lin(ln(h) * (1 + mod[:, None, D:]) + mod[:, None, :D], "final_layer.linear")
    img = np.zeros((B, Co, S, S))
    for r in range(g):
        for c in range(g):
            for p1 in range(p):
                for p2 in range(p):
                    for ch in range(Co):
                        img[:, ch, r * p + p1, c * p + p2] = feat[:, r * g + c, (p1 * p + p2) * Co + ch]
    return img


def check_counts_mdt():
    """Official MDTv2 state_dict sizes (the int64 index buffers included) and key order."""
    ok = True
    for label, cfg, want_n, want_p in [("MDTv2-XL/2", mdt_torch.preset("xl", 4), 394, 744164448),
                                       ("MDTv2-S/2 dec 6", mdt_torch.preset("s", 6), 188, 39306840),
                                       ("MDT-XL/2 (v1) dec 2", mdt_torch.preset("xl", 2, name="mdtv1"), 362,
                                        701678688)]:
        n, p = mdt_torch.count(cfg)
        good = (n, p) == (want_n, want_p)
        ok &= good
        print("self-check %-18s %d tensors, %d params: %s" % (label, n, p, "ok" if good else "FAIL"))
    with mdt_torch.on_meta():
        sd = mdt_torch.build_from_config(dict(mdt_torch.preset("s", 6), depth=8)).state_dict()
    keys = list(sd.keys())
    good = (keys[:4] == ["pos_embed", "decoder_pos_embed", "mask_token", "x_embedder.proj.weight"]
            and sd["en_inblocks.0.attn.rel_pos_bias.relative_position_index"].dtype == torch.int64
            and keys[-4] == "final_layer.linear.weight" and keys[-5] == "sideblocks.0.adaLN_modulation.1.bias")
    ok &= good
    print("self-check MDT key order: %s" % ("ok" if good else "FAIL"))
    return ok


def check_mdt_twin(name, tensors, cfg):
    """The index buffers hold the formula (the BEiT construction, recomputed here with meshgrid)."""
    g = cfg["input_size"] // cfg["patch_size"]
    coords = torch.stack(torch.meshgrid([torch.arange(g), torch.arange(g)], indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (g - 1)
    want = (rel[:, :, 0] * (2 * g - 1) + rel[:, :, 1]).numpy()
    idx = [v for k, v in tensors.items() if k.endswith("relative_position_index") and k.startswith("param.")]
    good = len(idx) > 0 and all(np.array_equal(v, want) for v in idx)
    print("self-check %-18s relative_position_index == BEiT construction: %s" % (name, "ok" if good else "FAIL"))
    return good


def check_counts_lightning():
    """Released LightningDiT sizes (rope buffers included) and the key order of the official module."""
    ok = True
    for label, size, patch, want_n, want_p in [("LightningDiT-XL/1", "xl", 1, 351, 675293600),
                                                ("LightningDiT-B/1", "b", 1, 159, 130588960)]:
        n, p = lightningdit_torch.count(lightningdit_torch.preset(size, patch))
        good = (n, p) == (want_n, want_p)
        ok &= good
        print("self-check %-18s %d tensors, %d params: %s" % (label, n, p, "ok" if good else "FAIL"))
    with lightningdit_torch.on_meta():
        keys = list(lightningdit_torch.build_from_config(dict(lightningdit_torch.preset("b", 1), depth=1,
                                                              use_qknorm=True)).state_dict().keys())
    want = ["pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias", "t_embedder.mlp.0.weight",
            "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias",
            "y_embedder.embedding_table.weight", "feat_rope.freqs_cos", "feat_rope.freqs_sin",
            "blocks.0.norm1.weight", "blocks.0.norm2.weight", "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias",
            "blocks.0.attn.q_norm.weight", "blocks.0.attn.k_norm.weight", "blocks.0.attn.proj.weight",
            "blocks.0.attn.proj.bias", "blocks.0.mlp.w12.weight", "blocks.0.mlp.w12.bias", "blocks.0.mlp.w3.weight",
            "blocks.0.mlp.w3.bias", "blocks.0.adaLN_modulation.1.weight", "blocks.0.adaLN_modulation.1.bias",
            "final_layer.norm_final.weight", "final_layer.linear.weight", "final_layer.linear.bias",
            "final_layer.adaLN_modulation.1.weight", "final_layer.adaLN_modulation.1.bias"]
    good = keys == want
    ok &= good
    print("self-check LightningDiT key order: %s" % ("ok" if good else "FAIL %s" % keys))
    return ok


# The official sampler (flow_reference.sample_ode: euler / heun, timestep_shift, LightningDiT's
# forward_with_cfg with its interval on 3 channels) on our LightningDiT twin, every switch on but
# wo_shift and learn_sigma: the same runs and tensor names as flow_dit_sampling.
LDIT_FLOW_CASE = ("ldit_flow_sampling", dict(name="lightningdit", input_size=8, patch_size=1, in_channels=4,
                                             hidden_size=64, depth=2, num_heads=2, num_classes=10,
                                             use_qknorm=True, use_swiglu=True, use_rope=True, use_rmsnorm=True),
                  411)


LAVIN_SAMPLING_CASE = "lavin_sampling"  # lavin_tiny's network, 20-point table, cfg 1.5, float64


def make_lavin_sampling_case(outdir):
    """lavin_sampling.safetensors: lavin_tiny's weights (param.*), one query's frames [1, T_c, C, S, S] and
    noise, and the float64 samples of the official sampler with cfg_scale 1.5 (output) and 1 (output_nocfg)."""
    name, cfg_partial, _, seed = next(c for c in LAVIN_CASES if c[0] == "lavin_tiny")
    cfg = full_config(cfg_partial)
    torch.manual_seed(seed)
    net = lavin_dit_torch.build_from_config(cfg)
    make_weights_dit(net, seed)
    g = torch.Generator().manual_seed(seed + 17)
    S, C, T = cfg["input_size"], cfg["in_channels"], cfg["num_frames"]
    frames = torch.randn(1, T, C, S, S, generator=g)
    noise = torch.randn(1, C, S, S, generator=g)
    net64 = copy.deepcopy(net).double()
    out = lavin_dit_torch.sample(net64, frames.double(), noise.double(), 1.5)
    out1 = lavin_dit_torch.sample(net64, frames.double(), noise.double(), 1.0)
    tensors = {"input.frames": f32(frames), "input.noise": f32(noise), "output": f32(out),
               "output_nocfg": f32(out1)}
    for k, v in net.state_dict().items():
        tensors["param." + k] = f32(v)
    write_safetensors(os.path.join(outdir, LAVIN_SAMPLING_CASE + ".safetensors"), tensors,
                      {"case": LAVIN_SAMPLING_CASE, "producer": "tests/reference/make_fixtures.py"})
    print("%-18s 19 Euler steps, cfg 1.5 and 1: |x|max %.3f" % (LAVIN_SAMPLING_CASE, out.abs().max().item()))
    return True


def make_ldit_flow_case(outdir):
    name, cfg_partial, seed = LDIT_FLOW_CASE
    cfg = full_config(cfg_partial)
    torch.manual_seed(seed)
    net = lightningdit_torch.build_from_config(cfg)
    make_weights_dit(net, seed)
    net64 = copy.deepcopy(net).double()
    g = torch.Generator().manual_seed(seed + 1)
    n = 3
    x_T = torch.randn(n, 4, 8, 8, generator=g).numpy()
    y = torch.randint(0, 10, (n,), generator=g, dtype=torch.int64).numpy()
    runs = flow_reference.FLOW_RUNS
    outs = [flow_reference.sample_ode(net64, x_T, y, m, K, sh, 1 + sc, t0, cfg["num_classes"])
            for m, K, sh, sc, t0 in runs]
    m, K, sh, sc, t0 = runs[0]
    d_int = flow_reference.rel(flow_reference.sample_ode(net64, x_T, y, m, K, sh, 1 + sc, 0.0, cfg["num_classes"]),
                               outs[0])
    # --guidance-channels all: the first run with guidance on every channel.
    x1_all = flow_reference.sample_ode(net64, x_T, y, m, K, sh, 1 + sc, t0, cfg["num_classes"], ch=4)
    d_all = flow_reference.rel(x1_all, outs[0])
    good = min(d_int, d_all) > 1e-2
    print("%s: %d runs; rel diff without the cfg interval %.1e, guidance on all channels %.1e (must be > 1e-2: %s)"
          % (name, len(runs), d_int, d_all, "ok" if good else "FAIL"))
    tensors = {"sample.x_T": x_T, "sample.y": y,
               "sample.runs": np.array([[K, sh, sc, t0] for _, K, sh, sc, t0 in runs], dtype=np.float64),
               "sample.heun": np.array([m == "heun" for m, *_ in runs], dtype=np.int64),
               "sample.x1": np.stack(outs).astype(np.float32), "sample.x1_all_channels": x1_all.astype(np.float32)}
    for k, p in net.state_dict().items():
        tensors["param." + k] = f32(p)
    with _atomic(os.path.join(outdir, name + ".json")) as f:
        f.write((json.dumps(cfg, indent=1) + "\n").encode("utf-8"))
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors, {"producer": "tests/reference/make_fixtures.py"})
    return good


def check_lightning_twin(name, tensors, cfg):
    """The RoPE tables stored in the state_dict equal an independent float64 formula (to float32
    rounding), and the rotation is a pure rotation: |rope(q)| = |q| per pair."""
    if not cfg["use_rope"]:
        print("self-check %-18s (no RoPE tables)" % name)
        return True
    Dh, grid = cfg["hidden_size"] // cfg["num_heads"], cfg["input_size"] // cfg["patch_size"]
    dim = Dh // 2
    f = 1.0 / 10000.0 ** (np.arange(0, dim, 2)[: dim // 2] / dim)
    i, j = np.divmod(np.arange(grid * grid), grid)
    ang = np.concatenate([np.repeat(i[:, None] * f[None], 2, axis=1), np.repeat(j[:, None] * f[None], 2, axis=1)],
                         axis=1)
    d = max(np.abs(np.cos(ang) - tensors["param.feat_rope.freqs_cos"]).max(),
            np.abs(np.sin(ang) - tensors["param.feat_rope.freqs_sin"]).max())
    good = d < 1e-5
    print("self-check %-18s RoPE tables max|diff|=%.1e: %s" % (name, d, "ok" if good else "FAIL"))
    return good


def check_numpy_twin(name, tensors, cfg):
    if cfg["name"] == "lavin_dit":  # no independent numpy twin (yet): the torch twin alone
        return True
    if cfg["name"] in ("mdt", "mdtv1"):
        return check_mdt_twin(name, tensors, cfg)
    sd = {k[len("param."):]: v.astype(np.float64) for k, v in tensors.items() if k.startswith("param.")}
    if is_lightning(cfg):
        return check_lightning_twin(name, tensors, cfg)
    if is_fit(cfg):
        return fit_fixtures.check_twin(name, tensors, cfg)
    if cfg["name"] == "svg":
        return True  # svg_torch.py was checked against the official module (docs/svg.md)
    if cfg["name"] == "diffit":
        return True  # diffit_torch.py is the only twin (docs/diffit.md); diffit_fixtures checks its layout
    if is_dit(cfg):
        ref = numpy_forward_dit(cfg, sd, tensors["input.x"].astype(np.float64), tensors["input.t"],
                                tensors["input.y"])
        d = np.abs(ref - tensors["output"]).max()
        good = d < 1e-6 * max(1.0, np.abs(ref).max())
        print("self-check %-18s numpy re-derivation max|diff|=%.1e: %s" % (name, d, "ok" if good else "FAIL"))
        return good
    ref = numpy_forward(cfg, sd, tensors["input.x"].astype(np.float64), tensors["input.t"],
                        tensors.get("input.y"), tensors["input.context"].astype(np.float64)
                        if "input.context" in tensors else None)
    d = np.abs(ref - tensors["output"]).max()
    good = d < 1e-6 * max(1.0, np.abs(ref).max())  # float32 storage rounding only
    print("self-check %-18s numpy re-derivation max|diff|=%.1e: %s" % (name, d, "ok" if good else "FAIL"))
    return good


# ---------------------------------------------------------------- DiT sampling (DDIM, guidance)


def dit_forward_with_cfg(net, x, t, y, w, guided_channels=3, rest_swapped=False):
    """DiT's forward_with_cfg as docs/dit.md describes it. The batch is [x_c; x_u] with labels
    [y; null]; only its first half is read: the network runs on [x[:B]; x[:B]], channels
    0..guided_channels-1 become u + w (c - u) in both halves, the other channels (eps channel 3, the
    variance) come from each half's own pass (rest_swapped: from the other half's, a near miss)."""
    B = x.shape[0] // 2
    out = net(torch.cat([x[:B], x[:B]]), t, y)
    c, u = out[:B, :guided_channels], out[B:, :guided_channels]
    g = u + w * (c - u)
    rest = out[:, guided_channels:]
    if rest_swapped:
        rest = torch.cat([rest[B:], rest[:B]])
    return torch.cat([torch.cat([g, g]), rest], dim=1)


def dit_ddim_sample(net, adm, x_T, y, s, null_class, dtype, guided_channels=3, net_time=None,
                    rest_swapped=False):
    """DDIM (eta 0) over the respaced process `adm` from x_T, driven as DiT's ddim_sample_loop:
    i = K-1..0, the network called at the original step timestep_map[i] (as a float). With s != 0
    the loop carries [x_T; x_T] with labels [y; null_class] through forward_with_cfg at w = s + 1 and
    keeps the first half (sample.py). The step itself is float64 (adm_reference.Adm); `dtype` is the
    network's and x's storage type. Returns the trajectory [K, B, ...]: x after each step."""
    B, C = x_T.shape[0], x_T.shape[1]
    guided = s != 0
    x = torch.from_numpy(x_T).to(dtype)
    labels = torch.from_numpy(y)
    if guided:
        x = torch.cat([x, x])
        labels = torch.cat([labels, torch.full_like(labels, null_class)])
    traj = []
    for i in reversed(range(adm.n)):
        tn = float(adm.timestep_map[i]) if net_time is None else net_time(i)
        t = torch.full((x.shape[0],), tn, dtype=torch.float32)
        with torch.no_grad():
            out = dit_forward_with_cfg(net, x, t, labels, s + 1.0, guided_channels, rest_swapped) if guided else \
                net(x, t, labels)
        xn, _ = adm.ddim_step(i, x.double().numpy(), out[:, :C].double().numpy())
        x = torch.from_numpy(xn).to(dtype)
        traj.append(x[:B].double().numpy())
    return np.stack(traj)


def rel(a, ref):
    return np.abs(a - ref).max() / np.abs(ref).max()


def make_sampling_case(name, base, respacing, n, seed, outdir, base_tensors=None):
    """CASE.json (the network config of `base`) and CASE.safetensors: param.NAME (the weights of the
    `base` case), sample.x_T [n, C, S, S] F32, sample.y [n] I64, sample.timestep_map I64,
    sample.scales F64 (our s per run), sample.x0 [runs, n, C, S, S] and sample.traj
    [runs, K, n, C, S, S] (x after each step) F32, computed in float64."""
    _, cfg_partial, _, base_seed = next(c for c in DIT_CASES + fit_fixtures.FIT_CASES if c[0] == base)
    cfg = full_config(cfg_partial)
    torch.manual_seed(base_seed)  # rebuild the `base` network exactly as make_case does
    net = (fit_torch if is_fit(cfg) else dit_torch).build_from_config(cfg)
    make_weights_dit(net, base_seed)
    sd = net.state_dict()
    g = torch.Generator().manual_seed(seed)
    S, C = cfg["input_size"], cfg["in_channels"]
    x_T = torch.randn(n, C, S, S, generator=g).numpy()
    y = torch.randint(0, cfg["num_classes"], (n,), generator=g, dtype=torch.int64).numpy()
    adm = adm_reference.Adm(adm_reference.linear_betas(1000), adm_reference.space_timesteps(1000, respacing))
    null = cfg["num_classes"]  # the null row of the label table (class_dropout_prob > 0)
    assert cfg["class_dropout_prob"] > 0
    net64 = copy.deepcopy(net).to(torch.float64)
    trajs = [dit_ddim_sample(net64, adm, x_T, y, s, null, torch.float64) for s in SAMPLING_SCALES]

    ok = True
    if base_tensors is not None:
        good = all(np.array_equal(base_tensors["param." + k], f32(v)) for k, v in sd.items())
        ok &= good
        print("self-check %-18s weights == %s: %s" % (name, base, "ok" if good else "FAIL"))
    # The fixture must tell the official semantics from near misses: guiding all 4 eps channels, eps
    # channel 3 from the unconditional pass, or the network called at the respaced index i instead of
    # timestep_map[i].
    sg = SAMPLING_SCALES[-1]
    ref = trajs[-1][-1]
    d4 = rel(dit_ddim_sample(net64, adm, x_T, y, sg, null, torch.float64, guided_channels=C)[-1], ref)
    du = rel(dit_ddim_sample(net64, adm, x_T, y, sg, null, torch.float64, rest_swapped=True)[-1], ref)
    di = rel(dit_ddim_sample(net64, adm, x_T, y, sg, null, torch.float64, net_time=float)[-1], ref)
    d32 = max(rel(dit_ddim_sample(copy.deepcopy(net).float(), adm, x_T, y, s, null, torch.float32)[-1],
                  tr[-1]) for s, tr in zip(SAMPLING_SCALES, trajs))
    # FiT's clamp(t, max=1) gives the index and timestep_map[i] the same network time (both 0 at i = 0,
    # both 1 after), so that near miss cannot show there.
    clamps = is_fit(cfg) and cfg.get("time_clamp", True)
    good = min(d4, du) > 1e-2 and (clamps or di > 1e-2)
    ok &= good
    print("%-18s %s, %d samples, |x0|max=%.2f; rel diff to: %d-channel guidance %.1e, unguided channels "
          "from the null pass %.1e, index as time %.1e (must be > 1e-2: %s); float32 run %.1e"
          % (name, respacing, n, max(np.abs(t[-1]).max() for t in trajs), C, d4, du, di,
             "ok" if good else "FAIL", d32))

    tensors = {"sample.x_T": x_T, "sample.y": y.astype(np.int64),
               "sample.timestep_map": np.array(adm.timestep_map, dtype=np.int64),
               "sample.scales": np.array(SAMPLING_SCALES, dtype=np.float64),
               "sample.x0": np.stack([t[-1] for t in trajs]).astype(np.float32),
               "sample.traj": np.stack(trajs).astype(np.float32)}
    for pname, p in sd.items():
        tensors["param." + pname] = f32(p)
    with _atomic(os.path.join(outdir, name + ".json")) as f:
        f.write((json.dumps(cfg, indent=1) + "\n").encode("utf-8"))
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors,
                      {"case": name, "producer": "tests/reference/make_fixtures.py", "respacing": respacing})
    return ok


# Skip-Cache: a depth-8 Skip-DiT called 5 times as a sampler would (N = 2). DiT_cache runs the whole
# network when calls % N == 0 or nothing is cached, and empties the cache after a call at t <= 20.
CACHE_CASE = ("skipdit_cache", dict(name="skip_dit", input_size=8, patch_size=2, in_channels=4,
                                    hidden_size=64, depth=8, num_heads=2, num_classes=10,
                                    class_dropout_prob=0.1, learn_sigma=True), 2, 331)
CACHE_TIMES = [999.0, 750.0, 500.0, 20.0, 10.0]
CACHE_EVERY = 2


def make_cache_case(outdir):
    name, cfg_partial, batch, seed = CACHE_CASE
    cfg = full_config(cfg_partial)
    torch.manual_seed(seed)
    net = dit_torch.build_from_config(cfg)
    make_weights_dit(net, seed)
    sd = {k: v.detach().to(torch.float32).to(torch.float64).numpy() for k, v in net.state_dict().items()}
    g = torch.Generator().manual_seed(seed + 17)
    C, S = cfg["in_channels"], cfg["input_size"]
    xs = torch.randn(len(CACHE_TIMES), batch, C, S, S, generator=g).numpy().astype(np.float64)
    y = np.array([3, cfg["num_classes"]][:batch], dtype=np.int64)
    outs, full, cached, calls = [], [], None, 0
    for i, tv in enumerate(CACHE_TIMES):
        t = np.full(batch, tv, dtype=np.float64)
        run_full = calls % CACHE_EVERY == 0 or cached is None
        cache = {"use": None if run_full else cached}
        outs.append(numpy_forward_dit(cfg, sd, xs[i], t, y, cache))
        full.append(numpy_forward_dit(cfg, sd, xs[i], t, y))
        if run_full:
            cached = cache["store"]
        calls += 1
        if tv <= 20:
            calls, cached = 0, None
    tensors = {"cache.x": xs.astype(np.float32), "cache.t": np.array(CACHE_TIMES, np.float32),
               "cache.y": y, "cache.out": np.stack(outs).astype(np.float32),
               "cache.full": np.stack(full).astype(np.float32)}
    for k, v in sd.items():
        tensors["param." + k] = v.astype(np.float32)
    with _atomic(os.path.join(outdir, name + ".json")) as f:
        f.write(json.dumps(cfg, indent=1).encode())
    write_safetensors(os.path.join(outdir, name + ".safetensors"), tensors, {"every": CACHE_EVERY})
    # Calls 1 and 3 (t = 20, the last before the cache is emptied) reuse the cache and differ from
    # the full network; calls 0, 2 and 4 (after the reset) run it whole.
    d = [float(np.abs(o - f).max() / np.abs(f).max()) for o, f in zip(outs, full)]
    good = min(d[1], d[3]) > 1e-3 and max(d[0], d[2], d[4]) == 0
    print("self-check %s (cached calls differ by %.3g, %.3g; full calls equal): %s"
          % (name, d[1], d[3], "ok" if good else "FAIL %s" % d))
    return good


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder (created if missing)")
    ap.add_argument("--only", default=None, help="comma-separated case names (default: all)")
    args = ap.parse_args()

    names = ([c[0] for c in CASES + DIT_CASES + LDIT_CASES + MDT_CASES + fit_fixtures.FIT_CASES
              + svg_fixtures.SVG_CASES + LAVIN_CASES + diffit_fixtures.DIFFIT_CASES] + [ADM_CASE] +
             [c[0] for c in SAMPLING_CASES] + [CACHE_CASE[0], FLOW_CASE, LDIT_FLOW_CASE[0], "fit_rope",
              LAVIN_SAMPLING_CASE, "fit_resize", "fitv1_loss"] + [c[0] for c in fit_fixtures.PACKED_CASES])
    only = names if args.only is None else [s for s in args.only.split(",") if s]
    for s in only:
        if s not in names:
            print("make_fixtures.py: unknown case %r (known: %s)" % (s, ", ".join(names)), file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    torch.set_num_threads(1)  # deterministic reductions
    t0 = time.time()

    ok = (check_counts() & check_building_blocks() & check_counts_dit() & check_counts_lightning()
          & check_counts_mdt())
    ok &= fit_fixtures.check_counts()
    ok &= diffit_fixtures.check_counts()
    results = {}
    for name, cfg, batch, seed in (CASES + DIT_CASES + LDIT_CASES + MDT_CASES + fit_fixtures.FIT_CASES
                                   + svg_fixtures.SVG_CASES + LAVIN_CASES + diffit_fixtures.DIFFIT_CASES):
        if name in only:
            results[name] = make_case(name, cfg, batch, seed, args.out)
            ok &= check_numpy_twin(name, results[name], full_config(cfg))

    if "cond_p2" in results and "cond_ckpt" in results:
        a, b = results["cond_p2"], results["cond_ckpt"]
        same = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
        ok &= same
        print("self-check use_checkpoint (cond_ckpt == cond_p2, %d tensors bitwise): %s"
              % (len(a), "ok" if same else "FAIL"))

    if ADM_CASE in only:
        ok &= adm_reference.write_fixture(os.path.join(args.out, ADM_CASE + ".safetensors"), write_safetensors)
        results[ADM_CASE] = True

    for name, base, respacing, n, seed in SAMPLING_CASES:
        if name in only:
            ok &= make_sampling_case(name, base, respacing, n, seed, args.out, results.get(base))
            results[name] = True

    if CACHE_CASE[0] in only:
        ok &= make_cache_case(args.out)
        results[CACHE_CASE[0]] = True

    if FLOW_CASE in only:
        ok &= flow_reference.write_fixtures(args.out, write_safetensors, _atomic, json, dit_torch,
                                            make_weights_dit, f32)
        results[FLOW_CASE] = True

    if "fit_rope" in only:
        ok &= fit_fixtures.write_rope_fixture(os.path.join(args.out, "fit_rope.safetensors"), write_safetensors)
        results["fit_rope"] = True

    if "fit_resize" in only:  # FiT's resize_arr sizes (fit_data_twin.py)
        with _atomic(os.path.join(args.out, "fit_resize.json")) as f:
            f.write(json.dumps(fit_data_twin.resize_table()).encode())
        results["fit_resize"] = True

    if "fitv1_loss" in only:  # FiTv1's masked ADM loss (fit_adm_loss.py)
        ok &= fit_adm_loss.write_fixture(os.path.join(args.out, "fitv1_loss.safetensors"), write_safetensors)
        results["fitv1_loss"] = True

    def write_json(name, cfg):
        with _atomic(os.path.join(args.out, name + ".json")) as f:
            f.write(json.dumps(cfg, indent=1).encode() + b"\n")
    for case in fit_fixtures.PACKED_CASES:
        if case[0] in only:
            ok &= fit_fixtures.write_packed_case(case, args.out, make_weights_dit, write_safetensors, write_json)
            results[case[0]] = True

    if LDIT_FLOW_CASE[0] in only:
        ok &= make_ldit_flow_case(args.out)
        results[LDIT_FLOW_CASE[0]] = True

    if LAVIN_SAMPLING_CASE in only:
        ok &= make_lavin_sampling_case(args.out)
        results[LAVIN_SAMPLING_CASE] = True

    print("wrote %d case(s) to %s in %.1f s" % (len(results), args.out, time.time() - t0))
    if not ok:
        print("make_fixtures.py: a self-check failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
