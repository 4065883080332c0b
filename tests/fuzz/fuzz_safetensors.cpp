// safetensors header + data through open_weights (the CLI's path) and the metadata reader.
#include <vector>

#include "fuzz_common.hpp"
#include "uvit/io.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = uvit::fuzz::as_file(data, size, "w.safetensors");
  uvit::fuzz::expect_clean([&] {
    auto r = uvit::open_weights(path);
    for (size_t i = 0; i < r->tensors().size(); ++i) {
      std::vector<float> out(size_t(r->tensors()[i].numel()));
      r->read_f32(i, out.data());
    }
  });
  uvit::fuzz::expect_clean([&] { uvit::read_safetensors_metadata(path); });
  return 0;
}
