#!/usr/bin/python3
"""PyTorch twin of the Stable Diffusion KL autoencoder (SPEC 13), written from the spec.

Module and parameter names follow the official state_dict (encoder.down.0.block.0.norm1.weight, ...).

Usage:
  autoencoder_torch.py fixtures --out DIR    small config, random weights: DIR/ae_small.{json,pth},
                                             ae_small_diffusers_{new,old}.bin (to_diffusers),
                                             ae_images.npy, ae_z.npy, ae_moments.npy, ae_decoded.npy
                                             (references in float64 from the float32 weights/inputs)
  autoencoder_torch.py vavae-fixtures --out DIR
                                             the VA-VAE family (LightningDiT tokenizer/autoencoder.py):
                                             DIR/vavae_small.{json,pt} (5 levels, attention at a middle
                                             level, z 8; the .pt nested under "state_dict" with loss.*,
                                             foundation_model.*, linear_proj.* tensors beside),
                                             vavae_small_{images,moments,z,decoded}.npy (decoded from
                                             z * std + mean), vavae_small_stats.pt {"mean","std"};
                                             vavae_f16d32_synth.pt: the real f16d32 key set and shapes
                                             (views of one 9 MB storage) with the extra tensors, and
                                             vavae_f16d32_{image,moments,z,decoded}.npy at 32x32 px
  autoencoder_torch.py svg-fixtures --out DIR
                                             SVG's decoder (ldm/models/dino_decoder.py DinoDecoder.decode =
                                             self.decoder(z): no post_quant_conv): DIR/svg_decoder_small.{json,
                                             ckpt} (the VA-VAE geometry at 64 px, z 12; the .ckpt nested under
                                             "state_dict" with encoder.* (DINOv3), extra_vit.*, norm_vit.*,
                                             mask_token and loss.* beside), svg_decoder_small_stats.pt in
                                             dinov3_sp_stats.pt's layout ([1, 1, 15], sliced to 12),
                                             svg_decoder_small_{z,decoded}.npy (decoded from z * std + mean)
  autoencoder_torch.py bench [--threads 2] [--reps 1] [--latent 32] [--config sd_kl_f8|vavae_f16d32|C]
                                             random weights (SD config by default): decode one CxSxS latent
  autoencoder_torch.py check-sd              SD key count (248) and parameter count (83,653,863)
  autoencoder_torch.py save --out FILE [--config C] [--seed S]
                                             random weights (SD config by default), torch.save'd
  autoencoder_torch.py to-diffusers --weights W --out FILE.bin [--config C] [--style new|old]
                                             W's state_dict under diffusers AutoencoderKL names
                                             (attention to_q.. "new" or query.. "old")
  autoencoder_torch.py run encode|decode --weights W [--config C] --in X.npy --out Y.npy
                                             reference encode_moments / decode in float64
"""

import argparse
import collections
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SD_DDCONFIG = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                   ch_mult=[1, 2, 4, 4], num_res_blocks=2, attn_resolutions=[], dropout=0.0)


def Normalize(c):
    return nn.GroupNorm(num_groups=32, num_channels=c, eps=1e-6, affine=True)


def swish(x):
    return x * torch.sigmoid(x)


class ResnetBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1 = Normalize(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = Normalize(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1, 1, 0)
        self.cin, self.cout = cin, cout

    def forward(self, x):
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))  # dropout 0 / eval: identity
        if self.cin != self.cout:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = Normalize(c)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x):
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        b, c, hh, ww = q.shape
        q = q.reshape(b, c, hh * ww).permute(0, 2, 1)  # [b, hw, c]
        k = k.reshape(b, c, hh * ww)  # [b, c, hw]
        w = torch.bmm(q, k) * (int(c) ** (-0.5))  # w[b, i, j] = sum_c q[b, c, i] k[b, c, j]
        w = F.softmax(w, dim=2)
        v = v.reshape(b, c, hh * ww)
        h = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(h)


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, *, ch, ch_mult, num_res_blocks, attn_resolutions, in_channels, resolution,
                 z_channels, double_z, **_):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, 1, 1)
        in_ch_mult = (1,) + tuple(ch_mult)
        curr_res = resolution
        self.down = nn.ModuleList()
        for i in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i], ch * ch_mult[i]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            level = nn.Module()
            level.block, level.attn = block, attn
            if i != self.num_resolutions - 1:
                level.downsample = Downsample(block_in)
                curr_res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for i in range(self.num_resolutions):
            for j in range(self.num_res_blocks):
                h = self.down[i].block[j](h)
                if len(self.down[i].attn) > 0:
                    h = self.down[i].attn[j](h)
            if i != self.num_resolutions - 1:
                h = self.down[i].downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, *, ch, out_ch, ch_mult, num_res_blocks, attn_resolutions, resolution,
                 z_channels, **_):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        block_in = ch * ch_mult[-1]
        curr_res = resolution // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, 1, 1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.up = nn.ModuleList()
        for i in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if curr_res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            level = nn.Module()
            level.block, level.attn = block, attn
            if i != 0:
                level.upsample = Upsample(block_in)
                curr_res *= 2
            self.up.insert(0, level)  # index = level
        self.norm_out = Normalize(block_in)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, 1, 1)

    def forward(self, z):
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z))))
        for i in reversed(range(self.num_resolutions)):
            for j in range(self.num_res_blocks + 1):
                h = self.up[i].block[j](h)
                if len(self.up[i].attn) > 0:
                    h = self.up[i].attn[j](h)
            if i != 0:
                h = self.up[i].upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class FrozenAutoencoderKL(nn.Module):
    def __init__(self, ddconfig, embed_dim, scale_factor=0.18215):
        super().__init__()
        assert ddconfig["double_z"]
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quant_conv = nn.Conv2d(2 * ddconfig["z_channels"], 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)
        self.embed_dim = embed_dim
        self.scale_factor = scale_factor

    def encode_moments(self, x):
        return self.quant_conv(self.encoder(x))

    def sample(self, moments):
        mean, logvar = torch.chunk(moments, 2, dim=1)
        logvar = torch.clamp(logvar, -30.0, 20.0)
        std = torch.exp(0.5 * logvar)
        return self.scale_factor * (mean + std * torch.randn_like(mean))

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z / self.scale_factor))


