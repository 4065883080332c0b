"""FiTv2 and FiTv1 fixture cases for make_fixtures.py (the twin is fit_torch.py; docs/fit.md).

Network cases go through make_fixtures.make_case like the DiT family (same weight maker, forward and
backward in float64); this module adds their inputs, a self-check of the twin's grid handling, and the
RoPE-table fixture `fit_rope` that tests/unit/test_fit.cpp compares with the C++ tables.
"""

import torch

import fit_torch

# name, nnet (non-default FiT args; input_size an int or [height, width]), batch, seed
FIT_CASES = [
    # FiTv2's own choices at a tiny size: AdaLN-LoRA + global, LayerNorm qk-norm, timm SwiGLU, RoPE.
    ("fit_p2", dict(name="fitv2", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                    num_heads=4, adaln_lora_dim=16, num_classes=10), 3, 501),
    # The other switches: adaLN "normal", no qk-norm, the tanh-GELU Mlp, no qkv bias, no null class,
    # patch 1, head size 24, time_shifting 2 (and t > 1: the clamp).
    ("fit_p1_plain", dict(name="fitv2", input_size=4, patch_size=1, in_channels=3, hidden_size=48, depth=2,
                          num_heads=2, adaln_type="normal", q_norm=None, k_norm=None, use_swiglu=False,
                          qkv_bias=False, class_dropout_prob=0.0, num_classes=7, time_shifting=2), 2, 502),
    # A non-square grid (2 x 4 tokens), SwiGLU-large.
    ("fit_rect", dict(name="fitv2", input_size=[4, 8], patch_size=2, in_channels=4, hidden_size=64, depth=2,
                      num_heads=2, adaln_lora_dim=8, use_swiglu_large=True, num_classes=10), 2, 503),
    # Resolution extrapolation: 2 x 6 tokens from a 4-token training side, ntk-aware + decouple (the
    # official 160x320 recipe's scaling), and a square 6 x 6 with ntk-aware-pro2 (the 320x320 one).
    ("fit_rect_dynntk", dict(name="fitv2", input_size=[4, 12], patch_size=2, in_channels=4, hidden_size=64,
                             depth=2, num_heads=2, adaln_lora_dim=8, num_classes=10, custom_freqs="ntk-aware",
                             decouple=True, ori_max_pe_len=4), 2, 504),
    ("fit_ntkpro2", dict(name="fitv2", input_size=12, patch_size=2, in_channels=4, hidden_size=64, depth=1,
                         num_heads=2, adaln_lora_dim=8, num_classes=10, custom_freqs="ntk-aware-pro2",
                         decouple=True, ori_max_pe_len=4, k_norm=None), 2, 505),  # q-norm only
    # FiTv1 (config_fit_xl.yaml's choices: learned sigma = 2C outputs in the (B, C, N) ADM layout,
    # adaLN "normal", no qk-norm, SwiGLU-large, RoPE) on ADM timesteps, which FiT.forward clamps to 1.
    ("fitv1_p2", dict(name="fitv1", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                      num_heads=4, num_classes=10), 3, 507),
    # A non-square 3 x 2 grid, 3 channels (guidance would cover all eps channels), time_clamp false (the
    # timesteps reach the embedder as they are), without the null class.
    ("fitv1_rect", dict(name="fitv1", input_size=[6, 4], patch_size=2, in_channels=3, hidden_size=48, depth=2,
                        num_heads=2, num_classes=7, class_dropout_prob=0.0, time_clamp=False), 2, 508),
    # The official options no preset uses (docs/fit.md "Options"): LayerNorms of q and k with a weight,
    ("fit_qkw", dict(name="fitv2", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2,
                     num_heads=4, adaln_lora_dim=16, num_classes=10, qk_norm_weight=True), 3, 509),
    # SwiGLU modulations of c (k_norm spelled "w_layernorm", no q-norm),
    ("fit_ada_swiglu", dict(name="fitv2", input_size=[4, 8], patch_size=2, in_channels=4, hidden_size=64,
                            depth=2, num_heads=2, adaln_type="swiglu", num_classes=10, q_norm=None,
                            k_norm="w_layernorm"), 2, 510),
    # the same on FiTv1 without modulation biases,
    ("fitv1_ada_swiglu", dict(name="fitv1", input_size=8, patch_size=2, in_channels=4, hidden_size=48, depth=2,
                              num_heads=2, adaln_type="swiglu", adaln_bias=False, num_classes=10), 2, 511),
    # online RoPE (each sample's tables scaled for its own grid; here every sample has the network's).
    ("fit_online", dict(name="fitv2", input_size=[4, 12], patch_size=2, in_channels=4, hidden_size=64, depth=2,
                        num_heads=2, adaln_lora_dim=8, num_classes=10, custom_freqs="ntk-by-parts",
                        ori_max_pe_len=2, online_rope=True), 2, 512),
    # add_rel_pe_to_v: the RoPE rotates v too, here yarn-scaled (its mscale on cos and sin, v included)
    # on a 2 x 4 grid from a training side of 2;
    ("fit_rope_v", dict(name="fitv2", input_size=[4, 8], patch_size=2, in_channels=4, hidden_size=64, depth=2,
                        num_heads=2, adaln_lora_dim=8, num_classes=10, add_rel_pe_to_v=True, custom_freqs="yarn",
                        decouple=True, ori_max_pe_len=2), 2, 515),
    # RMSNorms with a weight everywhere (norm_type, q_norm and k_norm "w_rmsnorm": the in-place pair),
    ("fit_rms", dict(name="fitv2", input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=4,
                     adaln_lora_dim=16, num_classes=10, norm_type="w_rmsnorm", q_norm="w_rmsnorm",
                     k_norm="w_rmsnorm"), 3, 516),
    # mixed: weighted LayerNorms over D, an RMSNorm of q beside the parameter-free LayerNorm of k,
    ("fit_norm_mix", dict(name="fitv2", input_size=[4, 8], patch_size=2, in_channels=4, hidden_size=64, depth=2,
                          num_heads=2, adaln_type="swiglu", num_classes=10, norm_type="w_layernorm",
                          q_norm="w_rmsnorm", k_norm="layernorm"), 2, 517),
    # and norm_type "none" (Identity before every modulation), no q-norm, an RMSNorm of k, on FiTv1.
    ("fitv1_norm_none", dict(name="fitv1", input_size=8, patch_size=2, in_channels=4, hidden_size=48, depth=2,
                             num_heads=2, num_classes=10, norm_type=None, k_norm="w_rmsnorm",
                             add_rel_pe_to_v=True), 2, 518),
]

