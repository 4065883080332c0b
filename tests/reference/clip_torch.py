#!/usr/bin/python3
"""CLIP text side references for the C++ tests and benchmark (written from SPEC 14 and the
tokenizer rules in the issue; no transformers / regex / ftfy needed).

  clip_torch.py tokenize --vocab V [PROMPT...]      reference token ids, one JSON list per prompt
  clip_torch.py fixtures --vocab V --out DIR        tokenizer + text-model fixtures (see below)
  clip_torch.py weights --out FILE [--config C] [--seed S] [--dtype f32|f16]
                                                    random HF-layout CLIPTextModel weights
  clip_torch.py bench --threads 2 --iters N [--config C] [--batch B]
                                                    PyTorch twin prompt-encoding latency (JSON)

fixtures writes into DIR:
  tokenizer_cases.json  [{"prompt": str, "ids": [77 ints]}]  (this file's reference tokenizer)
  hf/vocab.json, hf/merges.txt  the same vocabulary in Hugging Face's file layout
  text_small.json       a small CLIPTextConfig (HF field names)
  text_small.safetensors / text_small.pth  its random weights in HF CLIPTextModel key layout,
                        plus an ignored non-text key, position_ids and (pth) a wrapper prefix
  text_small_ids.npy    int64 [B, 77] ids;  text_small_out.npy  float32 [B, 77, hidden], computed
                        in float64 from the float32 weights
"""
import argparse
import gzip
import json
import math
import os
import re
import struct
import sys
import time
import unicodedata

import numpy as np
import torch

# ---------------------------------------------------------------- reference tokenizer


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _class_of(pred):
    """A regex character-class body listing every code point range where pred holds."""
    parts, start = [], None
    for c in range(0x110001):
        ok = c < 0x110000 and pred(c)
        if ok and start is None:
            start = c
        elif not ok and start is not None:
            a, b = re.escape(chr(start)), re.escape(chr(c - 1))
            parts.append(a if start == c - 1 else a + "-" + b)
            start = None
    return "".join(parts)


_PATTERN = None


def pattern():
    """CLIP's pattern with \\p{L} and \\p{N} spelled out for Python's re (no `regex` module)."""
    global _PATTERN
    if _PATTERN is None:
        L = _class_of(lambda c: unicodedata.category(chr(c)).startswith("L"))
        N = _class_of(lambda c: unicodedata.category(chr(c)).startswith("N"))
        _PATTERN = re.compile(r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[%s]+|[%s]|[^\s%s%s]+"
                              % (L, N, L, N), re.IGNORECASE)
    return _PATTERN


class RefTokenizer:
    def __init__(self, vocab_gz):
        merges = gzip.open(vocab_gz).read().decode("utf-8").split("\n")
        merges = [tuple(m.split()) for m in merges[1:49152 - 256 - 2 + 1]]
        self.byte_encoder = bytes_to_unicode()
        vocab = list(self.byte_encoder.values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.vocab, self.merges = vocab, merges
        self.encoder = dict(zip(vocab, range(len(vocab))))
        self.ranks = dict(zip(merges, range(len(merges))))
        self.start, self.end = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]

    def bpe(self, token):
        if token in ("<|startoftext|>", "<|endoftext|>"):
            return [token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, math.inf))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for tok in pattern().findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids += [self.encoder[t] for t in self.bpe(tok)]
        return ids

    def tokenize(self, text, length=77):
        ids = [self.start] + self.encode(text)[:length - 2] + [self.end]
        return ids + [self.end] * (length - len(ids))


PROMPTS = [
    "", "   ", "a photo of a cat", "A green train is coming down the tracks.",
    "Hello,   World!!  \t\n It's  a  test", "I'm we're they've you'll he'd can't THEY'RE",
    "don't 'tis rock'n'roll '''quoted'''", "1234567 3.14159 1,000,000 ½ ² ٣",
    "café naïve résumé Ångström Straße", "ÀÉÎÕÜ ŒUVRE İstanbul ΣΊΣΥΦΟΣ ὈΔΥΣΣΕΎΣ", "東京タワーと富士山 한국어 中文字符",
    "emoji 😀🎉👍🏽 ❤️ 👨‍👩‍👧", "a\u00a0b\u2003c\u3000d\u200be", "<|startoftext|>x<|endoftext|>",
    "snake_case-and-kebab-case (parens) [brackets] {braces} #hash @at $5 100% a&b",
    "The quick brown fox jumps over the lazy dog. " * 12,
    "tab\tnew\nline\r\nend", "A close up of a plate of broccoli and sauce.",
    "x" * 300, "Pneumonoultramicroscopicsilicovolcanoconiosis", "ǅungla ǈubljana Ǌ", "ﬁne ﬂour",
]

