// The tiny random-weights class model of the drivers that generate (fuzz_serve, fuzz_capi):
// tests/e2e/data/tiny_config.py's U-ViT with 2 sampling steps, so accepted requests stay cheap.
#pragma once
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"

namespace uvit::fuzz {

struct TinyModel {
  std::string config, weights;  // paths
};

// Writes the preset and its random weights to a per-process folder named after `driver`.
inline TinyModel tiny_model(const std::string& driver) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / cat("uvit_", driver, "_", getpid());
  fs::create_directories(dir);
  TinyModel m{(dir / "tiny.json").string(), (dir / "w.safetensors").string()};
  std::ofstream(m.config) << R"({"name": "fuzz_tiny", "schedule": "continuous_vp",
  "pred": "noise_pred", "train": {"mode": "cond"},
  "nnet": {"name": "uvit", "img_size": 28, "patch_size": 7, "in_chans": 1, "embed_dim": 32,
           "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, "num_classes": 11},
  "dataset": {"name": "fashion_mnist", "cfg": true, "p_uncond": 0.1},
  "sample": {"sample_steps": 2, "algorithm": "dpm_solver", "cfg": true, "scale": 1.0}})";
  const Config cfg = load_config(m.config);
  auto be = make_backend("cpu");
  auto net = make_network(cfg, *be);
  net->init_random(1);
  save_safetensors(m.weights, net->export_weights());
  return m;
}

}  // namespace uvit::fuzz
