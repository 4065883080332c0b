"""A folder run that meets a damaged image mid-training: damaged_folder.py OUT.

Writes OUT/good/0..7.png (32x32 noise), OUT/cut.png (good/1.png cut in half: its header passes
the walk's checks, its pixels fail when drawn) and OUT/folder.json (fmnist_uvit_tiny on an
unconditional RGB image folder, no periodic checkpoint, a log row every step).
"""
import json
import os
import sys

import numpy as np
from PIL import Image

t = sys.argv[1]
rs = np.random.RandomState(0)
os.makedirs(t + "/good")
for i in range(8):
    Image.fromarray(rs.randint(0, 256, (32, 32, 3)).astype(np.uint8)).save(f"{t}/good/{i}.png")
png = open(t + "/good/1.png", "rb").read()
open(t + "/cut.png", "wb").write(png[: len(png) // 2])
c = json.load(open("configs/fmnist_uvit_tiny.json"))
c["nnet"].update(in_chans=3, num_classes=0)
c["train"].update(mode="uncond", save_interval=1000, log_interval=1)
c["sample"].update(cfg=False, scale=0)
c["name"], c["dataset"] = "folder_uvit", {"name": "image_folder", "resolution": 28, "random_flip": False}
json.dump(c, open(t + "/folder.json", "w"))
