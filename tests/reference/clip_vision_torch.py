#!/usr/bin/python3
"""CLIP image-tower and CLIPScore references for the C++ tests and benchmark: a PyTorch twin of
Hugging Face's CLIPModel (CLIPVisionModel + visual_projection, CLIPTextModel + text_projection)
written from the facts in docs/clip_score.md (no transformers package), and CLIPImageProcessor's
preprocessing with PIL itself.

  clip_vision_torch.py fixtures --vocab V --out DIR   fixtures (below)
  clip_vision_torch.py score --weights W.safetensors --config C.json --vocab V --images X.npz
                      --prompts FILE                  CLIPScore of arr_0's images (image i gets
                                                      prompt i mod P), float64; prints the mean
  clip_vision_torch.py weights --size l14|b16 --out W.safetensors [--dtype f32|f16]
                                                      random CLIPModel weights (ViT-L/14 or a
                                                      ViT-B/16-sized image tower), config beside
  clip_vision_torch.py bench --threads 2 --iters N [--size l14|b16] [--batch B]
                                                      image-tower img/s of the twin (JSON)

fixtures writes into DIR:
  clip_small.json          a small CLIPConfig (HF field names: text_config, vision_config,
                           projection_dim)
  clip_small.safetensors   its random weights in the HF CLIPModel key layout (both towers, both
                           projections, logit_scale, position_ids)
  clip_small.bin           the same as a torch state_dict (pytorch_model.bin), behind a
                           "model." wrapper prefix
  image_K.npy              uint8 [H, W, C] test images of several sizes (gray, portrait,
                           landscape, up- and downscaled, already 56 x 56); images/K.png the same
  pixels_K.npy             float32 [3, 56, 56]: CLIPImageProcessor's output (PIL BICUBIC resize)
  image_embeds.npy         float32 [N, 32] get_image_features (float64 forward of the float32 weights)
  image_pooled.npy         float32 [N, 48] the vision pooler_output (post_layernorm of the class token)
  prompts.txt              one prompt per image
  text_embeds.npy          float32 [N, 32] get_text_features
  clip_scores.npy          float64 [N] 100 * max(cos, 0); clip_score.json {"mean": ...}
  vit_l14_keys.json        [[name, shape], ...] of openai/clip-vit-large-patch14's CLIPModel
                           state_dict, built on the meta device (no memory), and its parameter count
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_torch as ct  # noqa: E402

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

VISION_L14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  num_channels=3, image_size=224, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5)
VISION_B16 = dict(VISION_L14, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                  num_attention_heads=12, patch_size=16)
VISION_SMALL = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=3,
                    num_channels=3, image_size=56, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5)


class VisionEmbeddings(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        d, p = c["hidden_size"], c["patch_size"]
        n = (c["image_size"] // p) ** 2 + 1
        self.class_embedding = torch.nn.Parameter(torch.zeros(d))
        self.patch_embedding = torch.nn.Conv2d(c["num_channels"], d, p, stride=p, bias=False)
        self.position_embedding = torch.nn.Embedding(n, d)
        self.register_buffer("position_ids", torch.arange(n).unsqueeze(0))

    def forward(self, px):
        B = px.shape[0]
        patches = self.patch_embedding(px).flatten(2).transpose(1, 2)  # [B, grid^2, d]
        x = torch.cat([self.class_embedding.expand(B, 1, -1), patches], dim=1)
        return x + self.position_embedding(self.position_ids)


class VisionTransformer(torch.nn.Module):
    """HF CLIPVisionTransformer: embeddings -> pre_layrnorm -> encoder -> post_layernorm(class token)."""

    def __init__(self, c):
        super().__init__()
        d, eps = c["hidden_size"], c["layer_norm_eps"]
        self.embeddings = VisionEmbeddings(c)
        self.pre_layrnorm = torch.nn.LayerNorm(d, eps=eps)
        self.encoder = ct.Encoder(c, causal=False)
        self.post_layernorm = torch.nn.LayerNorm(d, eps=eps)

    def forward(self, px):
        x = self.pre_layrnorm(self.embeddings(px))
        for layer in self.encoder.layers:
            x = layer(x)
        return self.post_layernorm(x[:, 0, :])


class ClipModelTwin(torch.nn.Module):
    """State-dict keys as HF CLIPModel."""

    def __init__(self, tc, vc, proj):
        super().__init__()
        self.text_model = ct.TextTransformer(tc)
        self.vision_model = VisionTransformer(vc)
        self.visual_projection = torch.nn.Linear(vc["hidden_size"], proj, bias=False)
        self.text_projection = torch.nn.Linear(tc["hidden_size"], proj, bias=False)
        self.logit_scale = torch.nn.Parameter(torch.tensor(2.6592))

    def image_features(self, px, pooled=False):
        p = self.vision_model(px)
        e = self.visual_projection(p)
        return (e, p) if pooled else e

    def text_features(self, ids):
        h = self.text_model(ids)
        return self.text_projection(h[torch.arange(h.shape[0]), ids.argmax(dim=-1)])


def randomize(net, seed):
    ct.randomize(net, seed)  # Linear, LayerNorm, token/position embeddings of the text tower
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        e = net.vision_model.embeddings
        w = e.patch_embedding.weight
        w.copy_(torch.randn(w.shape, generator=g) / math.sqrt(w[0].numel()))
        e.class_embedding.copy_(0.5 * torch.randn(e.class_embedding.shape, generator=g))
        e.position_embedding.weight.copy_(0.3 * torch.randn(e.position_embedding.weight.shape, generator=g))


def clip_preprocess(u8, size):
    """CLIPImageProcessor with PIL: convert RGB, shortest edge -> size (BICUBIC), centre crop,
    rescale 1/255, normalize; float32 [3, size, size]."""
    from PIL import Image
    im = Image.fromarray(u8[..., 0] if u8.shape[-1] == 1 else u8).convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    im = im.resize((nw, nh), resample=Image.BICUBIC, reducing_gap=None)
    a = np.array(im)
    top, left = (nh - size) // 2, (nw - size) // 2
    a = a[top:top + size, left:left + size]
    x = (a * (1 / 255)).astype(np.float32)
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def test_images(seed):
    """Smooth random images (so resizing matters) with noise, of several shapes."""
    rng = np.random.default_rng(seed)
    out = []
    for (h, w, c) in [(64, 80, 3), (90, 60, 3), (56, 56, 3), (40, 50, 1), (200, 130, 3), (57, 300, 3)]:
        yy, xx = np.mgrid[0:h, 0:w]
        a = np.zeros((h, w, c))
        for ch in range(c):
            f = rng.uniform(0.02, 0.2, 4)
            a[..., ch] = 128 + 60 * np.sin(f[0] * yy + f[1] * xx) + 40 * np.cos(f[2] * xx - f[3] * yy)
        a += rng.normal(0, 12, a.shape)
        out.append(np.clip(np.round(a), 0, 255).astype(np.uint8))
    return out


PROMPTS = ["a photo of a cat", "A green train is coming down the tracks.", "two dogs playing in the snow",
           "a gray square", "an astronaut riding a horse on the moon", "a very wide panorama of mountains"]


def cmd_fixtures(a):
    from PIL import Image
    os.makedirs(os.path.join(a.out, "images"), exist_ok=True)
    torch.set_num_threads(1)
    tc, vc, proj = dict(ct.SMALL), dict(VISION_SMALL), 32
    with open(os.path.join(a.out, "clip_small.json"), "w") as f:
        json.dump({"model_type": "clip", "projection_dim": proj, "text_config": tc, "vision_config": vc}, f, indent=1)
    net = ClipModelTwin(tc, vc, proj)
    randomize(net, 4321)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    ct.write_safetensors(os.path.join(a.out, "clip_small.safetensors"), sd)
    torch.save({"model." + k: v for k, v in net.state_dict().items()}, os.path.join(a.out, "clip_small.bin"))

    imgs = test_images(7)
    px = []
    for k, im in enumerate(imgs):
        ct.save_npy(os.path.join(a.out, "image_%d.npy" % k), im)
        Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).save(os.path.join(a.out, "images", "%d.png" % k))
        px.append(clip_preprocess(im, vc["image_size"]))
        ct.save_npy(os.path.join(a.out, "pixels_%d.npy" % k), px[-1])
    tok = ct.RefTokenizer(a.vocab)
    with open(os.path.join(a.out, "prompts.txt"), "w") as f:
        f.write("\n".join(PROMPTS) + "\n")
    ids = torch.tensor([tok.tokenize(p) for p in PROMPTS], dtype=torch.int64)
    net64 = net.double()
    with torch.no_grad():
        emb, pooled = net64.image_features(torch.from_numpy(np.stack(px)).double(), pooled=True)
        temb = net64.text_features(ids)
    cos = torch.nn.functional.cosine_similarity(emb, temb, dim=-1)
    scores = (100 * cos.clamp(min=0)).numpy()
    ct.save_npy(os.path.join(a.out, "image_embeds.npy"), emb.numpy().astype(np.float32))
    ct.save_npy(os.path.join(a.out, "image_pooled.npy"), pooled.numpy().astype(np.float32))
    ct.save_npy(os.path.join(a.out, "text_embeds.npy"), temb.numpy().astype(np.float32))
    ct.save_npy(os.path.join(a.out, "clip_scores.npy"), scores)
    with open(os.path.join(a.out, "clip_score.json"), "w") as f:
        json.dump({"mean": float(scores.mean()), "scores": scores.tolist()}, f)

    # openai/clip-vit-large-patch14's key set and shapes, without allocating its weights.
    big = _meta_model(dict(ct.VIT_L14), dict(VISION_L14), 768)
    keys = [[k, list(v.shape)] for k, v in big.state_dict().items()]
    n_params = sum(p.numel() for p in big.parameters())
    with open(os.path.join(a.out, "vit_l14_keys.json"), "w") as f:
        json.dump({"keys": keys, "parameters": n_params}, f)
    print("clip vision fixtures: %d images, ViT-L/14 %d keys, %d parameters -> %s" % (len(imgs), len(keys), n_params, a.out))
    return 0


def _meta_model(tc, vc, proj):
    """The module with every parameter and buffer on the meta device (shapes only)."""
    net = ClipModelTwin.__new__(ClipModelTwin)
    orig = torch.nn.Module.register_parameter

    def reg(self, name, p):
        orig(self, name, None if p is None else torch.nn.Parameter(torch.empty(p.shape, device="meta"), p.requires_grad))
    torch.nn.Module.register_parameter = reg
    try:
        ClipModelTwin.__init__(net, tc, vc, proj)
    finally:
        torch.nn.Module.register_parameter = orig
    return net


def read_safetensors(path):
    dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    return {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]],
                                              dt[v["dtype"]]).reshape(v["shape"]).copy())
            for k, v in header.items() if k != "__metadata__"}


def cmd_score(a):
    c = json.load(open(a.config))
    tc, vc = dict(ct.SMALL), dict(VISION_SMALL)
    tc.update(c["text_config"])
    vc.update(c["vision_config"])
    net = ClipModelTwin(tc, vc, c["projection_dim"])
    net.load_state_dict(read_safetensors(a.weights))
    net = net.double()
    imgs = np.load(a.images)["arr_0"]
    prompts = [l.rstrip("\r\n") for l in open(a.prompts, encoding="utf-8") if l.strip(" \t\r\n")]
    tok = ct.RefTokenizer(a.vocab)
    px = torch.from_numpy(np.stack([clip_preprocess(im, vc["image_size"]) for im in imgs])).double()
    ids = torch.tensor([tok.tokenize(prompts[i % len(prompts)]) for i in range(len(imgs))], dtype=torch.int64)
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(net.image_features(px), net.text_features(ids), dim=-1)
    print(repr(float((100 * cos.clamp(min=0)).mean())))
    return 0


def cmd_weights(a):
    vc = VISION_L14 if a.size == "l14" else VISION_B16
    net = ClipModelTwin(dict(ct.VIT_L14), dict(vc), 768)
    randomize(net, 0)
    dt = np.float16 if a.dtype == "f16" else np.float32
    ct.write_safetensors(a.out, {k: (v.numpy().astype(dt) if v.is_floating_point() else v.numpy())
                                 for k, v in net.state_dict().items()})
    with open(os.path.splitext(a.out)[0] + ".json", "w") as f:
        json.dump({"projection_dim": 768, "text_config": ct.VIT_L14, "vision_config": vc}, f)
    return 0


def cmd_bench(a):
    torch.set_num_threads(a.threads)
    vc = VISION_L14 if a.size == "l14" else VISION_B16
    net = VisionTransformer(vc).eval()
    proj = torch.nn.Linear(vc["hidden_size"], 768, bias=False)
    px = torch.randn(a.batch, 3, vc["image_size"], vc["image_size"])
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            proj(net(px))
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": a.threads, "size": a.size,
                      "batch": a.batch, "iters": a.iters, "median_s": med, "img_per_s": a.batch / med}))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("fixtures")
    s.add_argument("--vocab", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("score")
    for k in ("weights", "config", "vocab", "images", "prompts"):
        s.add_argument("--" + k, required=True)
    s = sub.add_parser("weights")
    s.add_argument("--size", default="l14", choices=["l14", "b16"])
    s.add_argument("--out", required=True)
    s.add_argument("--dtype", default="f16", choices=["f32", "f16"])
    s = sub.add_parser("bench")
    s.add_argument("--size", default="l14", choices=["l14", "b16"])
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--batch", type=int, default=8)
    s.add_argument("--iters", type=int, default=3)
    s.add_argument("--warmup", type=int, default=1)
    a = p.parse_args()
    return {"fixtures": cmd_fixtures, "score": cmd_score, "weights": cmd_weights, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