def randomize(model, seed):
    """Default init for convs; GroupNorm affine perturbed so that it is exercised."""
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.reset_parameters()
        elif isinstance(m, nn.GroupNorm):
            with torch.no_grad():
                m.weight.copy_(1 + 0.2 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
    return model.eval()


# Attention member names of diffusers' AutoencoderKL: "new" since diffusers 0.15 (Attention), "old" as
# in the stabilityai/sd-vae-ft-ema / sd-vae-ft-mse files (AttentionBlock).
DIFFUSERS_ATTN = {
    "new": {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"},
    "old": {"norm": "group_norm", "q": "query", "k": "key", "v": "value", "proj_out": "proj_attn"},
}


def to_diffusers(sd, levels, style="new"):
    """This autoencoder's state_dict under diffusers AutoencoderKL names (the test input for the C++
    renaming, written separately from it): down/up blocks hold resnets, attentions, downsamplers.0 /
    upsamplers.0; the decoder's up_blocks count from the lowest resolution (up_blocks.i = up.{L-1-i});
    mid.block_1/2 -> mid_block.resnets.0/1, mid.attn_1 -> mid_block.attentions.0; norm_out ->
    conv_norm_out; nin_shortcut -> conv_shortcut; attention 1x1 convs become Linear weights [C, C].
    Only the names matter to the loader, so the official order is kept."""
    names = DIFFUSERS_ATTN[style]
    out = collections.OrderedDict()
    for k, v in sd.items():
        p = k.split(".")
        attn = False
        if p[0] in ("encoder", "decoder"):
            side, rest = p[0], p[1:]
            if rest[0] == "norm_out":
                rest[0] = "conv_norm_out"
            elif rest[0] == "mid":
                attn = rest[1] == "attn_1"
                rest = ["mid_block"] + (["attentions", "0"] if attn else ["resnets", str(int(rest[1][-1]) - 1)]) \
                    + rest[2:]
            elif rest[0] in ("down", "up"):
                i = int(rest[1])
                idx = i if rest[0] == "down" else levels - 1 - i
                kind = {"block": ["resnets", rest[3]], "attn": ["attentions", rest[3]],
                        "downsample": ["downsamplers", "0"], "upsample": ["upsamplers", "0"]}[rest[2]]
                attn = rest[2] == "attn"
                rest = [rest[0] + "_blocks", str(idx)] + kind + rest[4 if rest[2] in ("block", "attn") else 3:]
            rest = ["conv_shortcut" if r == "nin_shortcut" else r for r in rest]
            if attn:
                member = rest[-2]
                rest[-2] = names[member]
                if member != "norm" and rest[-1] == "weight":
                    v = v[:, :, 0, 0]
            p = [side] + rest
        out[".".join(p)] = v.contiguous()
    return out


def cmd_fixtures(args):
    os.makedirs(args.out, exist_ok=True)
    dd = dict(double_z=True, z_channels=4, resolution=32, in_channels=3, out_ch=3, ch=32,
              ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[16], dropout=0.0)
    cfg = {"ddconfig": dd, "embed_dim": 4, "scale_factor": 0.18215}
    with open(os.path.join(args.out, "ae_small.json"), "w") as f:
        json.dump(cfg, f)
    model = randomize(FrozenAutoencoderKL(dd, 4), 7)
    torch.save(model.state_dict(), os.path.join(args.out, "ae_small.pth"))
    for style in ("new", "old"):
        torch.save(to_diffusers(model.state_dict(), len(dd["ch_mult"]), style),
                   os.path.join(args.out, "ae_small_diffusers_%s.bin" % style))
    g = torch.Generator().manual_seed(8)
    # Non-square on purpose: H != W catches transposed loops.
    images = (torch.rand(2, 3, 32, 48, generator=g) * 2 - 1).float()
    z = torch.randn(2, 4, 8, 12, generator=g).float() * 0.5
    np.save(os.path.join(args.out, "ae_images.npy"), images.numpy())
    np.save(os.path.join(args.out, "ae_z.npy"), z.numpy())
    m64 = model.double()
    with torch.no_grad():
        moments = m64.encode_moments(images.double()).float()
        decoded = m64.decode(z.double()).float()
    np.save(os.path.join(args.out, "ae_moments.npy"), moments.numpy())
    np.save(os.path.join(args.out, "ae_decoded.npy"), decoded.numpy())
    print("keys", len(model.state_dict()), "moments", tuple(moments.shape), "decoded", tuple(decoded.shape))


VAVAE_F16D32 = dict(double_z=True, z_channels=32, resolution=256, in_channels=3, out_ch=3, ch=128,
                    ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], dropout=0.0)


def vavae_extras():
    """Tensors of the other modules a VA-VAE training checkpoint holds (vavae/ldm/models/autoencoder.py:
    loss = LPIPSWithDiscriminator, foundation_model = DINOv2 ViT-L, linear_proj = reverse projection
    32 -> 1024); shapes as there, a few of each."""
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g)
    return collections.OrderedDict([
        ("loss.logvar", torch.zeros(())),
        ("loss.perceptual_loss.net.slice1.0.weight", r(64, 3, 3, 3)),
        ("loss.discriminator.main.0.weight", r(64, 3, 4, 4)),
        ("foundation_model.model.cls_token", r(1, 1, 1024)),
        ("foundation_model.model.blocks.0.norm1.weight", r(1024)),
        ("linear_proj.weight", r(1024, 32, 1, 1)),
    ])


def lightning_checkpoint(sd):
    """As a Lightning checkpoint: the state_dict (model tensors + extras) under "state_dict"."""
    full = collections.OrderedDict(sd)
    full.update(vavae_extras())
    return {"epoch": 7, "global_step": 1234, "state_dict": full}


