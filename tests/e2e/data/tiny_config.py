#!/usr/bin/python3
"""Writes the tiny end-to-end test preset (a class-conditional U-ViT on Fashion-MNIST whose
training step takes milliseconds) with overrides: tiny_config.py OUT.json [dotted.key=JSON ...]"""
import json
import sys

BASE = {
    "name": "tiny_e2e", "schedule": "continuous_vp", "ema_rate": 0.9, "seed": 7, "pred": "noise_pred",
    "train": {"n_steps": 100, "batch_size": 8, "mode": "cond", "log_interval": 2, "eval_interval": 1000,
              "save_interval": 1000, "accum": 1, "keep_snapshots": 3},
    "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.03, "betas": [0.9, 0.999], "eps": 1e-08},
    "lr_scheduler": {"name": "customized", "warmup_steps": 3},
    "nnet": {"name": "uvit", "img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32, "depth": 2,
             "num_heads": 2, "mlp_ratio": 2.0, "qkv_bias": False, "qk_scale": None,
             "mlp_time_embed": False, "num_classes": 11, "use_checkpoint": False, "conv": True,
             "skip": True},
    "dataset": {"name": "fashion_mnist", "path": "/usr/share/datasets/fashion-mnist",
                "random_flip": False, "cfg": True, "p_uncond": 0.1},
    "sample": {"sample_steps": 4, "n_samples": 20, "mini_batch_size": 50, "algorithm": "dpm_solver",
               "cfg": True, "scale": 1.0, "path": ""},
    "grad_clip": 0.0,
}

out = BASE
for kv in sys.argv[2:]:
    key, value = kv.split("=", 1)
    *path, last = key.split(".")
    node = out
    for p in path:
        node = node[p]
    node[last] = json.loads(value)
with open(sys.argv[1], "w") as f:
    json.dump(out, f, indent=1)
