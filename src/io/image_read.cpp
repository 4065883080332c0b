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
#include <cstring>
#include <string_view>

#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace {

// Where a JPEG stream ends before its end-of-image marker: the byte count read, or 0 when the
// marker is there. stb_image decodes a cut file as if the missing data were zeros (grey rows at
// the bottom) where PIL refuses it ("image file is truncated"); the marker walk tells them apart
// (segments skipped by their lengths, scans up to the next marker that is not a restart or a
// stuffed 0xFF 0x00). Bytes after the marker (camera trailers) are allowed, as PIL allows them.
size_t jpeg_cut_at(const uint8_t* d, size_t n) {
  size_t i = 2;  // after SOI
  for (;;) {
    while (i < n && d[i] != 0xFF) ++i;
    while (i < n && d[i] == 0xFF) ++i;  // fill bytes
    if (i >= n) return n;
    const uint8_t m = d[i++];
    if (m == 0xD9) return 0;                              // EOI
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // TEM, RSTn: no length
    if (i + 2 > n) return n;
    i += size_t(d[i]) << 8 | d[i + 1];
    if (i > n) return n;
    if (m != 0xDA) continue;  // SOS: the entropy-coded data follow
    for (;;) {
      while (i < n && d[i] != 0xFF) ++i;
      if (i + 1 >= n) return n;
      const uint8_t c = d[i + 1];
      if (c == 0x00 || c == 0xFF || (c >= 0xD0 && c <= 0xD7))
        i += c == 0xFF ? 1 : 2;
      else
        break;
    }
  }
}

// Whether stb_image reads these bytes as a TGA: no other format's header claims them (stb tries
// TGA last: it has no magic).
bool is_tga(const uint8_t* d, size_t n) {
  int x = 0, y = 0, c = 0;
  stbi__context s;
  const auto claims = [&](int (*info)(stbi__context*, int*, int*, int*)) {
    stbi__start_mem(&s, d, int(n));
    return info(&s, &x, &y, &c) != 0;
  };
  for (auto* f : {stbi__jpeg_info, stbi__png_info, stbi__gif_info, stbi__bmp_info, stbi__psd_info,
                  stbi__pic_info, stbi__pnm_info, stbi__hdr_info})
    if (claims(f)) return false;
  return claims(stbi__tga_info);
}

// The fewest bytes a TGA with this 18-byte header can hold its pixels in: stb_image reads a cut
// TGA's missing bytes as zeros, so 40 bytes decoded to a 700 MB image (docs/fuzzing.md, finding
// 15). RLE packets hold at most 128 pixels, each at least a count byte and one pixel.
uint64_t tga_min_bytes(const uint8_t* d) {
  const uint64_t px = uint64_t(d[12] | d[13] << 8) * uint64_t(d[14] | d[15] << 8);
  const uint64_t cmap = d[1] ? uint64_t(d[5] | d[6] << 8) * ((d[7] + 7) / 8) : 0;
  const uint64_t pixel = (d[16] + 7) / 8;  // bytes per pixel (an index when colour-mapped)
  return 18 + d[0] + cmap + (d[2] >= 8 ? (px + 127) / 128 * (1 + pixel) : px * pixel);
}

// What a file stb_image cannot decode is, from its first bytes, where a user's folder commonly
// holds it: formats PIL reads (so pytorch-fid's folders may hold them) and macOS's metadata files.
std::string unreadable_kind(const uint8_t* d, size_t n) {
  const auto at = [&](size_t o, std::string_view m) {
    return n >= o + m.size() && std::memcmp(d + o, m.data(), m.size()) == 0;
  };
  using namespace std::string_view_literals;  // magics with NUL bytes
  if (at(0, "RIFF") && at(8, "WEBP")) return "a WebP image";
  if (at(0, "II*\0"sv) || at(0, "MM\0*"sv)) return "a TIFF image";
  if (at(4, "ftypheic") || at(4, "ftypheix") || at(4, "ftypmif1")) return "a HEIC image";
  if (at(4, "ftypavif")) return "an AVIF image";
  return "";
}

}  // namespace

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
  if (n >= 18 && is_tga(data, n) && n < tga_min_bytes(data))
    fail(name, ": truncated: a ", w, "x", h, " TGA needs at least ", tga_min_bytes(data),
         " bytes, the file has ", n, " (the download or copy stopped early)");
  if (n >= 2 && data[0] == 0xFF && data[1] == 0xD8 && jpeg_cut_at(data, n))
    fail(name, ": truncated: a JPEG without its end marker in its ", n,
         " bytes (the download or copy stopped early)");
  // stb keeps no global state we depend on except the failure reason, which is thread-local when
  // available; the data loader decodes from several threads.
  stbi_uc* p = stbi_load_from_memory(data, int(n), &w, &h, &c, want_c);
  if (!p) {
    UVIT_CHECK(n < 4 || std::memcmp(data, "\0\5\26\7", 4) != 0, name,
               ": a macOS AppleDouble file (the Finder's metadata ._NAME beside NAME), not an "
               "image: delete it");
    const std::string kind = unreadable_kind(data, n);
    UVIT_CHECK(kind.empty(), name, ": ", kind,
               ", which uvit cannot decode (it reads JPEG, PNG, GIF, BMP, PNM and TGA): convert "
               "it to PNG");
    fail(name, ": cannot decode image (", stbi_failure_reason(), ")");
  }
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
