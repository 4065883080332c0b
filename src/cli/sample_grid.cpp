#include "cli/sample_grid.hpp"

#include <cmath>

namespace uvit::cli {

std::vector<int> classes_all(const Config& cfg, int n) {
  const int k = real_classes(cfg);
  std::vector<int> y;
  for (int i = 0; k > 0 && i < n; ++i) y.push_back(i % k);
  return y;
}

std::vector<Image> to_images(const std::vector<float>& x, int n, int c, int s) {
  std::vector<Image> out;
  for (int i = 0; i < n; ++i) out.push_back(to_image(x.data() + size_t(i) * c * s * s, c, s, s));
  return out;
}

void write_grid(Network& net, const Config& cfg, const std::string& png, int n, int steps,
                uint64_t seed) {
  const NetSpec& nc = net.spec();
  const int k = real_classes(cfg);
  int rows;
  std::vector<int> labels;
  if (k > 0) {
    const int per = std::max(1, n / k);
    n = per * k;
    rows = per;  // make_grid's nrow = images per row: one row per class
    for (int c = 0; c < k; ++c)
      for (int j = 0; j < per; ++j) labels.push_back(c);
  } else {
    rows = int(std::ceil(std::sqrt(double(n))));
  }
  GenerateOptions o;
  o.steps = steps;
  o.seed = seed;
  auto x = generate(net, cfg, o, n, labels);
  auto imgs = to_images(x, n, nc.in_chans, nc.img_size);
  write_png(png, make_grid(imgs, rows), {{"uvit", cfg.config_name}});
}

}  // namespace uvit::cli
