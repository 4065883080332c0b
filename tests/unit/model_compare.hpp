// Shared pieces of the whole-network comparisons between backends or precisions
// (test_cuda_model.cpp: CUDA vs CPU; test_cpu_bf16.cpp: the CPU's bf16 mode vs its fp32 mode):
// small configurations of every network family, one forward/backward run, error measures, and a
// short training run.
#pragma once
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rel_err.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/model.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"
#include "uvit/train.hpp"

namespace uvit::test {

namespace model_compare_fs = std::filesystem;

// Small configurations that still exercise every path: class-conditional with the conv head and
// a 72-wide head (the U-ViT-H head size), text-to-image, and unconditional with mlp_time_embed.
inline const char* kConfigs[] = {
    R"({"name": "c1", "nnet": {"name": "uvit", "img_size": 16, "patch_size": 2, "in_chans": 3,
        "embed_dim": 144, "depth": 4, "num_heads": 2, "mlp_ratio": 4, "qkv_bias": false,
        "mlp_time_embed": false, "num_classes": 11, "conv": true}})",
    R"({"name": "t2i", "nnet": {"name": "uvit_t2i", "img_size": 8, "patch_size": 2, "in_chans": 4,
        "embed_dim": 128, "depth": 2, "num_heads": 2, "mlp_ratio": 4, "qkv_bias": false,
        "mlp_time_embed": false, "clip_dim": 48, "num_clip_token": 7, "conv": false}})",
    R"({"name": "u", "nnet": {"name": "uvit", "img_size": 16, "patch_size": 4, "in_chans": 3,
        "embed_dim": 64, "depth": 2, "num_heads": 2, "mlp_ratio": 4, "qkv_bias": true,
        "mlp_time_embed": true, "num_classes": 0, "conv": true}})",
    // DiT with a learned variance and a 72-wide head; Skip-DiT with its skip fusions.
    R"({"name": "dit", "nnet": {"name": "dit", "input_size": 16, "patch_size": 2,
        "in_channels": 4, "hidden_size": 144, "depth": 3, "num_heads": 2, "num_classes": 10}})",
    R"({"name": "skip_dit", "nnet": {"name": "skip_dit", "input_size": 8, "patch_size": 2,
        "in_channels": 3, "hidden_size": 128, "depth": 4, "num_heads": 2, "num_classes": 5,
        "learn_sigma": false}})",
    // LightningDiT: RMSNorm, SwiGLU, qk-norm and RoPE on a 72-wide head (XL/1's), patch 1, learned
    // sigma dropped; and the plain pieces with wo_shift.
    R"({"name": "ldit", "nnet": {"name": "lightningdit", "input_size": 8, "patch_size": 1,
        "in_channels": 4, "hidden_size": 144, "depth": 3, "num_heads": 2, "num_classes": 10,
        "learn_sigma": true, "use_qknorm": true, "use_swiglu": true, "use_rope": true,
        "use_rmsnorm": true}})",
    R"({"name": "ldit_ws", "nnet": {"name": "lightningdit", "input_size": 8, "patch_size": 2,
        "in_channels": 3, "hidden_size": 64, "depth": 2, "num_heads": 2, "num_classes": 5,
        "wo_shift": true, "use_rope": true}})",
    // U-ViT's ablation variants with new code paths: adaLN time (no time token) and the
    // convolutional patch embedding (two strided 3x3 convs).
    R"({"name": "uvit_adaln_convstack", "nnet": {"name": "uvit", "img_size": 16, "patch_size": 4,
        "in_chans": 3, "embed_dim": 64, "depth": 2, "num_heads": 2, "num_classes": 10,
        "time_cond": "adaln", "patch_embed": "conv_stack", "mlp_time_embed": true}})",
    // MDTv2: the relative position bias in every attention, en_in/en_out/de blocks with skip
    // linears (eval pass; the masked pass is tested against the twin on the CPU).
    R"({"name": "mdt", "nnet": {"name": "mdt", "input_size": 8, "patch_size": 2,
        "in_channels": 4, "hidden_size": 128, "depth": 5, "num_heads": 2, "num_classes": 10,
        "decode_layer": 1, "mask_ratio": 0.3}})",
    // FiTv2 (docs/fit.md): AdaLN-LoRA + global, LayerNorm qk-norm, split SwiGLU and RoPE on a
    // 72-wide head over a non-square 4 x 8 token grid; and the ntk-aware-pro2 scaled RoPE with
    // adaLN "normal" and the tanh-GELU MLP.
    R"({"name": "fit_rect", "nnet": {"name": "fitv2", "input_size": [8, 16], "patch_size": 2,
        "in_channels": 4, "hidden_size": 144, "depth": 2, "num_heads": 2, "num_classes": 10,
        "adaln_lora_dim": 24}})",
    R"({"name": "fit_ntk", "nnet": {"name": "fitv2", "input_size": 12, "patch_size": 2,
        "in_channels": 4, "hidden_size": 64, "depth": 2, "num_heads": 2, "num_classes": 5,
        "adaln_type": "normal", "use_swiglu": false, "custom_freqs": "ntk-aware-pro2",
        "decouple": true, "ori_max_pe_len": 4}})",
    // FiT's official options (docs/fit.md "Options"): SwiGLU modulations of c, q/k LayerNorms with
    // a weight, online RoPE (ntk-aware from 4).
    R"({"name": "fit_opts", "nnet": {"name": "fitv2", "input_size": [8, 16], "patch_size": 2,
        "in_channels": 4, "hidden_size": 144, "depth": 2, "num_heads": 2, "num_classes": 10,
        "adaln_type": "swiglu", "qk_norm_weight": true, "ori_max_pe_len": 4,
        "custom_freqs": "ntk-aware", "online_rope": true}})",
    // and the norms and add_rel_pe_to_v: RMSNorms over D, an RMSNorm of q beside the
    // parameter-free LayerNorm of k (the gathered qk-norm path), RoPE on v.
    R"({"name": "fit_norms", "nnet": {"name": "fitv2", "input_size": [8, 16], "patch_size": 2,
        "in_channels": 4, "hidden_size": 144, "depth": 2, "num_heads": 2, "num_classes": 10,
        "adaln_lora_dim": 24, "norm_type": "w_rmsnorm", "q_norm": "w_rmsnorm",
        "add_rel_pe_to_v": true}})",
    // SVG (docs/svg.md): per-token ln1, the affine LayerNorm qk-norm on a 72-wide head, learned
    // sigma dropped.
    R"({"name": "svg", "nnet": {"name": "svg", "input_size": 8, "in_channels": 12,
        "hidden_size": 144, "depth": 2, "num_heads": 2, "num_classes": 10}})",
    // LaVin-DiT (docs/lavin_dit.md): two streams, GQA 4 q / 2 kv heads, the 3-D NeoX RoPE on a
    // 36-wide head (sections of 12), 3 conditioning frames.
    R"({"name": "lavin", "nnet": {"name": "lavin_dit", "input_size": 8, "num_frames": 3,
        "patch_size": 2, "in_channels": 4, "hidden_size": 144, "depth": 2, "num_heads": 4,
        "kv_group": 2}})",
    // DiffiT (docs/diffit.md): TMSA's per-sample qkv offset with the relative position bias on a
    // 72-wide head, learned sigma.
    R"({"name": "diffit", "nnet": {"name": "diffit", "input_size": 8, "patch_size": 2,
        "in_channels": 4, "hidden_size": 144, "depth": 2, "num_heads": 2, "num_classes": 10}})",
};

