// A small PNG encoder (8-bit gray / gray+alpha / RGB / RGBA, zlib) with text chunks, and a reader
// for those text chunks (whole, or up to the image data for a cheap check of many files). Decoding
// of pixels is left to stb_image (image_read.cpp).
#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "io/file.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace {

constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

void put_u32(std::vector<uint8_t>& o, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) o.push_back(uint8_t(v >> s));
}

uint32_t get_u32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

void put_chunk(std::vector<uint8_t>& o, const char type[4], const uint8_t* data, size_t n) {
  UVIT_CHECK(n < 0x7fffffffu, "png: chunk ", type, " too large (", n, " bytes)");
  put_u32(o, uint32_t(n));
  size_t start = o.size();
  o.insert(o.end(), type, type + 4);
  o.insert(o.end(), data, data + n);
  uLong crc = crc32(0L, o.data() + start, uInt(o.size() - start));
  put_u32(o, uint32_t(crc));
}

int paeth(int a, int b, int c) {
  int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return a;
  return pb <= pc ? b : c;
}

// Filters every scanline, choosing per row the filter with the smallest sum of |signed bytes|
// (the usual heuristic from the PNG specification).
std::vector<uint8_t> filter_rows(const uint8_t* px, int w, int h, int c) {
  size_t stride = size_t(w) * c;
  std::vector<uint8_t> out;
  out.reserve((stride + 1) * h);
  std::vector<uint8_t> zero(stride, 0), cand[5];
  for (auto& v : cand) v.resize(stride);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = px + y * stride;
    const uint8_t* up = y ? row - stride : zero.data();
    long best_score = -1;
    int best = 0;
    for (int f = 0; f < 5; ++f) {
      long score = 0;
      for (size_t i = 0; i < stride; ++i) {
        int a = i >= size_t(c) ? row[i - c] : 0, b = up[i], d = i >= size_t(c) ? up[i - c] : 0;
        int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : paeth(a, b, d);
        uint8_t v = uint8_t(row[i] - pred);
        cand[f][i] = v;
        score += v < 128 ? v : 256 - v;
      }
      if (best_score < 0 || score < best_score) best_score = score, best = f;
    }
    out.push_back(uint8_t(best));
    out.insert(out.end(), cand[best].begin(), cand[best].end());
  }
  return out;
}

bool is_latin1_printable(const std::string& s) {
  for (unsigned char ch : s)
    if (ch >= 0x80) return false;
  return true;
}

}  // namespace

std::vector<uint8_t> encode_png(const uint8_t* hwc, int w, int h, int c,
                                const std::map<std::string, std::string>& text) {
  UVIT_CHECK(w > 0 && h > 0, "png: bad size ", w, "x", h);
  UVIT_CHECK(c >= 1 && c <= 4, "png: unsupported channel count ", c);
  static const uint8_t color_type[5] = {0, 0, 4, 2, 6};
  std::vector<uint8_t> o(kSignature, kSignature + 8);
  std::vector<uint8_t> ihdr;
  put_u32(ihdr, uint32_t(w));
  put_u32(ihdr, uint32_t(h));
  ihdr.insert(ihdr.end(), {8, color_type[c], 0, 0, 0});
  put_chunk(o, "IHDR", ihdr.data(), ihdr.size());
  for (const auto& [key, value] : text) {
    UVIT_CHECK(!key.empty() && key.size() <= 79 && is_latin1_printable(key) &&
                   key.find('\0') == std::string::npos,
               "png: text keyword '", key, "' must be 1-79 ASCII characters");
    UVIT_CHECK(value.find('\0') == std::string::npos, "png: text '", key, "' contains a NUL byte");
    std::vector<uint8_t> d(key.begin(), key.end());
    d.push_back(0);
    if (is_latin1_printable(value)) {
      d.insert(d.end(), value.begin(), value.end());
      put_chunk(o, "tEXt", d.data(), d.size());
    } else {  // UTF-8: iTXt, uncompressed, no language tag or translated keyword
      d.insert(d.end(), {0, 0, 0, 0});
      d.insert(d.end(), value.begin(), value.end());
      put_chunk(o, "iTXt", d.data(), d.size());
    }
  }
  std::vector<uint8_t> raw = filter_rows(hwc, w, h, c);
  uLongf zn = compressBound(uLong(raw.size()));
  std::vector<uint8_t> z(zn);
  int rc = compress2(z.data(), &zn, raw.data(), uLong(raw.size()), 6);
  UVIT_CHECK(rc == Z_OK, "png: zlib compress failed (", rc, ")");
  put_chunk(o, "IDAT", z.data(), zn);
  put_chunk(o, "IEND", nullptr, 0);
  return o;
}

void write_png(const std::string& path, const uint8_t* hwc, int w, int h, int c,
               const std::map<std::string, std::string>& text) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(hwc, w, h, c, text);
  } catch (const Error& e) {
    fail(path, ": ", e.what());
  }
  write_file_atomic(path, bytes.data(), bytes.size());
}

void write_png(const std::string& path, const Image& im,
               const std::map<std::string, std::string>& text) {
  UVIT_CHECK(im.px.size() == size_t(im.w) * im.h * im.c, path, ": image buffer has ", im.px.size(),
             " bytes, expected ", size_t(im.w) * im.h * im.c);
  write_png(path, im.px.data(), im.w, im.h, im.c, text);
}

