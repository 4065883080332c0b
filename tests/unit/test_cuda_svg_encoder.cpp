// SVG's encoder (DINOv3 + residual ViT + match_distribution) on the GPU against the CPU, with
// random weights built from the official tables here (no Python on the GPU machine): fp32 to
// 1e-4, tf32 to 1e-2 relative. Skips without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>

#include "gpu_compare.hpp"
#include "models/svg_encoder.hpp"
#include "uvit/backend.hpp"

namespace {

using namespace uvit;

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}

// Every tensor of `t` random, the DINOv3 buffers as the official init sets them (k-bias mask,
// RoPE periods) and LayerScale away from its 1e-5 init so the blocks matter.
NamedArrays random_weights(const ParamTable& t, const Dinov3Config& c, unsigned seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> n01(0.f, 1.f);
  NamedArrays w;
  for (const ParamEntry& e : t.entries()) {
    std::vector<float> v(e.numel);
    const int64_t fan_in = e.shape.size() >= 2 ? int64_t(e.numel) / e.shape[0] : 1;
    for (size_t i = 0; i < v.size(); ++i) {
      if (ends_with(e.name, "bias_mask"))
        v[i] = (i >= v.size() / 3 && i < 2 * v.size() / 3) ? 0.f : 1.f;
      else if (e.name == "rope_embed.periods")
        v[i] = float(std::pow(c.pos_embed_rope_base, 2.0 * double(i) / (c.head_dim() / 2)));
      else if (ends_with(e.name, "gamma"))
        v[i] = 0.75f + 0.25f * n01(g);
      else if (e.name.find("norm") != std::string::npos || e.name.find("ln") != std::string::npos)
        v[i] = (ends_with(e.name, "weight") ? 1.f : 0.f) + 0.1f * n01(g);
      else if (e.shape.size() >= 2 && e.name.find("weight") != std::string::npos)
        v[i] = n01(g) / std::sqrt(float(fan_in));
      else
        v[i] = 0.1f * n01(g);
    }
    w.emplace_back(e.name, Array::from_f32(e.shape, v.data()));
  }
  return w;
}

}  // namespace

TEST(CudaEncoders, SvgEncoderMatchesCpu) {
  REQUIRE_CUDA();
  SvgEncoderConfig cfg;
  cfg.dinov3.embed_dim = 64;
  cfg.dinov3.num_heads = 2;
  cfg.dinov3.depth = 2;
  cfg.residual.hidden_dim = 64;
  cfg.residual.num_heads = 4;
  cfg.residual.num_layers = 2;
  cfg.residual.mlp_dim = 128;
  const NamedArrays dino = random_weights(dinov3_param_table(cfg.dinov3), cfg.dinov3, 1);
  const NamedArrays svg = random_weights(svg_residual_param_table(cfg.residual), cfg.dinov3, 2);
  const std::vector<float> px = test::randv(size_t(2) * 3 * 256 * 256, 3);
  const Array x = Array::from_f32({2, 3, 256, 256}, px.data());
  auto cpu = make_backend("cpu");
  SvgEncoder ref_enc(cfg, *cpu);
  ref_enc.load(svg, "svg", &dino, "dinov3");
  const std::vector<float> ref = ref_enc.encode(x, 2).to_f32();
  for (const char* prec : {"fp32", "tf32"}) {
    auto gpu = make_backend("cuda", prec);
    SvgEncoder enc(cfg, *gpu);
    enc.load(svg, "svg", &dino, "dinov3");
    test::compare(std::string("svg encoder ") + prec, enc.encode(x, 2).to_f32(), ref,
                  std::string(prec) == "fp32" ? 1e-4 : 1e-2);
  }
}