# ---------------------------------------------------------------- the text transformer twin


class Attention(torch.nn.Module):
    def __init__(self, d, heads, causal=True):
        super().__init__()
        self.heads, self.causal = heads, causal
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (torch.nn.Linear(d, d) for _ in range(4))

    def forward(self, x):
        B, L, D = x.shape
        dh = D // self.heads

        def split(t):
            return t.view(B, L, self.heads, dh).transpose(1, 2)
        q = split(self.q_proj(x)) * dh ** -0.5
        k, v = split(self.k_proj(x)), split(self.v_proj(x))
        s = q @ k.transpose(-1, -2)
        if self.causal:
            s = s + torch.full((L, L), float("-inf"), dtype=x.dtype, device=x.device).triu(1)
        a = torch.softmax(s, dim=-1) @ v
        return self.out_proj(a.transpose(1, 2).reshape(B, L, D))


class Mlp(torch.nn.Module):
    def __init__(self, d, inner, act):
        super().__init__()
        self.fc1, self.fc2, self.act = torch.nn.Linear(d, inner), torch.nn.Linear(inner, d), act

    def forward(self, x):
        h = self.fc1(x)
        h = h * torch.sigmoid(1.702 * h) if self.act == "quick_gelu" else torch.nn.functional.gelu(h)
        return self.fc2(h)


class Layer(torch.nn.Module):
    def __init__(self, c, causal=True):
        super().__init__()
        d, eps = c["hidden_size"], c["layer_norm_eps"]
        self.self_attn = Attention(d, c["num_attention_heads"], causal)
        self.layer_norm1 = torch.nn.LayerNorm(d, eps=eps)
        self.mlp = Mlp(d, c["intermediate_size"], c["hidden_act"])
        self.layer_norm2 = torch.nn.LayerNorm(d, eps=eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class Embeddings(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embedding = torch.nn.Embedding(c["max_position_embeddings"], c["hidden_size"])
        self.register_buffer("position_ids", torch.arange(c["max_position_embeddings"]).unsqueeze(0))


class Encoder(torch.nn.Module):
    def __init__(self, c, causal=True):
        super().__init__()
        self.layers = torch.nn.ModuleList(Layer(c, causal) for _ in range(c["num_hidden_layers"]))


class TextTransformer(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = Embeddings(c)
        self.encoder = Encoder(c)
        self.final_layer_norm = torch.nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])

    def forward(self, ids):
        L = ids.shape[1]
        e = self.embeddings
        x = e.token_embedding(ids) + e.position_embedding(e.position_ids[:, :L])
        for layer in self.encoder.layers:
            x = layer(x)
        return self.final_layer_norm(x)


class ClipTextTwin(torch.nn.Module):
    """State-dict keys as HF CLIPTextModel: text_model.embeddings..., text_model.encoder.layers.N..."""

    def __init__(self, c):
        super().__init__()
        self.text_model = TextTransformer(c)

    def forward(self, ids):
        return self.text_model(ids)


VIT_L14 = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
               num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5)
SMALL = dict(vocab_size=49408, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
             num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5)


def load_config(path):
    c = dict(VIT_L14)
    if path:
        c.update({k: v for k, v in json.load(open(path)).items() if k in c})
    return c


