// Image decoding (stb_image behind decode_image, every channel request) and the PNG text-chunk
// reader that `uvit serve`'s png-info and the metadata tests use.
#include "fuzz_common.hpp"
#include "uvit/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int want_c = data[0] % 5;  // 0 = as stored, else 1..4
  uvit::fuzz::expect_clean([&] {
    uvit::Image im = uvit::decode_image(data + 1, size - 1, "fuzz.png", want_c);
    if (im.px.size() != size_t(im.w) * im.h * im.c) std::abort();
  });
  uvit::fuzz::expect_clean([&] { uvit::decode_png_text(data + 1, size - 1, "fuzz.png"); });
  return 0;
}