def cmd_vavae_fixtures(args):
    os.makedirs(args.out, exist_ok=True)
    out = lambda n: os.path.join(args.out, n)
    # A small member of the family: 5 levels like f16d32, attention at the 16x16 level of a 64 px
    # config = level 2 of 5 (neither the top nor the lowest), z_channels = embed_dim = 8.
    dd = dict(double_z=True, z_channels=8, resolution=64, in_channels=3, out_ch=3, ch=32,
              ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], dropout=0.0)
    with open(out("vavae_small.json"), "w") as f:
        json.dump({"ddconfig": dd, "embed_dim": 8, "scale_factor": 1.0}, f)
    model = randomize(FrozenAutoencoderKL(dd, 8, 1.0), 11)
    torch.save(lightning_checkpoint(model.state_dict()), out("vavae_small.pt"))
    g = torch.Generator().manual_seed(12)
    images = (torch.rand(2, 3, 64, 96, generator=g) * 2 - 1).float()  # non-square
    z = torch.randn(2, 8, 4, 6, generator=g).float()
    mean = (0.5 * torch.randn(1, 8, 1, 1, generator=g)).float()
    std = (0.5 + torch.rand(1, 8, 1, 1, generator=g)).float()
    torch.save({"mean": mean, "std": std}, out("vavae_small_stats.pt"))  # as latents_stats.pt
    m64 = model.double()
    with torch.no_grad():
        moments = m64.encode_moments(images.double()).float()
        # LightningDiT inference.py: (z * std) / latent_multiplier + mean, multiplier 1.0.
        decoded = m64.decode(z.double() * std.double() + mean.double()).float()
    for n, a in (("images", images), ("moments", moments), ("z", z), ("decoded", decoded)):
        np.save(out("vavae_small_%s.npy" % n), a.numpy())

    # The real f16d32 geometry, cheaply: every tensor a view into one shared storage (the largest
    # tensor's size), at its own offset, so the .pt stays ~9 MB instead of ~280 MB.
    big = FrozenAutoencoderKL(VAVAE_F16D32, 32, 1.0)
    shapes = [(k, v.shape) for k, v in big.state_dict().items()]
    n_max = max(int(np.prod(s)) for _, s in shapes)
    base = (torch.rand(n_max + 4096, generator=torch.Generator().manual_seed(13)) * 0.06 - 0.03).float()
    sd = collections.OrderedDict()
    for i, (k, s) in enumerate(shapes):
        n = int(np.prod(s))
        off = (i * 257) % (base.numel() - n + 1)
        sd[k] = base[off:off + n].view(s)
    torch.save(lightning_checkpoint(sd), out("vavae_f16d32_synth.pt"))
    big.load_state_dict(sd, strict=True)
    big = big.eval().double()
    image = (torch.rand(1, 3, 32, 32, generator=g) * 2 - 1).float()
    zb = torch.randn(1, 32, 2, 2, generator=g).float()
    with torch.no_grad():
        mb = big.encode_moments(image.double()).float()
        db = big.decode(zb.double()).float()
    for n, a in (("image", image), ("moments", mb), ("z", zb), ("decoded", db)):
        np.save(out("vavae_f16d32_%s.npy" % n), a.numpy())
    print("f16d32 keys", len(shapes), "params", sum(int(np.prod(s)) for _, s in shapes))


class SvgDecoder(nn.Module):
    """DinoDecoder's decode path: the LDM Decoder alone on the feature map (docs/svg.md)."""

    def __init__(self, ddconfig):
        super().__init__()
        self.decoder = Decoder(**ddconfig)

    def decode(self, z):
        return self.decoder(z)


def svg_extras():
    """A few tensors of DinoDecoder's other modules (the DINOv3 encoder, the residual ViT, norm_vit,
    mask_token, the LPIPS/discriminator loss); names as there."""
    g = torch.Generator().manual_seed(4)
    r = lambda *s: torch.randn(*s, generator=g)
    return collections.OrderedDict([
        ("encoder.cls_token", r(1, 1, 384)),
        ("encoder.blocks.0.norm1.weight", r(384)),
        ("extra_vit.conv_proj.weight", r(384, 3, 16, 16)),
        ("norm_vit.weight", r(40)),  # LayerNorm(output_dim 8 + embed_dim 32)
        ("mask_token", r(1, 8, 1)),
        ("loss.logvar", torch.zeros(())),
    ])


def cmd_svg_fixtures(args):
    os.makedirs(args.out, exist_ok=True)
    out = lambda n: os.path.join(args.out, n)
    dd = dict(double_z=True, z_channels=12, resolution=64, in_channels=3, out_ch=3, ch=32,
              ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], dropout=0.0)
    with open(out("svg_decoder_small.json"), "w") as f:
        json.dump({"ddconfig": dd, "embed_dim": 12, "scale_factor": 1.0, "decoder_only": True}, f)
    model = randomize(SvgDecoder(dd), 21)
    full = collections.OrderedDict(svg_extras())
    full.update(model.state_dict())
    torch.save({"epoch": 3, "global_step": 99, "state_dict": full}, out("svg_decoder_small.ckpt"))
    g = torch.Generator().manual_seed(22)
    z = torch.randn(2, 12, 4, 6, generator=g).float()
    mean = (0.3 * torch.randn(1, 1, 15, generator=g)).float()
    std = (0.3 + torch.rand(1, 1, 15, generator=g)).float()
    torch.save({"dinov3_sp_mean": mean, "dinov3_sp_std": std}, out("svg_decoder_small_stats.pt"))
    m64 = model.double()
    with torch.no_grad():
        # sample_svg.py: samples * sp_std + sp_mean (sliced to z_channels), then decode.
        zz = z.double() * std[:, :, :12].double().view(1, 12, 1, 1) + mean[:, :, :12].double().view(1, 12, 1, 1)
        decoded = m64.decode(zz).float()
    for n, a in (("z", z), ("decoded", decoded)):
        np.save(out("svg_decoder_small_%s.npy" % n), a.numpy())
    big = SvgDecoder(dict(VAVAE_F16D32, z_channels=392)).state_dict()
    print("svg_decoder_z392 keys", len(big), "params", sum(v.numel() for v in big.values()))


