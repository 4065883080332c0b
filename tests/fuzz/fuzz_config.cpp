// Preset JSON: parsing, the field checks of config.cpp and every network family's nnet
// validation, then what `uvit info` and `convert --config` derive from an accepted config.
#include "fuzz_common.hpp"
#include "uvit/config.hpp"
#include "uvit/params.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = uvit::fuzz::as_file(data, size, "preset.json");
  uvit::fuzz::expect_clean([&] {
    uvit::Config c = uvit::load_config(path);
    uvit::network_param_table(c);
    uvit::network_forward_flops(c);
    uvit::network_family(c.spec.name).full_config(c.json["nnet"]);
    uvit::apply_override(c, "nnet.depth=3");
  });
  return 0;
}
