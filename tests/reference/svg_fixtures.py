"""SVG fixture cases for make_fixtures.py (the twin is svg_torch.py; docs/svg.md).

Network cases go through make_fixtures.make_case like the DiT family (same weight maker, forward and
backward in float64); this module adds their inputs: feature maps, flow times in [0, 1] and a
velocity-sized output gradient (the network returns the first C of the head's 2C channels).
"""

import torch

# name, nnet (non-default SVG args), batch, seed
SVG_CASES = [
    # SVG's own choices at a tiny size: affine LayerNorm qk-norm, learn_sigma (first half kept).
    ("svg_qknorm_sigma", dict(name="svg", input_size=4, in_channels=6, hidden_size=64, depth=2, num_heads=4,
                              num_classes=10), 3, 601),
    # qk-norm off, learn_sigma off, no null class, head size 24, mlp_ratio 2, an odd channel count.
    ("svg_plain", dict(name="svg", input_size=3, in_channels=5, hidden_size=48, depth=3, num_heads=2,
                       mlp_ratio=2.0, num_classes=7, class_dropout_prob=0.0, learn_sigma=False, qk_norm=False),
     2, 602),
]

TIME_VALUES = [0.25, 0.9, 0.03]  # flow time in [0, 1] (RectifiedFlow feeds t unscaled)


def make_inputs(cfg, batch, seed):
    g = torch.Generator().manual_seed(seed + 104729)
    S, C = cfg["input_size"], cfg["in_channels"]
    inp = {"x": torch.randn(batch, C, S, S, generator=g)}
    inp["t"] = torch.tensor([TIME_VALUES[i % len(TIME_VALUES)] for i in range(batch)], dtype=torch.float32)
    y = torch.randint(0, cfg["num_classes"], (batch,), generator=g, dtype=torch.int64)
    if cfg["class_dropout_prob"] > 0:
        y[-1] = cfg["num_classes"]
    inp["y"] = y
    inp["gout"] = torch.randn(batch, C, S, S, generator=g)
    return inp
