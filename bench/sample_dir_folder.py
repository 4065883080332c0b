# N copies of a ~150 KB PNG (IHDR 256x256, an IDAT of incompressible bytes) carrying the text
# chunks of TEMPLATE.png, its uvit-params record's index set to each file's: a --dir folder that
# `uvit sample` resumes with nothing to draw (bench/sample_dir_scan.sh).
# Usage: python3 bench/sample_dir_folder.py TEMPLATE.png DIR N
import json, os, random, struct, sys, zlib
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
b = open(sys.argv[1], "rb").read()
pos, texts = 8, []
while pos < len(b):
    n, t = struct.unpack(">I", b[pos:pos + 4])[0], b[pos + 4:pos + 8]
    if t == b"tEXt" or t == b"iTXt": texts.append((t, b[pos + 8:pos + 8 + n]))
    pos += 12 + n
rng = random.Random(0)
idat = chunk(b"IDAT", bytes(rng.getrandbits(8) for _ in range(150_000)))
head = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 256, 256, 8, 2, 0, 0, 0))
os.makedirs(sys.argv[2])
for i in range(int(sys.argv[3])):
    out = head
    for t, d in texts:
        if d.startswith(b"uvit-params\0"):
            rec = json.loads(d[12:]); rec["index"] = i
            d = b"uvit-params\0" + json.dumps(rec, separators=(",", ":")).encode()
        out += chunk(t, d)
    open(os.path.join(sys.argv[2], "%06d.png" % i), "wb").write(out + idat + chunk(b"IEND", b""))
