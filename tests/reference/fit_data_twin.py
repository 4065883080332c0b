#!/usr/bin/python3
"""FiTv2's data side, as the official code defines it (whlzy/FiT, read, not copied; docs/fit.md
"Training on your own images"): the pixel resize (fit/data/in1k_dataset.py:resize_arr) and the
latent files that fit/data/in1k_latent_dataset.py:IN1kLatentDataset reads.

  fit_data_twin.py resize-table OUT.json        many (w, h, S, g) -> resize_arr's (new_w, new_h)
  fit_data_twin.py write-latents DIR            a small official-layout dataset root + expected/
  fit_data_twin.py check-converted DIR OUT      OUT (uvit convert-fit-latents DIR/root OUT) == DIR/expected
  fit_data_twin.py check-extracted IMAGES OUT AE.json AE.pth PATCH S [VERSIONS [MIN_TOKENS]]
                                                OUT (uvit extract-features --fit --versions VERSIONS,
                                                default resize) == PIL resize / center crop + the
                                                PyTorch autoencoder twin's moments, and no other file
"""
import json
import os
import struct
import sys

import numpy as np


def resize_arr_size(w, h, image_size, granularity=16):
    """The (new_w, new_h) of resize_arr for a w x h image (granularity = VAE factor x patch); a 0
    side means the official PIL resize would fail."""
    if w * h >= image_size ** 2:  # shrink to about image_size^2 pixels, ratio kept
        nw = np.sqrt(w / h) * image_size
        nh = nw * h / w
    elif w < granularity:  # a thin side is raised to one token
        nw = granularity
        nh = granularity * h / w
    elif h < granularity:
        nh = granularity
        nw = granularity * w / h
    else:
        nw, nh = w, h
    return int(nw / granularity) * granularity, int(nh / granularity) * granularity


def resize_arr(pil_image, image_size, granularity=16):
    from PIL import Image
    w, h = pil_image.size
    nw, nh = resize_arr_size(w, h, image_size, granularity)
    if (nw, nh) == (w, h):
        return pil_image
    return pil_image.resize((nw, nh), resample=Image.BICUBIC)


def center_crop_arr(pil_image, image_size):
    """ADM's center crop (guided-diffusion image_datasets.py, as FiT's fit/data/in1k_dataset.py
    carries it): BOX-halve while the short side is >= 2 S, BICUBIC the short side to S (Python's
    round), the central S x S. docs/fit.md: our reading of the README's CenterCrop(Resize(I))."""
    from PIL import Image
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(tuple(round(x * scale) for x in pil_image.size),
                                 resample=Image.BICUBIC)
    arr = np.array(pil_image)
    y, x = (arr.shape[0] - image_size) // 2, (arr.shape[1] - image_size) // 2
    return Image.fromarray(arr[y:y + image_size, x:x + image_size])


def resize_table():
    """Hand-picked edge cases plus a random sweep of sizes and both official image sizes."""
    rows = []
    edge = [(256, 256), (1024, 64), (64, 1024), (512, 256), (257, 255), (255, 257), (300, 200),
            (16, 16), (15, 15), (5, 5), (1, 1), (8, 4), (20, 10), (10, 20), (10, 1000), (15, 3000),
            (12, 5000), (10, 8000), (8000, 10), (4000, 17), (17, 4000), (640, 480), (500, 375),
            (333, 500), (2048, 2048), (4096, 16), (256, 257), (511, 513)]
    rs = np.random.RandomState(0)
    sweep = [(int(rs.randint(1, 3000)), int(rs.randint(1, 3000))) for _ in range(400)]
    sweep += [(int(rs.randint(1, 40)), int(rs.randint(1, 9000))) for _ in range(100)]
    for s, g in [(256, 16), (512, 16), (256, 8), (64, 16)]:
        for w, h in edge + sweep:
            rows.append([w, h, s, g, *resize_arr_size(w, h, s, g)])
    return rows


_ST = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64",
       np.dtype("int32"): "I32", np.dtype("float64"): "F64"}


def write_safetensors(path, tensors):
    """name -> numpy array, or name -> ("BF16", uint16 array of the bit patterns)."""
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        dt, a = a if isinstance(a, tuple) else (_ST[a.dtype], a)
        b = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header).encode()
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)) + hj + b"".join(blobs))


def bf16_bits(x):
    """float32 -> bfloat16 bit patterns (round to nearest even) and their float32 values."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return r, (r.astype(np.uint32) << 16).view(np.float32)


def patchify(z, p):
    """latent [C, h*p, w*p] -> tokens [h, w, C*p*p] in the model's (c, p1, p2) feature order."""
    C, H, W = z.shape
    h, w = H // p, W // p
    return z.reshape(C, h, p, w, p).transpose(1, 3, 0, 2, 4).reshape(h, w, C * p * p)


