// Whole encoders on the GPU against the CPU: the KL autoencoder (encode and decode), the ST-VAE
// and the CLIP text model, with random weights in their official key layouts (no Python needed on
// the GPU machine). fp32 on the CPU; on the GPU fp32 (to 1e-4) and tf32 (TF32 tensor-core GEMMs,
// ~1e-3 relative per product: to 1e-2); each comparison prints its max error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "models/stvae.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/clip_vision.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace {

using namespace uvit;

std::vector<float> randn(size_t n, std::mt19937& g, float sd) {
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

Array random_array(const std::vector<int64_t>& shape, std::mt19937& g, float sd) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  const std::vector<float> v = randn(size_t(n), g, sd);
  return Array::from_f32(shape, v.data());
}

// A small ddconfig that still has every block kind: two levels (one downsample / upsample),
// shortcut convs (ch_mult 1 -> 2), attention at 16 px and in the mid blocks.
AutoencoderConfig small_ae() {
  AutoencoderConfig c;
  c.ch = 32;
  c.ch_mult = {1, 2};
  c.num_res_blocks = 1;
  c.resolution = 32;
  c.attn_resolutions = {16};
  return c;
}

NamedArrays random_weights(const std::vector<std::pair<std::string, std::vector<int64_t>>>& shapes,
                           unsigned seed) {
  std::mt19937 g(seed);
  NamedArrays w;
  for (const auto& [name, shape] : shapes) {
    const bool norm = name.find("norm") != std::string::npos;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    // Norm weights near 1, small biases, conv weights ~ 1/sqrt(fan-in). (An ST-VAE's spatial-norm
    // convs count as norms: their scale output stays near 1.)
    float sd = 0.05f;
    int64_t fan_in = 1;
    for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    if (!norm && !bias && shape.size() >= 4) sd = 1.f / std::sqrt(float(fan_in));
    Array a = random_array(shape, g, sd);
    if (norm && !bias)
      for (int64_t i = 0; i < a.numel(); ++i) a.as<float>()[i] += 1.f;
    w.emplace_back(name, std::move(a));
  }
  return w;
}

NamedArrays random_ae_weights(const AutoencoderConfig& c, unsigned seed) {
  return random_weights(autoencoder_param_shapes(c), seed);
}

TEST(CudaEncoders, AutoencoderMatchesCpu) {
  REQUIRE_CUDA();
  const AutoencoderConfig c = small_ae();
  const Autoencoder cpu(c, random_ae_weights(c, 1), "random", "cpu");
  for (const char* prec : {"fp32", "tf32"}) {
    SCOPED_TRACE(prec);
    const double tol = std::string(prec) == "fp32" ? 1e-4 : 1e-2;
    const Autoencoder gpu(c, random_ae_weights(c, 1), "random", "cuda", prec);
    std::mt19937 g(2);
    const Array images = random_array({2, 3, 32, 32}, g, 0.5f);
    const Array m_cpu = cpu.encode_moments(images), m_gpu = gpu.encode_moments(images);
    EXPECT_EQ(m_gpu.shape, m_cpu.shape);
    test::compare(std::string(prec) + " encode moments", m_gpu.to_f32(), m_cpu.to_f32(), tol);
    const Array z = random_array({2, 4, 16, 16}, g, 0.2f);
    const Array x_cpu = cpu.decode(z), x_gpu = gpu.decode(z);
    EXPECT_EQ(x_gpu.shape, x_cpu.shape);
    test::compare(std::string(prec) + " decode", x_gpu.to_f32(), x_cpu.to_f32(), tol);
    // Odd latent sizes (the attention and convolutions see HW that is no multiple of 4).
    const Array z2 = random_array({1, 4, 7, 5}, g, 0.2f);
    test::compare(std::string(prec) + " decode 7x5", gpu.decode(z2).to_f32(),
                  cpu.decode(z2).to_f32(), tol);
  }
}

