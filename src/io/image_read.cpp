// Image decoding through stb_image (v2.30, vendored: third_party/stb/README.md). This is the one
// translation unit that holds the stb_image implementation.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_FAILURE_USERMSG
#include "stb_image.h"  // third_party/stb
#pragma GCC diagnostic pop

#include <climits>

#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

namespace uvit {

Image decode_image(const uint8_t* data, size_t n, const std::string& name, int want_c) {
  UVIT_CHECK(want_c >= 0 && want_c <= 4, name, ": bad channel request ", want_c);
  UVIT_CHECK(n > 0, name, ": empty image file");
  UVIT_CHECK(n < size_t(INT_MAX), name, ": image file too large (", n, " bytes)");
  int w = 0, h = 0, c = 0;
  // PIL refuses images above 2 x Image.MAX_IMAGE_PIXELS as decompression bombs (a 2 KB JPEG can
  // declare 16384 x 16384); so do we, from the header alone, before stb allocates the pixels.
  constexpr int64_t kMaxPixels = 2 * int64_t(1024 * 1024 * 1024 / 4 / 3);
  if (stbi_info_from_memory(data, int(n), &w, &h, &c) && int64_t(w) * h > kMaxPixels)
    fail(name, ": ", w, "x", h, " pixels is more than ", kMaxPixels,
         " (a decompression bomb, as PIL calls it)");
  // stb keeps no global state we depend on except the failure reason, which is thread-local when
  // available; the data loader decodes from several threads.
  stbi_uc* p = stbi_load_from_memory(data, int(n), &w, &h, &c, want_c);
  if (!p) fail(name, ": cannot decode image (", stbi_failure_reason(), ")");
  Image im;
  im.w = w;
  im.h = h;
  im.c = want_c ? want_c : c;
  im.px.assign(p, p + size_t(w) * h * im.c);
  stbi_image_free(p);
  return im;
}

Image read_image(const std::string& path, int want_c) {
  std::vector<uint8_t> f = read_file(path);
  return decode_image(f.data(), f.size(), path, want_c);
}

std::array<int, 2> read_image_size(const std::string& path) {
  int w = 0, h = 0, c = 0;
  if (!stbi_info(path.c_str(), &w, &h, &c))
    fail(path, ": cannot read the image's size (", stbi_failure_reason(), ")");
  return {w, h};
}

}  // namespace uvit