def write_latents(d):
    """An official root: from_16_to_256 (native size), greater_than_256_resize and its _crop twin
    (one image in both), less_than_16 (not read by the loader). Each file holds feature [2, h, w, c]
    (the image's tokens, its flip's), grid [2, h*w] (row 0 the column, row 1 the row, as
    sample_fitv2_ddp.py builds it), size [h, w] and label; expected/ holds what the conversion must
    give (resize default; crop_expected/ with --crop; both_expected/ with --versions both)."""
    rs = np.random.RandomState(7)
    p, C = 2, 4
    root = os.path.join(d, "root")
    files = [("from_16_to_256", "n01_a", (4, 6), 3, "F32"),
             ("from_16_to_256", "n01_b", (16, 16), 0, "F16"),
             ("from_16_to_256", "n02_c", (1, 20), 999, "BF16"),
             ("greater_than_256_resize", "n03_d", (12, 21), 42, "F32"),
             ("greater_than_256_crop", "n03_d", (16, 16), 42, "F32"),
             ("less_than_16", "n04_e", (2, 3), 5, "F32")]
    for sub, name, (h, w), label, dt in files:
        os.makedirs(os.path.join(root, sub), exist_ok=True)
        z = rs.standard_normal((2, C, h * p, w * p)).astype(np.float32)
        if dt == "F16":
            z = z.astype(np.float16).astype(np.float32)
        if dt == "BF16":
            _, z = bf16_bits(z)
        tok = np.stack([patchify(z[k], p) for k in range(2)])
        feature = tok.astype(np.float16) if dt == "F16" else (("BF16", bf16_bits(tok)[0]) if dt == "BF16" else tok)
        gw, gh = np.meshgrid(np.arange(w), np.arange(h), indexing="xy")
        grid = np.stack([gw.reshape(-1), gh.reshape(-1)]).astype(np.int64)
        write_safetensors(os.path.join(root, sub, name + ".safetensors"),
                          {"feature": feature, "grid": grid, "size": np.array([h, w], np.int32),
                           "label": np.array([label], np.int64)})
        for out, wanted in [("expected", ("from_16_to_256", "greater_than_256_resize")),
                            ("crop_expected", ("from_16_to_256", "greater_than_256_crop")),
                            ("both_expected", ("from_16_to_256", "greater_than_256_resize",
                                               "greater_than_256_crop"))]:
            if sub in wanted:
                os.makedirs(os.path.join(d, out), exist_ok=True)
                # --versions both: the crop file beside the resize one as NAME.crop.npy
                crop = ".crop" if out == "both_expected" and sub.endswith("_crop") else ""
                stem = os.path.join(d, out, "%04d_%s%s" % (label, name, crop))
                np.save(stem + ".npy", z[0])
                np.save(stem + ".flip.npy", z[1])


def check_converted(expected, out):
    want = sorted(os.listdir(expected))
    got = sorted(os.listdir(out))
    assert got == want, (got, want)
    for f in want:
        a, b = np.load(os.path.join(expected, f)), np.load(os.path.join(out, f))
        assert a.shape == b.shape and b.dtype == np.float32, (f, a.shape, b.shape, b.dtype)
        assert np.array_equal(a, b), (f, np.abs(a - b).max())
    print("ok: %d converted files equal the twin's latents" % len(want))


def philox_normals(seed, stream, n):
    """uvit::Philox(seed, stream).normal(0 .. n-1) (include/uvit/rng.hpp): Philox4x32-10, block i
    = philox({i, i >> 32, stream, stream >> 32}, {seed, seed >> 32}), Box-Muller on words 0, 1."""
    M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    m32 = np.uint64(0xFFFFFFFF)
    i = np.arange((n + 1) // 2, dtype=np.uint64)
    c = [i & m32, i >> np.uint64(32), np.full_like(i, stream & 0xFFFFFFFF),
         np.full_like(i, stream >> 32)]
    k0, k1 = seed & 0xFFFFFFFF, seed >> 32
    for _ in range(10):
        p0, p1 = np.uint64(M0) * c[0], np.uint64(M1) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ np.uint64(k0), p1 & m32,
             (p0 >> np.uint64(32)) ^ c[3] ^ np.uint64(k1), p0 & m32]
        k0, k1 = (k0 + W0) & 0xFFFFFFFF, (k1 + W1) & 0xFFFFFFFF
    u1 = (c[0].astype(np.float64) + 1.0) * (1.0 / 4294967297.0)
    u2 = c[1].astype(np.float64) * (1.0 / 4294967296.0)
    r = np.sqrt(-2.0 * np.log(u1))
    z = np.stack([r * np.cos(6.283185307179586 * u2), r * np.sin(6.283185307179586 * u2)], 1)
    return z.reshape(-1)[:n]