// FiTv2's packed batch (docs/fit.md): a 6 x 10 token canvas, sequences of 36 tokens, a 72-wide
// head; kFitPackedSizes are the three samples' valid regions (2 x 10, 6 x 6, 1 x 1 tokens).
inline const char* kFitPacked =
    R"({"name": "fit_packed", "nnet": {"name": "fitv2", "input_size": [12, 20], "patch_size": 2,
        "in_channels": 4, "hidden_size": 144, "depth": 2, "num_heads": 2, "num_classes": 10,
        "adaln_lora_dim": 24, "context_size": 36}})";
inline const std::vector<std::array<int, 2>> kFitPackedSizes = {{4, 20}, {12, 12}, {2, 2}};

inline Config config_from(const char* json) {
  model_compare_fs::path p =
      model_compare_fs::temp_directory_path() /
      ("uvit_cuda_cfg_" + std::to_string(std::hash<std::string>{}(json)) + ".json");
  FILE* f = std::fopen(p.c_str(), "w");
  std::fputs(json, f);
  std::fclose(f);
  return load_config(p.string());
}

// max|a - b| / max|b|
inline double rel(const std::vector<float>& a, const std::vector<float>& b) {
  return uvit_test::rel_err(a, b);
}

struct Result {
  std::vector<float> out, grads;
};

