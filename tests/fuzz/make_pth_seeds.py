"""Wrapped-pickle seeds of fuzz_pth (tests/fuzz/fuzz_pth.cpp) from torch.save archives:
make_pth_seeds.py DIR writes DIR/NAME.pkl for every DIR/NAME.pth|.pt: byte 1, the storage count,
each storage's key and byte size, then the archive's data.pkl."""
import os
import struct
import sys
import zipfile

d = sys.argv[1]
for name in sorted(os.listdir(d)):
    if not name.endswith((".pth", ".pt")):
        continue
    try:
        z = zipfile.ZipFile(os.path.join(d, name))
    except zipfile.BadZipFile:
        continue  # the legacy-format seed
    pkl = [n for n in z.namelist() if n.endswith("/data.pkl")]
    if not pkl:
        continue
    prefix = pkl[0][: -len("data.pkl")]
    storages = [n for n in z.namelist() if n.startswith(prefix + "data/")]
    out = bytes([1, len(storages)])
    for s in storages:
        key = s[len(prefix + "data/"):].encode()
        out += bytes([len(key)]) + key + struct.pack("<H", min(z.getinfo(s).file_size, 65535))
    out += z.read(pkl[0])
    with open(os.path.join(d, os.path.splitext(name)[0] + ".pkl"), "wb") as f:
        f.write(out)
