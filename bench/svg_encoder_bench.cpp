// Forward time of DINOv3 ViT-S+/16 (x_norm_patchtokens) and of SVG's whole encoder per 256-px
// image on the CPU backend, weight loading excluded (docs/benchmarks.md, "SVG encoder").
// Usage: svg_encoder_bench DINOV3.safetensors SVG.safetensors ITERS BATCH (OMP_NUM_THREADS sets
// the threads); the weights come from tests/reference/{dinov3,svg_encoder}_torch.py weights.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "models/dinov3.hpp"
#include "models/svg_encoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {
template <class F>
double median_ms(int iters, F&& f) {
  f();  // warm-up (plans, first-touch)
  std::vector<double> t;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr,
                 "usage: svg_encoder_bench DINOV3.safetensors SVG.safetensors ITERS BATCH\n");
    return 2;
  }
  try {
    const int iters = std::max(1, std::atoi(argv[3])), B = std::max(1, std::atoi(argv[4]));
    auto be = make_backend("cpu");
    const NamedArrays dino_sd = load_weights(argv[1]);
    SvgEncoder enc(SvgEncoderConfig{}, *be);
    enc.load(load_weights(argv[2]), argv[2], &dino_sd, argv[1]);
    Dinov3 dino(Dinov3Config{}, *be);
    dino.load(dino_sd, argv[1]);
    std::vector<float> px(size_t(B) * 3 * 256 * 256);
    for (size_t i = 0; i < px.size(); ++i) px[i] = float(int(i * 7919 % 256)) / 127.5f - 1.f;
    const Array x = Array::from_f32({B, 3, 256, 256}, px.data());
    const double d = median_ms(iters, [&] { dino.patch_tokens(px, B, 256); });
    const double s = median_ms(iters, [&] { enc.encode(x, 1); });
    std::printf(
        "{\"batch\": %d, \"iters\": %d, \"dinov3_ms_per_image\": %.1f, "
        "\"svg_encoder_ms_per_image\": %.1f}\n",
        B, iters, d / B, s / B);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "svg_encoder_bench: %s\n", e.what());
    return 1;
  }
}
