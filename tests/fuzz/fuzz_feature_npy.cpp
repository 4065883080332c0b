// The official ImageNet feature files (src/data/feature_npy.cpp): a .npy with descr '|O' whose
// payload is a pickle of (moments, label), read by our restricted unpickler. The first byte picks
// the entry point: even, the whole .npy file (header dict, then the pickle); odd, the pickle bytes
// alone (parse_feature_record), so mutations reach the unpickler's opcodes directly.
#include "data/feature_npy.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    uvit::fuzz::expect_clean([&] { uvit::data::parse_feature_record(data + 1, size - 1, "fuzz"); });
  } else {
    const std::string path = uvit::fuzz::as_file(data + 1, size - 1, "feature.npy");
    uvit::fuzz::expect_clean([&] { uvit::data::load_feature_record(path); });
  }
  return 0;
}
