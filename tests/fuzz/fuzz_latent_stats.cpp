// Latent statistics files (load_latent_stats: LightningDiT's latents_stats.pt or our
// .safetensors, "mean" and "std"): the first byte picks the format (bit 0: .pt) and whether a
// channel count is required (bit 1: 4 channels), then each std must be positive and finite.
#include "fuzz_common.hpp"
#include "uvit/autoencoder.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool pt = data[0] & 1;
  const int channels = data[0] & 2 ? 4 : 0;
  const std::string path =
      uvit::fuzz::as_file(data + 1, size - 1, pt ? "stats.pt" : "stats.safetensors");
  uvit::fuzz::expect_clean([&] {
    const uvit::LatentStats s = uvit::load_latent_stats(path, channels);
    for (size_t c = 0; c < s.std.size(); ++c)
      if (!(s.std[c] > 0) || s.mean.size() != s.std.size()) std::abort();  // the loader's promise
  });
  return 0;
}
