"""An ImageNet-style folder of generated PNGs: image_folder.py ROOT NAME:WxH...

NAME is SYNSET_ID (n01_a goes to ROOT/n01/n01_a.png); each image is smooth gradients plus noise
(something a bicubic resize has to work on), drawn in order from RandomState(0), so a list gives
the same bytes each run.
"""
import os
import sys

import numpy as np
from PIL import Image

root = sys.argv[1]
rs = np.random.RandomState(0)
for arg in sys.argv[2:]:
    name, size = arg.split(":")
    w, h = (int(v) for v in size.split("x"))
    d = os.path.join(root, name.split("_")[0])
    os.makedirs(d, exist_ok=True)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    img = np.clip(base + rs.randint(-40, 40, size=(h, w, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(img).save(os.path.join(d, name + ".png"))