TIME_VALUES = [0.25, 1.02, 0.6]  # flow time; 1.02 as dopri5 may ask past t = 1 (FiT clamps at 1)
ADM_TIME_VALUES = [0.5, 999.0, 250.0]  # FiTv1: ADM timesteps (the clamp leaves 0.5, 1, 1)

# RoPE tables: (custom_freqs, grid h, grid w, head_dim, decouple, ori_max_pe_len, max_pe_len_h, _w)
ROPE_CASES = [
    ("normal", 3, 5, 16, False, 0, 0, 0),
    ("linear", 4, 6, 16, False, 2, 0, 0),
    ("ntk-aware", 10, 20, 72, True, 16, 0, 0),
    ("ntk-aware", 20, 20, 72, False, 16, 0, 0),
    ("ntk-aware-pro1", 6, 4, 24, True, 4, 0, 0),
    ("ntk-aware-pro2", 20, 20, 72, True, 16, 0, 0),
    ("ntk-aware-pro2", 16, 16, 72, True, 16, 0, 0),
    ("ntk-by-parts", 12, 9, 72, False, 4, 0, 0),
    ("yarn", 8, 30, 72, True, 4, 0, 0),
    ("ntk-aware", 4, 4, 16, True, 4, 10, 20),  # explicit max_pe_len_h/w
]


def make_inputs(cfg, batch, seed):
    g = torch.Generator().manual_seed(seed + 104729)
    H, W = fit_torch.input_hw(cfg)
    C = cfg["in_channels"]
    inp = {"x": torch.randn(batch, C, H, W, generator=g)}
    tv = ADM_TIME_VALUES if cfg["name"] == "fitv1" else TIME_VALUES
    inp["t"] = torch.tensor([tv[i % len(tv)] for i in range(batch)], dtype=torch.float32)
    y = torch.randint(0, cfg["num_classes"], (batch,), generator=g, dtype=torch.int64)
    if cfg["class_dropout_prob"] > 0:
        y[-1] = cfg["num_classes"]
    inp["y"] = y
    inp["gout"] = torch.randn(batch, 2 * C if cfg["learn_sigma"] else C, H, W, generator=g)
    return inp