// sizes: FiTv2's packed batch (each sample's valid {h, w}); empty: a plain batch. train_pass:
// the training pass of a network with several (MDT's masked pass 1, its mask drawn on the host
// from a fixed key, so every backend sees the same mask).
inline Result run_net(Backend& be, const Config& c, int B, bool train,
                      const std::vector<std::array<int, 2>>& sizes = {}, int train_pass = 0) {
  auto netp = make_network(c, be);
  Network& net = *netp;
  const NetSpec& n = net.spec();
  net.init_random(5);
  // Non-zero biases, norms and adaLN-Zero layers so every parameter matters.
  {
    std::vector<float> p(net.num_params());
    be.download(p.data(), net.params(), p.size() * 4);
    Philox r(11);
    for (size_t i = 0; i < p.size(); ++i) p[i] += 0.02f * r.normal(i);
    be.upload(net.params(), p.data(), p.size() * 4);
  }
  Philox rng(3);
  std::vector<float> x(B * n.in_numel()), t(B), gout(B * n.out_numel()), ctx;
  rng.fill_normal(x.data(), x.size());
  rng.fill_normal(gout.data(), gout.size(), x.size());
  for (int b = 0; b < B; ++b) t[b] = 999.f * rng.uniform(7 * x.size() + b);
  std::vector<int32_t> y;
  for (int b = 0; b < B && n.class_conditional(); ++b) y.push_back((3 * b) % n.num_classes);
  if (n.text_conditional()) {
    ctx.resize(B * n.context_numel());
    rng.fill_normal(ctx.data(), ctx.size(), 9 * x.size());
  }
  auto up = [&](const void* src, size_t bytes) {
    DeviceBuffer d(be, bytes);
    if (bytes) be.upload(d.as(), src, bytes);
    return d;
  };
  DeviceBuffer dx = up(x.data(), x.size() * 4), dt = up(t.data(), t.size() * 4),
               dg = up(gout.data(), gout.size() * 4), dy = up(y.data(), y.size() * 4),
               dc = up(ctx.data(), ctx.size() * 4), out(be, gout.size() * 4);
  Result r;
  if (train) net.zero_grad();
  if (!sizes.empty()) net.set_valid_sizes(sizes);
  if (train_pass) net.set_train_pass(train_pass, 1234, 7);
  net.forward(dx.f32(), dt.f32(), dy.as<int32_t>(), dc.f32(), out.f32(), B, train);
  if (train) net.backward(dg.f32());
  r.out.resize(gout.size());
  be.download(r.out.data(), out.f32(), r.out.size() * 4);
  if (train) {
    r.grads.resize(net.num_params());
    be.download(r.grads.data(), net.grads(), r.grads.size() * 4);
  }
  return r;
}

// Per-tensor gradient error: the worst tensor's max|a-b| / max|b|.
inline double worst_grad(const ParamTable& table, const std::vector<float>& a,
                         const std::vector<float>& b, std::string* name) {
  double worst = 0;
  for (const auto& e : table.entries()) {
    // Rounding noise on both sides (rel_err.hpp); the CPU parity test bounds it.
    if (uvit_test::zero_gradient_by_symmetry(e.name)) continue;
    std::vector<float> x(a.begin() + e.offset, a.begin() + e.offset + e.numel);
    std::vector<float> y(b.begin() + e.offset, b.begin() + e.offset + e.numel);
    const double r = rel(x, y);
    if (r > worst) {
      worst = r;
      *name = e.name;
    }
  }
  return worst;
}

// Deterministic random images: enough for the trainer's plumbing.
class NoiseDataset : public Dataset {
 public:
  int64_t size() const override { return 64; }
  std::array<int64_t, 3> item_shape() const override { return {3, 16, 16}; }
  int num_classes() const override { return 10; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    Philox(77, uint64_t(i)).fill_normal(x, 3 * 16 * 16);
    for (int k = 0; k < 3 * 16 * 16; ++k) x[k] = std::tanh(x[k]);
    return i % 10;
  }
  std::string describe() const override { return "noise (64 items)"; }
};

// A bf16 CUDA backend whose attention is cuDNN's SDPA (UVIT_ATTENTION=cudnn, which the backend
// reads once, when it is made; docs/gpu.md "cuDNN attention").
inline std::unique_ptr<Backend> make_cudnn_attention_backend() {
  setenv("UVIT_ATTENTION", "cudnn", 1);
  auto be = make_backend("cuda", "bf16");
  unsetenv("UVIT_ATTENTION");
  return be;
}

// kConfigs[0] with a 6-step training setup (AdamW, warm-up, classifier-free guidance dropout).
inline Config train_config() {
  Config c = config_from(kConfigs[0]);
  c.json["train"] = {{"batch_size", 8},
                     {"n_steps", 6},
                     {"log_interval", 1000},
                     {"eval_interval", 100000},
                     {"save_interval", 100000}};
  c.json["optimizer"] = {{"name", "adamw"}, {"lr", 1e-3}, {"weight_decay", 0.03}};
  c.json["lr_scheduler"] = {{"name", "customized"}, {"warmup_steps", 2}};
  c.json["dataset"] = {{"cfg", true}, {"p_uncond", 0.1}};
  return c;
}

// Trains `steps` steps (from a checkpoint in dir when `resume`), saves, and returns the losses of
// the steps run and the final parameters.
inline std::pair<std::vector<double>, std::vector<float>> train_run(const Config& c, Backend& be,
                                                                    std::shared_ptr<Dataset> data,
                                                                    const std::string& dir,
                                                                    int steps, bool resume) {
  Trainer tr(c, be, data, dir);
  resume ? tr.resume() : tr.init();
  std::vector<double> l;
  while (tr.step_count() < steps) l.push_back(tr.step().loss);
  tr.save();
  std::vector<float> p(tr.net().num_params());
  be.download(p.data(), tr.net().params(), p.size() * 4);
  return std::make_pair(l, p);
}

}  // namespace uvit::test