bool is_png_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  uint8_t b[8] = {};
  return f.read(reinterpret_cast<char*>(b), 8) && std::memcmp(b, kSignature, 8) == 0;
}

namespace {

// Bytes of a PNG at positions the chunk walk asks for: from memory, or from a file read in windows
// of at least kWindow bytes (the signature, IHDR and the text chunks come in one read).
class PngBytes {
 public:
  PngBytes(const uint8_t* p, size_t n) : mem_(p), size_(n) {}
  explicit PngBytes(const io::InFile& f) : file_(&f), size_(size_t(f.size())) {}
  size_t size() const { return size_; }
  // [pos, pos + n), within size(); valid until the next call.
  const uint8_t* at(size_t pos, size_t n) {
    if (!file_) return mem_ + pos;
    if (pos < buf_at_ || pos + n > buf_at_ + buf_.size()) {
      buf_.resize(std::min(size_ - pos, std::max(n, kWindow)));
      file_->read(pos, buf_.data(), buf_.size(), "PNG chunk");
      buf_at_ = pos;
    }
    return buf_.data() + (pos - buf_at_);
  }
  static constexpr size_t kWindow = 4 << 10;

 private:
  const uint8_t* mem_ = nullptr;
  const io::InFile* file_ = nullptr;
  size_t size_ = 0, buf_at_ = 0;
  std::vector<uint8_t> buf_;
};

// The walk over every chunk to IEND, each length checked against the bytes there (a file cut short
// fails), with the CRC checked of every text chunk and every other chunk up to `crc_max` bytes: a
// larger one (the image data) is skipped by its length unread.
std::map<std::string, std::string> walk_png_text(PngBytes& f, const std::string& path,
                                                 size_t crc_max) {
  UVIT_CHECK(f.size() >= 8 && std::memcmp(f.at(0, 8), kSignature, 8) == 0, path,
             ": not a PNG file (bad signature)");
  std::map<std::string, std::string> out;
  size_t pos = 8;
  while (true) {
    UVIT_CHECK(pos + 12 <= f.size(), path, ": truncated PNG (chunk header at byte ", pos, ")");
    const uint8_t* h = f.at(pos, 8);
    const uint32_t n = get_u32(h);
    const std::string type(reinterpret_cast<const char*>(h + 4), 4);
    // The PNG limit, which also keeps n + 4 below in 32 bits (a file of over 4 GiB could hold it).
    UVIT_CHECK(n <= 0x7FFFFFFFu, path, ": PNG chunk ", type, " of ", n,
               " bytes is over the PNG limit of 2^31 - 1");
    UVIT_CHECK(n <= f.size() - pos - 12, path, ": truncated PNG chunk ", type, " (", n, " bytes)");
    pos += 12 + size_t(n);
    const bool text = type == "tEXt" || type == "iTXt";
    // (never IEND: it is empty; never a text chunk, however long: a 100 KB prompt is a record)
    if (n > crc_max && !text) continue;
    const uint8_t* d = f.at(pos - 4 - n, n + 4);  // (h may be stale now)
    const uint32_t crc =
        uint32_t(crc32(crc32(0L, reinterpret_cast<const Bytef*>(type.data()), 4), d, n));
    UVIT_CHECK(crc == get_u32(d + n), path, ": CRC mismatch in PNG chunk ", type);
    if (text) {
      const uint8_t* nul = static_cast<const uint8_t*>(std::memchr(d, 0, n));
      UVIT_CHECK(nul, path, ": ", type, " chunk without keyword terminator");
      std::string key(reinterpret_cast<const char*>(d), nul - d);
      const uint8_t* v = nul + 1;
      const uint8_t* end = d + n;
      if (type == "iTXt") {
        UVIT_CHECK(end - v >= 2, path, ": short iTXt chunk");
        UVIT_CHECK(v[0] == 0, path, ": compressed iTXt chunk '", key, "' is not supported");
        v += 2;
        for (int skip = 0; skip < 2; ++skip) {  // language tag, translated keyword
          const uint8_t* z = static_cast<const uint8_t*>(std::memchr(v, 0, end - v));
          UVIT_CHECK(z, path, ": malformed iTXt chunk '", key, "'");
          v = z + 1;
        }
      }
      out[key] = std::string(reinterpret_cast<const char*>(v), end - v);
    }
    if (type == "IEND") break;
  }
  return out;
}

}  // namespace

std::map<std::string, std::string> read_png_text(const std::string& path) {
  const std::vector<uint8_t> f = read_file(path);
  return decode_png_text(f.data(), f.size(), path);
}

std::map<std::string, std::string> read_png_text_head(const std::string& path) {
  const io::InFile file(path);
  PngBytes f(file);
  return walk_png_text(f, path, 64 << 10);  // image data over 64 KiB: skipped
}

std::map<std::string, std::string> decode_png_text(const uint8_t* data, size_t size,
                                                   const std::string& path) {
  UVIT_CHECK(data, path, ": not a PNG file (bad signature)");
  PngBytes f(data, size);
  return walk_png_text(f, path, SIZE_MAX);
}

}  // namespace uvit
