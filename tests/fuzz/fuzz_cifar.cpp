// CIFAR-10 binary batches through make_cifar10_dataset: the file size check (before reading),
// then the records' labels. A batch is 10000 records of 3073 bytes, far beyond libFuzzer's
// inputs: inputs whose first byte is odd are tiled to that size (so the record checks run on
// mutated records); the others are written as they are (the size check).
#include "fuzz_common.hpp"
#include "uvit/data.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const bool tile = data[0] & 1;
  data += 1, size -= 1;
  const std::string dir = uvit::fuzz::as_dir("cifar");
  std::vector<uint8_t> file(data, data + size);
  if (tile) {
    file.resize(size_t(3073) * 10000);
    for (size_t i = size; i < file.size(); ++i) file[i] = data[i % size];
  }
  uvit::fuzz::write(dir + "/test_batch.bin", file.data(), file.size());
  uvit::fuzz::expect_clean([&] {
    auto ds = uvit::make_cifar10_dataset(dir, "test");
    std::vector<float> x(3 * 32 * 32);
    uvit::DrawRng rng{};
    for (int64_t i : {int64_t(0), ds->size() - 1}) ds->get(i, x.data(), nullptr, rng);
  });
  return 0;
}