// The VA-VAE family (docs/autoencoder.md): 5 levels, attention at a middle level (16 px of a
// 64 px config), z_channels = embed_dim = 8, decoded through per-channel latent statistics.
TEST(CudaEncoders, VaVaeFamilyMatchesCpu) {
  REQUIRE_CUDA();
  AutoencoderConfig c = autoencoder_config_from("vavae_f16d32");
  c.ch = 32;
  c.resolution = 64;
  c.z_channels = c.embed_dim = 8;
  const LatentStats st{{0.1f, -0.2f, 0.3f, 0.f, 0.5f, -1.f, 0.2f, 0.4f},
                       {0.5f, 1.5f, 1.f, 2.f, 0.8f, 1.2f, 0.9f, 1.1f}};
  Autoencoder cpu(c, random_ae_weights(c, 3), "random", "cpu");
  cpu.set_latent_stats(st);
  for (const char* prec : {"fp32", "tf32"}) {
    SCOPED_TRACE(prec);
    const double tol = std::string(prec) == "fp32" ? 1e-4 : 1e-2;
    Autoencoder gpu(c, random_ae_weights(c, 3), "random", "cuda", prec);
    gpu.set_latent_stats(st);
    std::mt19937 g(4);
    const Array images = random_array({2, 3, 64, 96}, g, 0.5f);
    test::compare(std::string(prec) + " vavae encode", gpu.encode_moments(images).to_f32(),
                  cpu.encode_moments(images).to_f32(), tol);
    const Array z = random_array({2, 8, 4, 6}, g, 1.f);
    test::compare(std::string(prec) + " vavae decode", gpu.decode(z).to_f32(),
                  cpu.decode(z).to_f32(), tol);
  }
}

// LaVin-DiT's ST-VAE (docs/stvae.md) at a small width: folded causal convs, the decoder's spatial
// norm (group_norm, modulate_fwd, silu_fwd on the encoder backend), three levels; and clips (5
// frames -> 2 latent frames -> 5 frames): the frame gathers (copy_2d), stacked-tap convolutions,
// time pooling and upsampling.
TEST(CudaEncoders, StvaeMatchesCpu) {
  REQUIRE_CUDA();
  const StvaeConfig c = parse_stvae_config(
      R"({"stvae": {"block_out_channels": [32, 64, 64], "layers_per_block": 2,
                    "latent_channels": 4}})",
      "small");
  const Stvae cpu(c, random_weights(stvae_param_shapes(c), 5), "random", "cpu", "", true);
  for (const char* prec : {"fp32", "tf32"}) {
    SCOPED_TRACE(prec);
    const double tol = std::string(prec) == "fp32" ? 1e-4 : 1e-2;
    const Stvae gpu(c, random_weights(stvae_param_shapes(c), 5), "random", "cuda", prec, true);
    std::mt19937 g(6);
    const Array images = random_array({2, 3, 32, 48}, g, 0.5f);
    test::compare(std::string(prec) + " stvae encode", gpu.encode_moments(images).to_f32(),
                  cpu.encode_moments(images).to_f32(), tol);
    const Array z = random_array({2, 4, 5, 7}, g, 1.f);
    test::compare(std::string(prec) + " stvae decode", gpu.decode(z).to_f32(),
                  cpu.decode(z).to_f32(), tol);
    const Array clip = random_array({2, 3, 5, 16, 24}, g, 0.5f);
    test::compare(std::string(prec) + " stvae clip encode", gpu.encode_moments(clip).to_f32(),
                  cpu.encode_moments(clip).to_f32(), tol);
    const Array zt = random_array({1, 4, 2, 5, 7}, g, 1.f);
    test::compare(std::string(prec) + " stvae clip decode", gpu.decode(zt).to_f32(),
                  cpu.decode(zt).to_f32(), tol);
  }
}

