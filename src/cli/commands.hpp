// Each subcommand registers itself on the app; main() dispatches and turns errors into one line.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "uvit/backend.hpp"

namespace uvit::cli {

void add_info(CLI::App& app);
void add_convert(CLI::App& app);
void add_predict(CLI::App& app);
void add_bench(CLI::App& app);
void add_train(CLI::App& app);
void add_demo(CLI::App& app);
void add_sample(CLI::App& app);
void add_autoencoder(CLI::App& app);
void add_extract_features(CLI::App& app);
void add_fid(CLI::App& app);  // fid, fid-features, fid-stats
void add_eval(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_encode_text(CLI::App& app);

// The --precision help of the commands that run the U-ViT.
inline constexpr const char* kPrecisionHelp =
    "fp32, bf16 or tf32 (cuda: fp32 activations, TF32 tensor-core GEMMs); default: fp32 on cpu, "
    "bf16 on cuda";

// The encoders' precision beside a U-ViT of precision `uvit`: exact fp32 with an fp32 U-ViT, else
// the device's encoder default (tf32 on cuda).
inline std::string encoders_beside(const std::string& device, const std::string& uvit) {
  return encoder_precision(device, uvit == "fp32" ? "fp32" : "");
}

// --device cpu|cuda and --precision fp32|tf32 of the commands that run the fp32 encoders
// (autoencoder, FID Inception, CLIP); the precision's default is encoder_precision's.
inline void add_encoder_device(CLI::App* c, std::string& device, std::string& precision,
                               const char* what) {
  c->add_option("--device", device, std::string("cpu or cuda: where ") + what + " run(s)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  c->add_option("--precision", precision,
                "fp32, or tf32 on cuda (TF32 tensor-core GEMMs, as PyTorch's convolutions; the "
                "cuda default)")
      ->check(CLI::IsMember({"fp32", "tf32"}));
}

}  // namespace uvit::cli