def check_twin(name, tensors, cfg):
    """The packed-sequence interface agrees with the image one when the tokens (and their grid) are
    shuffled, and a padding token changes nothing for the others: the grid and the mask work."""
    net = fit_torch.build_from_config(cfg).net.double()
    sd = {k[len("param."):]: torch.from_numpy(v).double() for k, v in tensors.items() if k.startswith("param.")}
    net.load_state_dict(sd)
    x = torch.from_numpy(tensors["input.x"]).double()
    t = torch.from_numpy(tensors["input.t"])
    y = torch.from_numpy(tensors["input.y"])
    B, C, H, W = x.shape
    p = cfg["patch_size"]
    gh, gw = H // p, W // p
    tok, grid = fit_torch.patchify(x, p), fit_torch.make_grid(B, gh, gw)
    perm = torch.randperm(gh * gw, generator=torch.Generator().manual_seed(7))
    size = torch.tensor([[gh, gw]] * B)
    with torch.no_grad():
        out = net.tokens(tok[:, perm], t, y, grid[:, :, perm], torch.ones(B, gh * gw, dtype=torch.float64), size)
        ref = torch.from_numpy(tensors["output"]).double()
        want = fit_torch.patchify(ref, p)[:, perm]
        d1 = (out - want).abs().max().item()
        # One padding token appended (its grid entry 0, 0): the real tokens' outputs do not change.
        pad_tok = torch.cat([tok, torch.randn(B, 1, tok.shape[2], dtype=torch.float64)], 1)
        pad_grid = torch.cat([grid, torch.zeros(B, 2, 1, dtype=grid.dtype)], 2)
        mask = torch.cat([torch.ones(B, gh * gw), torch.zeros(B, 1)], 1).double()
        outp = net.tokens(pad_tok, t, y, pad_grid, mask, size)
        d2 = (outp[:, :-1] - fit_torch.patchify(ref, p)).abs().max().item() + outp[:, -1].abs().max().item()
    scale = max(1.0, ref.abs().max().item())
    good = d1 < 1e-6 * scale and d2 < 1e-6 * scale
    print("self-check %-18s shuffled tokens max|diff|=%.1e, padded %.1e: %s" % (name, d1, d2,
                                                                              "ok" if good else "FAIL"))
    return good


def check_cfg_channels():
    """forward_with_cfg guides the first 3 p^2 features of each (c, p1, p2) token (FiTv2: the last axis of
    (B, N, C); FiTv1: the channel axis of (B, C, N), whose 2C output channels are eps then the variance
    values); after unpatchify that is image channels 0..2, which is what the engine's 3-channel guidance
    (NetSpec::guidance_channels) combines."""
    torch.manual_seed(0)
    good = True
    for name, C in (("fitv2", 4), ("fitv1", 8)):
        p, gh, gw, B = 2, 2, 3, 2
        cond, uncond = torch.randn(B, gh * gw, p * p * C), torch.randn(B, gh * gw, p * p * C)
        k = 3 * p * p
        if name == "fitv2":
            tok = torch.cat([uncond[..., :k] + 1.5 * (cond[..., :k] - uncond[..., :k]), cond[..., k:]], -1)
        else:  # the official slices model_out[:, :C_cfg] of (B, C, N)
            cc, uc = cond.transpose(1, 2), uncond.transpose(1, 2)
            tok = torch.cat([uc[:, :k] + 1.5 * (cc[:, :k] - uc[:, :k]), cc[:, k:]], 1).transpose(1, 2)
        ci, ui = (fit_torch.unpatchify(v, C, p, gh, gw) for v in (cond, uncond))
        img = torch.cat([ui[:, :3] + 1.5 * (ci[:, :3] - ui[:, :3]), ci[:, 3:]], 1)
        ok = torch.equal(fit_torch.unpatchify(tok, C, p, gh, gw), img)
        good &= ok
        print("self-check %s guidance on 3 p^2 token features == on image channels 0..2: %s"
              % (name, "ok" if ok else "FAIL"))
    return good