def fnv1a(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def check_extracted(images, out, ae_json, ae_pth, patch, image_size, versions="resize",
                    min_tokens=0):
    """Every image of at least min_tokens tokens after resize_arr: resize_arr (PIL) or, for an
    image over S px both ways (the README's H > S and W > S) under versions crop / both, ADM's
    center_crop_arr to S x S (as REL.npy for crop, as REL.crop.npy beside for both), ToTensor +
    Normalize(0.5), it and its flip through the twin's encoder (float64); each stored latent must be
    scale * (mean + exp(0.5 * clamp(logvar)) * eps) with eps the Philox stream keyed by the file's
    name (FNV-1a of REL.npy / REL.flip.npy / REL.crop.npy / ..., stream 0xf17: docs/fit.md), to
    float32 rounding of the encoder. OUT holds those files and no other."""
    import torch
    from PIL import Image
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import autoencoder_torch as at
    cfg = at.load_cfg(ae_json)
    f = 2 ** (len(cfg["ddconfig"]["ch_mult"]) - 1)
    model = at.FrozenAutoencoderKL(cfg["ddconfig"], cfg["embed_dim"])
    model.load_state_dict(torch.load(ae_pth))
    model = model.eval().double()
    g = f * patch
    n, crops, worst = 0, 0, 0.0
    eps_all, want_files = [], []
    for dp, _, fs in sorted(os.walk(images)):
        for name in sorted(fs):
            img = Image.open(os.path.join(dp, name)).convert("RGB")
            rw, rh = resize_arr_size(*img.size, image_size, g)
            if (rw // g) * (rh // g) < min_tokens:
                continue
            over = img.size[0] > image_size and img.size[1] > image_size
            rel = os.path.splitext(os.path.relpath(os.path.join(dp, name), images))[0]
            done = [("", center_crop_arr(img, image_size) if versions == "crop" and over
                     else resize_arr(img, image_size, g))]
            if versions == "both" and over:
                done.append((".crop", center_crop_arr(img, image_size)))
            crops += over and versions != "resize"
            n += 1
            for stem, r in done:
                worst = check_one(model, cfg, f, out, rel + stem, r, eps_all, want_files, worst)
    got = sorted(os.path.relpath(os.path.join(dp, x), out) for dp, _, fs in os.walk(out)
                 for x in fs if x.endswith(".npy"))
    assert got == sorted(want_files), (got, sorted(want_files))
    e = np.concatenate(eps_all)
    assert abs(e.mean()) < 0.1 and abs(e.std() - 1) < 0.1, (e.mean(), e.std())
    assert abs(e.mean()) < 0.05 and abs(e.std() - 1) < 0.05, (e.mean(), e.std())
    print("ok: %d images (+ flips, %d with a crop version, %d files): sizes of resize_arr / "
          "center_crop_arr, latents = scale * (mean + std * eps) with uvit's Philox eps to %.1e, "
          "eps ~ N(%.3f, %.3f)" % (n, crops, len(want_files), worst, e.mean(), e.std()))


def check_one(model, cfg, f, out, rel, r, eps_all, want_files, worst):
    """The two files OUT/REL.npy, OUT/REL.flip.npy of the pixels r (a PIL image) and its mirror."""
    import torch
    x = torch.from_numpy((np.asarray(r, np.float32) / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]
    x = torch.cat([x, x.flip(dims=[-1])]).double()
    with torch.no_grad():
        mom = model.encode_moments(x).numpy()
    for k, suffix in enumerate([".npy", ".flip.npy"]):
        want_files.append(rel + suffix)
        z = np.load(os.path.join(out, rel + suffix)).astype(np.float64)
        C = mom.shape[1] // 2
        assert z.shape == (C, r.size[1] // f, r.size[0] // f), (rel, z.shape, r.size)
        mean, logvar = mom[k, :C], np.clip(mom[k, C:], -30, 20)
        eps = philox_normals(fnv1a(rel + suffix), 0xf17, z.size).reshape(z.shape)
        want = cfg["scale_factor"] * (mean + np.exp(0.5 * logvar) * eps)
        err = np.abs(z - want).max() / np.abs(want).max()
        assert err < 1e-4, (rel + suffix, err)
        worst = max(worst, err)
        eps_all.append(((z / cfg["scale_factor"] - mean) / np.exp(0.5 * logvar)).reshape(-1))
    return worst


def main():
    cmd = sys.argv[1]
    if cmd == "resize-table":
        with open(sys.argv[2], "w") as f:
            json.dump(resize_table(), f)
    elif cmd == "write-latents":
        write_latents(sys.argv[2])
    elif cmd == "check-converted":
        check_converted(sys.argv[2], sys.argv[3])
    elif cmd == "check-extracted":
        check_extracted(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]),
                        int(sys.argv[7]), *sys.argv[8:9], *map(int, sys.argv[9:10]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