// One-half loads on the GPU (AutoencoderUse: `uvit autoencoder encode|decode`, the latent
// presets' decode, lavin-sample): only that half's tensors are read, through ParamStage's host
// buffer and an upload per tensor (the ST-VAE's clip taps too), and the half runs as the CPU's
// full load does; the other half is refused.
TEST(CudaEncoders, OneHalfLoadsMatchTheCpu) {
  REQUIRE_CUDA();
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("uvit_cuda_half_" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::mt19937 g(8);
  const Array images = random_array({2, 3, 32, 48}, g, 0.5f);
  const std::string prec = "fp32";
  {
    const AutoencoderConfig c = small_ae();
    const NamedArrays w = random_ae_weights(c, 7);
    const std::string path = (dir / "ae.safetensors").string();
    save_safetensors(path, w);
    const Autoencoder cpu(c, w, "random", "cpu");
    const Autoencoder dec = Autoencoder::load(path, c, "cuda", prec, AutoencoderUse::decode);
    const Autoencoder enc = Autoencoder::load(path, c, "cuda", prec, AutoencoderUse::encode);
    const Array z = random_array({2, 4, 8, 12}, g, 0.2f);
    test::compare("autoencoder decode-only load", dec.decode(z).to_f32(), cpu.decode(z).to_f32(),
                  1e-4);
    test::compare("autoencoder encode-only load", enc.encode_moments(images).to_f32(),
                  cpu.encode_moments(images).to_f32(), 1e-4);
    EXPECT_THROW(dec.encode_moments(images), Error);
    EXPECT_THROW(enc.decode(z), Error);
  }
  {
    const StvaeConfig c = parse_stvae_config(
        R"({"stvae": {"block_out_channels": [32, 64, 64], "layers_per_block": 2,
                      "latent_channels": 4}})",
        "small");
    const NamedArrays w = random_weights(stvae_param_shapes(c), 9);
    const std::string path = (dir / "stvae.safetensors").string();
    save_safetensors(path, w);
    const Stvae cpu(c, w, "random", "cpu", "", true);
    const Stvae dec = Stvae::load(path, c, "cuda", prec, true, AutoencoderUse::decode);
    const Stvae enc = Stvae::load(path, c, "cuda", prec, true, AutoencoderUse::encode);
    const Array z = random_array({2, 4, 5, 7}, g, 1.f), zt = random_array({1, 4, 2, 5, 7}, g, 1.f);
    const Array clip = random_array({1, 3, 5, 16, 24}, g, 0.5f);
    test::compare("stvae decode-only load", dec.decode(z).to_f32(), cpu.decode(z).to_f32(), 1e-4);
    test::compare("stvae decode-only load, clip", dec.decode(zt).to_f32(), cpu.decode(zt).to_f32(),
                  1e-4);
    test::compare("stvae encode-only load", enc.encode_moments(images).to_f32(),
                  cpu.encode_moments(images).to_f32(), 1e-4);
    test::compare("stvae encode-only load, clip", enc.encode_moments(clip).to_f32(),
                  cpu.encode_moments(clip).to_f32(), 1e-4);
    EXPECT_THROW(dec.encode_moments(images), Error);
    EXPECT_THROW(enc.decode(z), Error);
  }
  fs::remove_all(dir);
}