def check_counts():
    """FiTv2-XL/2 and 3B/2 state_dict sizes (README: 671M; spec: 517 / 573 tensors), FiTv1-XL/2's
    (README: 824M)."""
    ok = check_cfg_channels()
    for size, want in (("xl", (517, 671045776)), ("3b", (573, 2971928080)), ("v1_xl", (347, 823599392))):
        got = fit_torch.count(fit_torch.preset(size))
        ok &= got == want
        print("self-check fit_%s %d tensors, %d params: %s" % (size, got[0], got[1],
                                                                "ok" if got == want else "FAIL"))
    return ok


def write_rope_fixture(path, write_safetensors):
    """Each ROPE_CASES row's cos and sin [gh*gw, head_dim] as the twin's module builds them."""
    tensors = {}
    for i, (kind, gh, gw, dh, dec, ori, ph, pw) in enumerate(ROPE_CASES):
        rope = fit_torch.Rope(dh, kind, 10000.0, ph or gh, pw or gw, dec, ori or None)
        cos, sin = rope.tables(fit_torch.make_grid(1, gh, gw))
        tensors["case%d.cos" % i] = cos[0].contiguous().numpy()
        tensors["case%d.sin" % i] = sin[0].contiguous().numpy()
    meta = {"case%d" % i: ",".join(str(v) for v in c) for i, c in enumerate(ROPE_CASES)}
    meta["producer"] = "tests/reference/fit_fixtures.py"
    write_safetensors(path, tensors, meta)
    print("fit_rope: %d table pairs" % len(ROPE_CASES))
    return True


# A packed batch (the official training interface): three images of different grids on one 6 x 8
# canvas, their valid tokens first in sequences of context_size 9 with zero padding, grid 0 and
# mask 0 after them. Sample 0 is 4 x 8 (2 x 4 tokens), sample 1 6 x 6 (3 x 3), sample 2 2 x 2 (one
# token). The RoPE is ntk-aware + decouple from a training side of 2, so each token's table row comes
# from the module built once for the canvas grid (max_pe_len 3 x 4) and indexed by its grid entry.
PACKED_CASES = [
    ("fit_packed", dict(name="fitv2", input_size=[6, 8], context_size=9, patch_size=2, in_channels=4,
                        hidden_size=64, depth=2, num_heads=4, adaln_lora_dim=16, num_classes=10,
                        custom_freqs="ntk-aware", decouple=True, ori_max_pe_len=2),
     [[4, 8], [6, 6], [2, 2]], 506),
    # FiTv1 (learned sigma, the (B, C, N) layout) on the same kind of batch.
    ("fitv1_packed", dict(name="fitv1", input_size=[6, 8], context_size=9, patch_size=2, in_channels=4,
                          hidden_size=64, depth=2, num_heads=4, num_classes=10, custom_freqs="ntk-aware",
                          decouple=True, ori_max_pe_len=2),
     [[4, 8], [6, 6], [2, 2]], 513),
    # online_rope: each sample's RoPE scaled for its own grid (2 x 4, 3 x 3, 1 x 3 tokens from 2).
    ("fit_packed_online", dict(name="fitv2", input_size=[6, 8], context_size=9, patch_size=2, in_channels=4,
                               hidden_size=64, depth=2, num_heads=4, adaln_lora_dim=16, num_classes=10,
                               custom_freqs="ntk-aware", decouple=True, ori_max_pe_len=2, online_rope=True),
     [[4, 8], [6, 6], [2, 6]], 514),
    # add_rel_pe_to_v and RMSNorms on a packed batch (each token's RoPE row rotates its v).
    ("fit_packed_rope_v", dict(name="fitv2", input_size=[6, 8], context_size=9, patch_size=2, in_channels=4,
                               hidden_size=64, depth=2, num_heads=4, adaln_lora_dim=16, num_classes=10,
                               custom_freqs="ntk-aware", decouple=True, ori_max_pe_len=2, add_rel_pe_to_v=True,
                               norm_type="w_rmsnorm", q_norm="w_rmsnorm", k_norm="w_rmsnorm"),
     [[4, 8], [6, 6], [2, 2]], 519),
]


