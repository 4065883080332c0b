// Sample grids as PNG: class-conditional models get one row per class.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/generate.hpp"
#include "uvit/image.hpp"
#include "uvit/network.hpp"

namespace uvit::cli {

// Labels for `n` samples: sample i gets class i mod (real classes); empty for unconditional models.
std::vector<int> classes_all(const Config& cfg, int n);
// Converts samples in [-1, 1] [N,C,H,W] to images (SPEC 12.5 quantisation).
std::vector<Image> to_images(const std::vector<float>& x, int n, int c, int s);
// n samples with the preset's sampler; class models: rows of classes (n rounded to a multiple of
// the class count). steps 0 = the preset's.
void write_grid(Network& net, const Config& cfg, const std::string& png, int n, int steps,
                uint64_t seed = 0);

}  // namespace uvit::cli