TEST(CudaEncoders, ClipTextModelMatchesCpu) {
  REQUIRE_CUDA();
  ClipTextConfig c;
  c.vocab_size = 500;
  c.hidden_size = 96;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 3;
  c.max_position_embeddings = 77;
  std::mt19937 g(3);
  const int64_t H = c.hidden_size, I = c.intermediate_size;
  NamedArrays sd;
  auto add = [&](const std::string& n, std::vector<int64_t> shape, float s, float shift = 0.f) {
    Array a = random_array(shape, g, s);
    for (int64_t i = 0; i < a.numel(); ++i) a.as<float>()[i] += shift;
    sd.emplace_back("text_model." + n, std::move(a));
  };
  add("embeddings.token_embedding.weight", {c.vocab_size, H}, 0.5f);
  add("embeddings.position_embedding.weight", {77, H}, 0.1f);
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = cat("encoder.layers.", l, ".");
    for (const char* ln : {"layer_norm1", "layer_norm2"}) {
      add(p + ln + ".weight", {H}, 0.1f, 1.f);
      add(p + ln + ".bias", {H}, 0.1f);
    }
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      add(p + "self_attn." + proj + ".weight", {H, H}, 0.1f);
      add(p + "self_attn." + proj + ".bias", {H}, 0.05f);
    }
    add(p + "mlp.fc1.weight", {I, H}, 0.1f);
    add(p + "mlp.fc1.bias", {I}, 0.05f);
    add(p + "mlp.fc2.weight", {H, I}, 0.08f);
    add(p + "mlp.fc2.bias", {H}, 0.05f);
  }
  add("final_layer_norm.weight", {H}, 0.1f, 1.f);
  add("final_layer_norm.bias", {H}, 0.1f);

  auto cpu_be = make_cpu_backend();
  ClipTextModel cpu(c, *cpu_be);
  cpu.load(sd, "random");
  std::vector<int> ids(2 * 77);
  for (auto& id : ids) id = int(g() % unsigned(c.vocab_size));
  const std::vector<float> ref = cpu.forward(ids, 2, 77);
  for (const char* prec : {"fp32", "tf32"}) {
    auto gpu_be = make_backend("cuda", prec);
    ClipTextModel gpu(c, *gpu_be);
    gpu.load(sd, "random");
    test::compare(std::string(prec) + " clip [2, 77]", gpu.forward(ids, 2, 77), ref,
                  std::string(prec) == "fp32" ? 1e-4 : 1e-2);
  }
  // A bf16 backend is refused with a one-line error (the encoders are fp32 models).
  auto bf16 = make_backend("cuda", "bf16");
  EXPECT_THROW(ClipTextModel(c, *bf16), Error);
}

// The CLIP image tower (docs/clip_score.md): a small ViT of the ViT-L/14 family (odd head count,
// 17 tokens) with random weights in the HF layout, fp32 and tf32 against the CPU.
TEST(CudaEncoders, ClipVisionModelMatchesCpu) {
  REQUIRE_CUDA();
  ClipVisionConfig c;
  c.hidden_size = 96;
  c.intermediate_size = 160;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 3;
  c.image_size = 56;
  c.patch_size = 14;
  c.projection_dim = 40;
  std::mt19937 g(5);
  NamedArrays sd;
  for (const auto& [name, shape] : clip_vision_param_shapes(c)) {
    const bool norm = name.find("norm") != std::string::npos;  // layer_norm*, pre_layrnorm
    Array a = random_array(shape, g, 0.1f);
    if (norm && name.compare(name.size() - 7, 7, ".weight") == 0)
      for (int64_t i = 0; i < a.numel(); ++i) a.as<float>()[i] += 1.f;
    sd.emplace_back(name, std::move(a));
  }
  const std::vector<float> px = randn(size_t(3) * 3 * 56 * 56, g, 1.f);
  auto cpu_be = make_cpu_backend();
  ClipVisionModel cpu(c, *cpu_be);
  cpu.load(sd, "random");
  const std::vector<float> ref = cpu.forward(px.data(), 3);
  for (const char* prec : {"fp32", "tf32"}) {
    auto gpu_be = make_backend("cuda", prec);
    ClipVisionModel gpu(c, *gpu_be);
    gpu.load(sd, "random");
    test::compare(std::string(prec) + " clip vision [3, 40]", gpu.forward(px.data(), 3), ref,
                  std::string(prec) == "fp32" ? 1e-4 : 1e-2);
  }
  auto bf16 = make_backend("cuda", "bf16");
  EXPECT_THROW(ClipVisionModel(c, *bf16), Error);
}

}  // namespace
