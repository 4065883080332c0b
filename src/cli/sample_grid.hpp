// Sample grids as PNG: class-conditional models get one row per class.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "uvit/config.hpp"
#include "uvit/dist.hpp"
#include "uvit/generate.hpp"
#include "uvit/image.hpp"
#include "uvit/network.hpp"

namespace uvit::cli {

// Labels for `n` samples: sample i gets class i mod (real classes); empty for unconditional models.
std::vector<int> classes_all(const Config& cfg, int n);
// Converts samples in [-1, 1] [N,C,H,W] to images (SPEC 12.5 quantisation).
std::vector<Image> to_images(const std::vector<float>& x, int n, int c, int s, int w = 0);
// A grid of `imgs`: with `labels` (classes in [0, classes)), one row per class, left-aligned in
// sample order (gaps where a class has fewer samples); without, a square grid.
Image sample_grid(const std::vector<Image>& imgs, const std::vector<int>& labels = {},
                  int classes = 0);
// The samples a grid of about `n` draws: n / classes per class for class models (n itself with
// fewer than one per class), n for the others.
int grid_count(const Config& cfg, int n);
// Draws a grid of about `n` samples from `net` with the sampler settings `g` (unset fields: the
// preset's) and writes it to `png`. Class models: n / classes per class, one row per class (with
// fewer than one per class, n classes spread over the range). A progress line is labelled `label`.
// With `comm` (collective: every rank calls it), the ranks share the samples in whole mini-batches
// and rank 0 writes the grid, the same bytes as one process draws.
void write_grid(Network& net, const Config& cfg, const std::string& png, int n, GenerateOptions g,
                const std::string& label, bool quiet, Comm* comm = nullptr);

}  // namespace uvit::cli
