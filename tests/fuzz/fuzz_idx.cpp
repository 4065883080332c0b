// MNIST / Fashion-MNIST idx files through make_idx_dataset, raw and gzipped: the header checks,
// the sizes, the labels, and the gunzip bound (a stream may not inflate past what its header
// declares). The input is the images file, then the labels file: its first 4 bytes (little
// endian) give the images file's length, the rest is split there. Either part may be a gzip stream
// (the reader goes by the magic); the seeds hold both forms.
#include <filesystem>

#include "fuzz_common.hpp"
#include "uvit/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  size_t cut =
      size_t(data[0]) | size_t(data[1]) << 8 | size_t(data[2]) << 16 | size_t(data[3]) << 24;
  data += 4, size -= 4;
  cut = std::min(cut, size);
  const std::string dir = uvit::fuzz::as_dir("idx");
  uvit::fuzz::write(dir + "/t10k-images-idx3-ubyte", data, cut);
  uvit::fuzz::write(dir + "/t10k-labels-idx1-ubyte", data + cut, size - cut);
  uvit::fuzz::expect_clean([&] {
    auto ds = uvit::make_idx_dataset(dir, "test");
    // Every item decodes (the pixel and label arrays match the header).
    std::vector<float> x(size_t(ds->item_shape()[0] * ds->item_shape()[1] * ds->item_shape()[2]));
    uvit::DrawRng rng{};
    for (int64_t i = 0; i < std::min<int64_t>(ds->size(), 64); ++i)
      ds->get(i, x.data(), nullptr, rng);
  });
  return 0;
}