def packed_run(net, x, t, y, sizes, p, seq, gout=None):
    """Packs the valid regions, runs FiT.forward with grid and mask, returns the outputs put back on
    the canvas (zeros elsewhere); with gout, backward of sum(out * gout) too."""
    B, C = x.shape[:2]
    Co = net.out_channels
    tok = torch.zeros(B, seq, C * p * p, dtype=x.dtype)
    grid = torch.zeros(B, 2, seq, dtype=torch.int64)
    mask = torch.zeros(B, seq, dtype=x.dtype)
    size = torch.tensor([[h // p, w // p] for h, w in sizes])
    for b, (h, w) in enumerate(sizes):
        n = (h // p) * (w // p)
        tok[b, :n] = fit_torch.patchify(x[b:b + 1, :, :h, :w], p)[0]
        grid[b, :, :n] = fit_torch.make_grid(1, h // p, w // p)[0]
        mask[b, :n] = 1
    out = net.tokens(tok, t, y, grid, mask, size)
    img = torch.zeros(B, Co, *x.shape[2:], dtype=x.dtype)
    for b, (h, w) in enumerate(sizes):
        n = (h // p) * (w // p)
        img[b, :, :h, :w] = fit_torch.unpatchify(out[b:b + 1, :n], Co, p, h // p, w // p)[0]
    if gout is not None:
        (img * gout).sum().backward()
    return img, out, mask


def write_packed_case(case, outdir, make_weights, write_safetensors, atomic_json):
    name, partial, sizes, seed = case
    cfg = fit_torch.full_config(partial)
    torch.manual_seed(seed)
    image = fit_torch.build_from_config(cfg)
    make_weights(image, seed)
    net = image.net.double()
    g = torch.Generator().manual_seed(seed + 104729)
    H, W = fit_torch.input_hw(cfg)
    C, p, B = cfg["in_channels"], cfg["patch_size"], len(sizes)
    x = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    t = torch.tensor([TIME_VALUES[i % len(TIME_VALUES)] for i in range(B)], dtype=torch.float32)
    y = torch.randint(0, cfg["num_classes"], (B,), generator=g, dtype=torch.int64)
    y[-1] = cfg["num_classes"]
    gout = torch.randn(B, net.out_channels, H, W, generator=g, dtype=torch.float64)
    img, out, mask = packed_run(net, x, t, y, sizes, p, cfg["context_size"], gout)
    grads = {n: (q.grad if q.grad is not None else torch.zeros_like(q)) for n, q in net.named_parameters()}
    # Self-check: every sample alone, unpadded, through the image interface gives its valid region.
    good = out[mask == 0].abs().max().item() == 0
    with torch.no_grad():
        for b, (h, w) in enumerate(sizes):
            alone, _, _ = packed_run(net, x[b:b + 1, :, :h, :w].contiguous(), t[b:b + 1], y[b:b + 1], [[h, w]],
                                     p, (h // p) * (w // p))
            good &= (alone[0] - img[b, :, :h, :w]).abs().max().item() < 1e-12
    print("self-check %-18s packed == each sample alone, padding zero: %s" % (name, "ok" if good else "FAIL"))
    f32 = lambda v: v.detach().to(torch.float32).contiguous().numpy()  # noqa: E731
    tensors = {"input.x": f32(x), "input.t": f32(t), "input.y": y.numpy().astype("int64"),
               "input.sizes": torch.tensor(sizes, dtype=torch.int64).numpy(), "input.gout": f32(gout),
               "output": f32(img)}
    for pname, v in net.state_dict().items():
        tensors["param." + pname] = f32(v)
        tensors["grad." + pname] = f32(grads[pname]) if pname in grads else f32(torch.zeros_like(v))
    atomic_json(name, cfg)
    write_safetensors("%s/%s.safetensors" % (outdir, name), tensors,
                      {"case": name, "producer": "tests/reference/fit_fixtures.py"})
    print("%-18s B=%d sizes=%s sequence=%d" % (name, B, sizes, cfg["context_size"]))
    return good
