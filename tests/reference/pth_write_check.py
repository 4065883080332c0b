"""Checks uvit's .pth writer (docs/formats.md, "Writing .pth") against torch itself.

  pth_write_check.py load ST PTH WRAP [ST PTH WRAP ...]
      torch.load(PTH) and torch.load(PTH, weights_only=True) give, under WRAP (none, ema, model,
      state_dict), an OrderedDict equal to the safetensors file ST: the same names in the same
      order, dtypes, shapes and bits. The archive is torch's layout: stored entries, contents
      64-byte aligned, data.pkl first.
  pth_write_check.py same ST1 ST2
      the two safetensors files hold the same tensors, bit for bit (metadata aside).
  pth_write_check.py dit PTH CONFIG.json ST
      DiT's official loading path: download.py:find_model's torch.load with its map_location and
      its "ema" rule, then load_state_dict(strict=True) on the PyTorch twin (dit_torch.py) built
      from CONFIG.json; the loaded parameters equal ST's tensors bit for bit.

Run with /usr/bin/python3 (Debian's torch 1.13). Exit 0 when every check holds.
"""
import collections
import json
import os
import struct
import sys
import zipfile

import torch

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "F64": torch.float64, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = collections.OrderedDict()
    # Our writer stores tensors in state_dict order; the offsets give that order back.
    items = sorted(((k, v) for k, v in head.items() if k != "__metadata__"),
                   key=lambda kv: kv[1]["data_offsets"][0])
    for k, v in items:
        a, b = v["data_offsets"]
        raw = bytearray(body[a:b])
        dt = DTYPES[v["dtype"]]
        t = torch.frombuffer(raw, dtype=dt) if raw else torch.empty(0, dtype=dt)
        out[k] = t.reshape(v["shape"])
    return out


def bits(t):
    """The tensor's bytes, so that -0.0, NaN payloads and bf16 compare exactly."""
    return t.contiguous().view(-1).view(torch.uint8).tolist() if t.numel() else []


def same(a, b, what):
    if list(a.keys()) != list(b.keys()):
        sys.exit(f"{what}: names differ: {list(a.keys())[:5]} vs {list(b.keys())[:5]}")
    for k in a:
        x, y = a[k], b[k]
        if x.dtype != y.dtype or tuple(x.shape) != tuple(y.shape) or bits(x) != bits(y):
            sys.exit(f"{what}: tensor {k}: {x.dtype} {tuple(x.shape)} vs {y.dtype} "
                     f"{tuple(y.shape)} (or different values)")


def check_layout(path):
    with zipfile.ZipFile(path) as z:
        infos = z.infolist()
        if not infos[0].filename.endswith("/data.pkl"):
            sys.exit(f"{path}: first entry {infos[0].filename}, torch reads data.pkl first")
        prefix = infos[0].filename[:-len("data.pkl")]
        names = {i.filename for i in infos}
        for need in ("data.pkl", "version", "byteorder"):
            if prefix + need not in names:
                sys.exit(f"{path}: no {prefix + need}")
        if z.read(prefix + "version") != b"3\n" or z.read(prefix + "byteorder") != b"little":
            sys.exit(f"{path}: version/byteorder records")
        if z.testzip() is not None:
            sys.exit(f"{path}: CRC mismatch")
        raw = open(path, "rb").read()
        for i in infos:
            if i.compress_type != zipfile.ZIP_STORED:
                sys.exit(f"{path}: {i.filename} is compressed")
            o = i.header_offset
            name_len, extra_len = struct.unpack("<HH", raw[o + 26:o + 30])
            if (o + 30 + name_len + extra_len) % 64:
                sys.exit(f"{path}: {i.filename} data not 64-byte aligned")


def unwrap(obj, wrap, what):
    if wrap != "none":
        if type(obj) is not dict or list(obj.keys()) != [wrap]:
            sys.exit(f"{what}: expected {{'{wrap}': state_dict}}, got {type(obj)} "
                     f"{list(obj.keys()) if isinstance(obj, dict) else ''}")
        obj = obj[wrap]
    if type(obj) is not collections.OrderedDict:
        sys.exit(f"{what}: the state_dict is a {type(obj)}, not an OrderedDict")
    return obj


def cmd_load(args):
    for st, pth, wrap in zip(args[0::3], args[1::3], args[2::3]):
        want = read_safetensors(st)
        check_layout(pth)
        for weights_only in (False, True):
            what = f"torch.load({os.path.basename(pth)}, weights_only={weights_only})"
            got = unwrap(torch.load(pth, weights_only=weights_only), wrap, what)
            same(want, got, what)
        print(f"ok: {os.path.basename(pth)} ({wrap}): {len(want)} tensors equal, "
              "plain and weights_only")


def cmd_dit(pth, config, st):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import dit_torch
    # find_model: torch.load onto the CPU, then the "ema" entry when there is one.
    checkpoint = torch.load(pth, map_location=lambda storage, loc: storage)
    if "ema" in checkpoint:
        checkpoint = checkpoint["ema"]
    net = dit_torch.build_from_config(json.load(open(config)))
    net.load_state_dict(checkpoint, strict=True)
    want = read_safetensors(st)
    same(want, collections.OrderedDict((k, v.to(want[k].dtype)) for k, v in
                                       net.state_dict().items()), "twin after load_state_dict")
    print(f"ok: DiT twin load_state_dict(strict=True) of {os.path.basename(pth)}")


def main():
    if len(sys.argv) >= 5 and sys.argv[1] == "load" and (len(sys.argv) - 2) % 3 == 0:
        cmd_load(sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "same":
        same(read_safetensors(sys.argv[2]), read_safetensors(sys.argv[3]), "round trip")
        print("ok: same tensors")
    elif len(sys.argv) == 5 and sys.argv[1] == "dit":
        cmd_dit(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
