#!/usr/bin/python3
"""Writes the official-layout state_dict of a preset's PyTorch twin at its random initialisation
(torch.manual_seed(0)) as a .pth: weights for start-up and memory measurements without a download.
Usage: bench/random_weights.py CONFIG.json OUT.pth"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)) + "/../tests/reference")
from bench_torch import load_net_config  # noqa: E402

cfg, out = sys.argv[1:3]
torch.manual_seed(0)
cls, kw, _ = load_net_config(cfg)
torch.save(cls(**kw).state_dict(), out)