def randomize(net, seed):
    """Non-trivial random weights: Linear std 1/sqrt(fan_in), embeddings std 0.5 (token) / 0.3
    (position), LayerNorm weights 1 + N(0, .1), biases N(0, .05)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / math.sqrt(m.in_features))
                if m.bias is not None:
                    m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))
        e = net.text_model.embeddings
        e.token_embedding.weight.copy_(0.5 * torch.randn(e.token_embedding.weight.shape, generator=g))
        e.position_embedding.weight.copy_(0.3 * torch.randn(e.position_embedding.weight.shape, generator=g))


# ---------------------------------------------------------------- files


def write_safetensors(path, tensors):
    dtypes = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        b = a.tobytes()
        header[name] = {"dtype": dtypes[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def save_npy(path, a):
    tmp = path + ".tmp.npy"
    np.save(tmp, a)
    os.replace(tmp, path)


def write_hf_tokenizer(tok, d):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(tok.encoder, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(" ".join(m) for m in tok.merges) + "\n")


def cmd_fixtures(a):
    os.makedirs(a.out, exist_ok=True)
    torch.set_num_threads(1)
    tok = RefTokenizer(a.vocab)
    cases = [{"prompt": p, "ids": tok.tokenize(p)} for p in PROMPTS]
    with open(os.path.join(a.out, "tokenizer_cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    write_hf_tokenizer(tok, os.path.join(a.out, "hf"))

    c = SMALL
    with open(os.path.join(a.out, "text_small.json"), "w") as f:
        json.dump(dict(c, model_type="clip_text_model", projection_dim=768), f, indent=1)
    net = ClipTextTwin(c)
    randomize(net, 1234)
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
    extra = {"vision_model.embeddings.class_embedding": np.ones(7, np.float32),
             "text_projection.weight": np.ones((768, 64), np.float32)}
    write_safetensors(os.path.join(a.out, "text_small.safetensors"), dict(sd, **extra))
    # The .pth: a wrapper prefix ("transformer.text_model.*", as in a FrozenCLIPEmbedder state_dict).
    torch.save({"transformer." + k: v for k, v in net.state_dict().items()}, os.path.join(a.out, "text_small.pth"))
    prompts = [cases[i]["ids"] for i in (2, 4, 5, 0)]
    ids = torch.tensor(prompts, dtype=torch.int64)
    ids[3, 10] = 49000  # a rare id, and a non-trivial pad region
    with torch.no_grad():
        ref = net.double()(ids).numpy()
    save_npy(os.path.join(a.out, "text_small_ids.npy"), ids.numpy())
    save_npy(os.path.join(a.out, "text_small_out.npy"), ref.astype(np.float32))
    # Self-check: the fp32 twin agrees with the float64 reference.
    with torch.no_grad():
        out32 = net.float()(ids).numpy()
    err = np.abs(out32 - ref).max() / np.abs(ref).max()
    print("clip fixtures: %d tokenizer cases, text model fp32-vs-fp64 rel err %.2e -> %s" % (len(cases), err, a.out))
    return 0 if err < 1e-5 else 1


def cmd_tokenize(a):
    tok = RefTokenizer(a.vocab)
    for p in a.prompts:
        print(json.dumps(tok.tokenize(p)))
    return 0


def cmd_weights(a):
    c = load_config(a.config)
    net = ClipTextTwin(c)
    randomize(net, a.seed)
    dt = np.float16 if a.dtype == "f16" else np.float32
    sd = {k: (v.numpy().astype(dt) if v.is_floating_point() else v.numpy()) for k, v in net.state_dict().items()}
    write_safetensors(a.out, sd)
    return 0


def cmd_bench(a):
    torch.set_num_threads(a.threads)
    c = load_config(a.config)
    net = ClipTextTwin(c).eval()
    randomize(net, 0)
    dev = torch.device(a.device)
    net = net.to(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    ids = torch.randint(0, c["vocab_size"], (a.batch, 77))
    times = []
    with torch.no_grad():
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter()
            net(ids.to(dev)).cpu()  # ids in, contexts out, as uvit encode-text times it
            sync()
            if i >= a.warmup:
                times.append(time.perf_counter() - t0)
    print(json.dumps({"impl": "pytorch", "torch": torch.__version__, "threads": a.threads, "batch": a.batch,
                      "device": a.device, "iters": a.iters, "median_s": float(np.median(times)),
                      "min_s": float(np.min(times))}))
    return 0


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tokenize")
    s.add_argument("--vocab", required=True)
    s.add_argument("prompts", nargs="*")
    s = sub.add_parser("fixtures")
    s.add_argument("--vocab", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("weights")
    s.add_argument("--out", required=True)
    s.add_argument("--config")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    s = sub.add_parser("bench")
    s.add_argument("--config")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--batch", type=int, default=1)
    s.add_argument("--iters", type=int, default=10)
    s.add_argument("--warmup", type=int, default=2)
    s.add_argument("--device", default="cpu")
    a = p.parse_args()
    return {"tokenize": cmd_tokenize, "fixtures": cmd_fixtures, "weights": cmd_weights, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
