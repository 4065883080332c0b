// uint8 -> float conversions of the official transforms, as 256-entry tables (float32 arithmetic).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace uvit::data {

// torchvision ToTensor + Normalize(0.5, 0.5): (x / 255 - 0.5) / 0.5 (CIFAR-10, CelebA, (F)MNIST).
const std::array<float, 256>& totensor_normalize_lut();
// guided-diffusion ImageDataset: np.float32(x) / 127.5 - 1 (ImageNet).
const std::array<float, 256>& imagenet_lut();

// Image files under dir as guided-diffusion's _list_image_files_recursively: sorted entries, files
// with a jpg/jpeg/png/gif extension (any case), recursing into directories; besides, names starting
// with '.' and folders already walked (link loops) are skipped, and a dangling link or an empty
// file is refused (docs/data.md, "What an image folder may hold"). One warning names what was
// skipped.
std::vector<std::string> list_images_recursively(const std::string& dir);
// The same walk for files whose lower-cased extension is one of `exts` (without the dot).
std::vector<std::string> list_files_recursively(const std::string& dir,
                                                const std::vector<std::string>& exts);

// ImageNet's class rule: label = sorted index of the file's basename up to the first '_' (the
// synset); *classes receives the number of distinct prefixes.
std::vector<int64_t> prefix_labels(const std::vector<std::string>& files, int* classes);

}  // namespace uvit::data