def sd_model(seed=0):
    return randomize(FrozenAutoencoderKL(SD_DDCONFIG, 4), seed)


def cmd_check_sd(_):
    sd = FrozenAutoencoderKL(SD_DDCONFIG, 4).state_dict()
    n = sum(v.numel() for v in sd.values())
    print("keys", len(sd), "params", n)
    ok = len(sd) == 248 and n == 83653863
    sys.exit(0 if ok else 1)


def load_cfg(path):
    """A JSON config, or the built-in names of uvit's autoencoder_config_from."""
    if not path or path == "sd_kl_f8":
        return dict(ddconfig=SD_DDCONFIG, embed_dim=4, scale_factor=0.18215)
    if path == "vavae_f16d32":
        return dict(ddconfig=VAVAE_F16D32, embed_dim=32, scale_factor=1.0)
    with open(path) as f:
        c = json.load(f)
    dd = dict(SD_DDCONFIG)
    dd.update(c.get("ddconfig", {}))
    return dict(ddconfig=dd, embed_dim=c.get("embed_dim", 4), scale_factor=c.get("scale_factor", 0.18215))


def cmd_save(args):
    c = load_cfg(args.config)
    model = randomize(FrozenAutoencoderKL(c["ddconfig"], c["embed_dim"], c["scale_factor"]), args.seed)
    torch.save(model.state_dict(), args.out)


def cmd_to_diffusers(args):
    c = load_cfg(args.config)
    sd = torch.load(args.weights)
    torch.save(to_diffusers(sd, len(c["ddconfig"]["ch_mult"]), args.style), args.out)


def cmd_run(args):
    c = load_cfg(args.config)
    model = FrozenAutoencoderKL(c["ddconfig"], c["embed_dim"], c["scale_factor"])
    model.load_state_dict(torch.load(args.weights), strict=True)
    model = model.eval().double()
    x = torch.from_numpy(np.load(args.inp)).double()
    with torch.no_grad():
        y = model.encode_moments(x) if args.mode == "encode" else model.decode(x)
    np.save(args.out, y.float().numpy())


def cmd_bench(args):
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    c = load_cfg(args.config)
    model = randomize(FrozenAutoencoderKL(c["ddconfig"], c["embed_dim"], c["scale_factor"]), 0).to(dev)
    z = torch.randn(args.batch, c["embed_dim"], args.latent, args.latent,
                    generator=torch.Generator().manual_seed(1)).to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with torch.no_grad():
        if dev.type == "cuda":  # warm-up: cuDNN algorithm choice, allocator
            model.decode(z)
        times = []
        for _ in range(args.reps):
            sync()
            t0 = time.perf_counter()
            x = model.decode(z)
            sync()
            times.append(time.perf_counter() - t0)
    print(json.dumps({"impl": "pytorch %s" % torch.__version__, "threads": args.threads,
                      "device": args.device, "batch": args.batch, "out_shape": list(x.shape),
                      "seconds": min(times), "all": times,
                      "cudnn_tf32": torch.backends.cudnn.allow_tf32,
                      "matmul_tf32": torch.backends.cuda.matmul.allow_tf32}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("fixtures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("bench")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--latent", type=int, default=32)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--config", default="", help="JSON, sd_kl_f8 (default) or vavae_f16d32")
    sub.add_parser("check-sd")
    p = sub.add_parser("vavae-fixtures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("svg-fixtures")
    p.add_argument("--out", required=True)
    p = sub.add_parser("save")
    p.add_argument("--out", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("to-diffusers")
    p.add_argument("--weights", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--style", choices=["new", "old"], default="new")
    p.add_argument("--out", required=True)
    p = sub.add_parser("run")
    p.add_argument("mode", choices=["encode", "decode"])
    p.add_argument("--weights", required=True)
    p.add_argument("--config", default="")
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--out", required=True)
    args = ap.parse_args()
    {"fixtures": cmd_fixtures, "vavae-fixtures": cmd_vavae_fixtures, "svg-fixtures": cmd_svg_fixtures, "bench": cmd_bench, "check-sd": cmd_check_sd, "save": cmd_save,
     "to-diffusers": cmd_to_diffusers, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
