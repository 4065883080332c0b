"""Seeds of fuzz_feature_npy and fuzz_latent_stats from numpy and PyTorch (tests/fuzz/run.sh):
make_reader_seeds.py DIR writes DIR/feature_npy/ (byte 0 + an official-style feature .npy: np.save
of the object array (moments, label); byte 1 + its pickle alone) and DIR/latent_stats/ (byte 1 or
3 + LightningDiT's latents_stats.pt: torch.save({"mean", "std"}) of [1, C, 1, 1])."""
import io
import os
import sys

import numpy as np
import torch

d = sys.argv[1]
os.makedirs(f"{d}/feature_npy", exist_ok=True)
os.makedirs(f"{d}/latent_stats", exist_ok=True)
rng = np.random.default_rng(0)
for name, moments, label in [("f32", rng.standard_normal((8, 4, 4)).astype(np.float32), 207),
                             ("f16", rng.standard_normal((2, 2, 2)).astype(np.float16), np.int64(3))]:
    buf = io.BytesIO()
    np.save(buf, np.array([moments, label], dtype=object), allow_pickle=True)
    data = buf.getvalue()
    with open(f"{d}/feature_npy/{name}", "wb") as f:
        f.write(b"\0" + data)
    header_end = data.index(b"\n") + 1  # the pickle follows the header line
    with open(f"{d}/feature_npy/{name}.pkl", "wb") as f:
        f.write(b"\1" + data[header_end:])
for c, flag in [(4, 3), (32, 1)]:
    buf = io.BytesIO()
    torch.save({"mean": torch.randn(1, c, 1, 1), "std": torch.rand(1, c, 1, 1) + 0.5}, buf)
    with open(f"{d}/latent_stats/pt_{c}", "wb") as f:
        f.write(bytes([flag]) + buf.getvalue())
