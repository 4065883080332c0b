"""DiffiT fixture cases for make_fixtures.py (the twin is diffit_torch.py; docs/diffit.md).

Network cases go through make_fixtures.make_case like the DiT family (same weight and input makers,
forward and backward in float64); diffit_torch.randomize then makes the relative bias tables visible.
"""

import diffit_torch

# name, nnet (non-default DiffiT args), batch, seed
DIFFIT_CASES = [
    # The XL/2 choices at a tiny size: patch 2, learn_sigma (8 outputs, guidance on 3), a null class.
    ("diffit_p2", dict(name="diffit", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                       num_heads=2, num_classes=10), 3, 701),
    # An odd 3 x 3 grid, head size 12, mlp_ratio 2, no learn_sigma, no null class.
    ("diffit_odd_nosigma", dict(name="diffit", input_size=12, patch_size=4, in_channels=3, hidden_size=48,
                                depth=3, num_heads=4, mlp_ratio=2.0, num_classes=7, class_dropout_prob=0.0,
                                learn_sigma=False), 2, 702),
]


def check_counts():
    """DiffiT-XL/2's state_dict (the int64 index buffers included: 28 x 256^2) and its key order."""
    n, p = diffit_torch.count(diffit_torch.XL_2)
    ok = (n, p) == (346, 563165152)
    print("self-check %-18s %d tensors, %d params: %s" % ("DiffiT-XL/2", n, p, "ok" if ok else "FAIL"))
    with diffit_torch.on_meta():
        keys = list(diffit_torch.build_from_config(dict(diffit_torch.XL_2, depth=1)).state_dict().keys())
    want = ["pos_embed", "x_embedder.proj.weight", "x_embedder.proj.bias", "t_embedder.mlp.0.weight",
            "t_embedder.mlp.0.bias", "t_embedder.mlp.2.weight", "t_embedder.mlp.2.bias",
            "y_embedder.embedding_table.weight", "blocks.0.attn.relative_position_bias_table",
            "blocks.0.attn.relative_position_index", "blocks.0.attn.qkv_temb.weight", "blocks.0.attn.qkv_temb.bias",
            "blocks.0.attn.qkv.weight", "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight",
            "blocks.0.attn.proj.bias", "blocks.0.mlp.fc1.weight", "blocks.0.mlp.fc1.bias", "blocks.0.mlp.fc2.weight",
            "blocks.0.mlp.fc2.bias", "final_layer.linear.weight", "final_layer.linear.bias"]
    good = keys == want
    print("self-check DiffiT key order: %s" % ("ok" if good else "FAIL %s" % keys))
    return ok and good
