"""Writes the .pth inputs of tests/unit/test_io.cpp with torch.save into the directory argv[1].

Values are chosen to be exact in every dtype so the C++ test can recompute them: v(i) = i*0.25 - 3.
"""
import argparse
import collections
import os
import sys

import torch

out = sys.argv[1]


def ar(n, dtype=torch.float32):
    return (torch.arange(n, dtype=torch.float32) * 0.25 - 3).to(dtype)


big = ar(24).reshape(4, 6)  # one storage shared by the views below
sd = collections.OrderedDict()
sd["f32"] = ar(12).reshape(3, 4)
sd["f16"] = ar(6, torch.float16).reshape(2, 3)
sd["bf16"] = ar(5, torch.bfloat16)
sd["f64"] = ar(4, torch.float64).reshape(2, 2)
sd["i64"] = torch.arange(-3, 3, dtype=torch.int64)
sd["i32"] = torch.arange(-2, 2, dtype=torch.int32)
sd["u8"] = torch.arange(250, 256, dtype=torch.int64).to(torch.uint8)
sd["bool"] = torch.tensor([True, False, True])
sd["transposed"] = big.t()  # (6, 4), strides (1, 6)
sd["slice"] = big.view(-1)[5:11]  # offset 5
sd["row"] = big[1]  # offset 6
sd["col"] = big[:, 2]  # offset 2, stride 6
sd["scalar"] = torch.tensor(2.5)
sd["empty"] = torch.zeros(0, 3)
torch.save(sd, os.path.join(out, "sd.pth"))
torch.save({"epoch": 7, "state_dict": sd, "note": "x"}, os.path.join(out, "nested.pth"))

lin = torch.nn.Linear(3, 2)
with torch.no_grad():
    lin.weight.copy_(ar(6).reshape(2, 3))
    lin.bias.copy_(ar(2))
torch.save(lin.state_dict(), os.path.join(out, "linear.pth"))  # has _metadata (BUILD)
torch.save({"w": torch.nn.Parameter(ar(4))}, os.path.join(out, "param.pth"))
torch.save({"model": {"a": ar(3)}}, os.path.join(out, "model.pth"))
torch.save(sd, os.path.join(out, "proto4.pth"), pickle_protocol=4)
torch.save({"w": ar(3)}, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)

# A DiT / Skip-DiT train.py checkpoint: {"model", "ema", "opt", "args"} with AdamW state (an int-keyed
# "state" dict, 0-d "step" tensors, floats, tuples, None) and an argparse.Namespace. "ema" holds the
# `lin` values, "model" other ones, so the test sees which entry was read.
model = torch.nn.Linear(3, 2)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0)
model(torch.ones(1, 3)).sum().backward()
opt.step()
args = argparse.Namespace(model="DiT-XL/2", image_size=256, num_classes=1000, vae="ema", ckpt="")
torch.save({"model": model.state_dict(), "ema": lin.state_dict(), "opt": opt.state_dict(), "args": args},
           os.path.join(out, "train.pt"))
# An "ema" entry without tensors (an EMA helper's bookkeeping) falls back to "model".
torch.save({"ema": {"decay": 0.9999, "num_updates": 3}, "model": {"a": ar(3)}},
           os.path.join(out, "ema_meta.pt"))
# torch.save(ddp_model.state_dict()): every name starts with "module.".
torch.save(collections.OrderedDict(("module." + k, v) for k, v in lin.state_dict().items()),
           os.path.join(out, "ddp.pth"))
torch.save({"module.a": ar(3), "b": ar(2)}, os.path.join(out, "some_module.pth"))
