// Inputs the fuzzing campaign (docs/fuzzing.md) found to crash or exhaust a reader, each now a
// one-line uvit::Error naming the file. (The .pth finding is in test_io.cpp, beside the pickle
// builder it needs.)
#include <gtest/gtest.h>

#include <vector>
#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "error_of.hpp"
#include "io/zip.hpp"
#include "temp_dir.hpp"
#include "uvit/clip.hpp"
#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_fuzzreg") {}
};

void spit(const std::string& path, const std::string& s) {
  std::ofstream(path, std::ios::binary) << s;
}

std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

}  // namespace

// "[[[[..." 200000 deep in a safetensors header overflowed the stack inside nlohmann's parser.
TEST(FuzzRegressions, DeeplyNestedSafetensorsHeader) {
  TempDir t;
  const std::string h =
      R"({"a": {"dtype": "F32", "shape": )" + nested(200000) + R"(, "data_offsets": [0, 0]}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[size_t(i)] = char((uint64_t(h.size()) >> (8 * i)) & 0xFF);
  spit(t / "deep.safetensors", file + h);
  const std::string e = error_of([&] { load_weights(t / "deep.safetensors"); });
  EXPECT_TRUE(has(e, "deep.safetensors: JSON nested deeper than 256 levels")) << e;
}

// The limit itself: 256 levels parse, 257 do not; the same for every JSON input (a preset here).
TEST(FuzzRegressions, JsonDepthLimit) {
  EXPECT_EQ(parse_json(nested(256), "x").size(), 1u);
  EXPECT_EQ(error_of([] { parse_json(nested(257), "x"); }),
            "x: JSON nested deeper than 256 levels");
  EXPECT_THROW(parse_json("[1,", "x"), nlohmann::json::parse_error);  // syntax errors unchanged
  TempDir t;
  spit(t / "deep.json", R"({"nnet": {"name": "uvit", "depth": )" + nested(100000) + "}}");
  const std::string e = error_of([&] { load_config(t / "deep.json"); });
  EXPECT_TRUE(has(e, "deep.json: JSON nested deeper than 256 levels")) << e;
}

// "scale_factor": 0.18e1522... made nlohmann throw out_of_range, which load_config (catching
// parse errors only) let escape without the file's name (fuzz_config); serve answered 500.
TEST(FuzzRegressions, JsonNumberBeyondDoubleRange) {
  EXPECT_EQ(error_of([] { parse_json("{\"a\": 1e400}", "x"); }),
            "x: invalid JSON: number overflow parsing '1e400'");
  TempDir t;
  spit(t / "big.json", R"({"nnet": {"name": "uvit"}, "autoencoder": {"scale_factor": 0.18e1522}})");
  const std::string e = error_of([&] { load_config(t / "big.json"); });
  EXPECT_TRUE(has(e, "big.json: invalid JSON: number overflow parsing '0.18e1522'")) << e;
}

// A vocab.json without the word-end form of a byte symbol ("a</w>") loaded, and the first word
// ending in that byte threw std::out_of_range ("map::at") from the BPE instead of a uvit::Error.
TEST(FuzzRegressions, VocabularyWithoutWordEndSymbols) {
  // The bundled vocabulary's 256 byte symbols (its first entries), one merge and the specials.
  const ClipTokenizer real = ClipTokenizer::load(clip_vocab_path(""));
  nlohmann::json v = nlohmann::json::object();
  for (int i = 0; i < 256; ++i) v[real.token(i)] = i;
  v[real.token(0) + real.token(1)] = 256;
  v["<|startoftext|>"] = 257;
  v["<|endoftext|>"] = 258;
  TempDir t;
  spit(t / "vocab.json", v.dump());
  spit(t / "merges.txt", "#version: 0.2\n" + real.token(0) + " " + real.token(1) + "\n");
  const std::string e =
      error_of([&] { ClipTokenizer::from_hf(t / "vocab.json", t / "merges.txt").encode("a!"); });
  EXPECT_TRUE(has(e, "vocab.json: word-end byte symbol '!</w>' is not in the vocabulary")) << e;
}

// A gzip bomb as the vocabulary: 100 MB of zeros in ~100 KB stops at 64 MB with one line.
TEST(FuzzRegressions, GzipBombVocabulary) {
  TempDir t;
  const std::string zeros(size_t(100) << 20, '\0');
  gzFile g = gzopen((t / "bomb.txt.gz").c_str(), "wb9");
  ASSERT_NE(g, nullptr);
  ASSERT_EQ(gzwrite(g, zeros.data(), unsigned(zeros.size())), int(zeros.size()));
  gzclose(g);
  const std::string e = error_of([&] { ClipTokenizer::load(t / "bomb.txt.gz"); });
  EXPECT_TRUE(has(e, "bomb.txt.gz: decompresses to more than 64 MB")) << e;
}

// An idx .gz whose header declares one 2x2 image (20 bytes) followed by 200 MB of zeros (~200 KB
// compressed): the reader inflated the whole stream, so any small .gz could ask for gigabytes.
// Now inflation stops one byte past the declared size. The same header checks run on the first
// 16 bytes, before the rest is inflated.
TEST(FuzzRegressions, IdxGzipInflatesNoFurtherThanItsHeaderDeclares) {
  TempDir t;
  const auto write_gz = [](const std::string& path, const std::string& head, size_t zeros) {
    gzFile g = gzopen(path.c_str(), "wb9");
    ASSERT_NE(g, nullptr);
    ASSERT_EQ(gzwrite(g, head.data(), unsigned(head.size())), int(head.size()));
    const std::string z(size_t(1) << 20, '\0');
    for (size_t i = 0; i < zeros; i += z.size())
      ASSERT_EQ(gzwrite(g, z.data(), unsigned(z.size())), int(z.size()));
    gzclose(g);
  };
  const std::string one_2x2("\0\0\x08\x03\0\0\0\x01\0\0\0\x02\0\0\0\x02", 16);
  write_gz(t / "t10k-images-idx3-ubyte.gz", one_2x2, size_t(200) << 20);
  write_gz(t / "t10k-labels-idx1-ubyte.gz", std::string("\0\0\x08\x01\0\0\0\x01\x03", 9), 0);
  std::string e = error_of([&] { make_idx_dataset(t.dir.string(), "test"); });
  EXPECT_TRUE(has(e,
                  "t10k-images-idx3-ubyte.gz: the gzip stream inflates to more than the 20 "
                  "bytes its idx header declares"))
      << e;
  write_gz(t / "t10k-images-idx3-ubyte.gz", std::string(16, '\x7f'), size_t(200) << 20);
  e = error_of([&] { make_idx_dataset(t.dir.string(), "test"); });
  EXPECT_TRUE(has(e, "t10k-images-idx3-ubyte.gz: bad idx magic 0x7f7f7f7f")) << e;
  // Exactly the declared size still loads; a short stream is a size mismatch.
  write_gz(t / "t10k-images-idx3-ubyte.gz", one_2x2 + std::string(4, '\x09'), 0);
  EXPECT_EQ(make_idx_dataset(t.dir.string(), "test")->size(), 1);
  write_gz(t / "t10k-images-idx3-ubyte.gz", one_2x2 + std::string(3, '\x09'), 0);
  e = error_of([&] { make_idx_dataset(t.dir.string(), "test"); });
  EXPECT_TRUE(has(e, "size mismatch: header says 1 images of 2x2 (20 bytes), file has 19")) << e;
}

// A CIFAR-10 batch of the wrong size was read whole before its size was checked: a 4 GB (sparse)
// file asked for 4 GB. The size is now checked from the file system first.
TEST(FuzzRegressions, Cifar10BatchSizeIsCheckedBeforeReading) {
  TempDir t;
  { std::ofstream(t / "test_batch.bin", std::ios::binary) << 'x'; }
  std::filesystem::resize_file(t / "test_batch.bin", uintmax_t(1) << 32);
  const std::string e = error_of([&] { make_cifar10_dataset(t.dir.string(), "test"); });
  EXPECT_TRUE(has(e,
                  "test_batch.bin: expected 30730000 bytes (10000 records of 1 label + 3072 "
                  "pixels), file has 4294967296"))
      << e;
}

// A JPEG whose DHT segment declares 0x61 + 0xFF = 352 codes: Debian's stb_image 2.27 wrote past
// its 257-entry Huffman tables (UBSan: index 257 out of bounds); the vendored 2.30 refuses it.
// The fuzzer's file stopped after the two counts (stb read zeros past its end); here the segment
// is zero-padded to its declared length and the file ends with EOI, so that it passes the
// truncation check (a cut JPEG is refused before stb) and reaches stb's Huffman tables.
TEST(FuzzRegressions, JpegHuffmanTableWithTooManyCodes) {
  std::vector<uint8_t> jpg = {0xFF, 0xD8, 0xFF, 0xC4, 0x00, 0x1D, 0x00, 0x61, 0xFF};
  jpg.resize(4 + 0x1D, 0);  // SOI, the DHT marker, its 0x1D bytes
  jpg.insert(jpg.end(), {0xFF, 0xD9});
  for (int c : {0, 3})
    EXPECT_EQ(error_of([&] { decode_image(jpg.data(), jpg.size(), "dht.jpg", c); }),
              "dht.jpg: cannot decode image (Corrupt JPEG)");
  // Cut after the counts, as the fuzzer found it: now refused before stb sees it.
  EXPECT_EQ(error_of([&] { decode_image(jpg.data(), 9, "cut.jpg", 3); }),
            "cut.jpg: truncated: a JPEG without its end marker in its 9 bytes (the download or "
            "copy stopped early)");
}

// An .npz member with an unknown compression method (99) whose zip64 size says 2^60 bytes:
// zip::Reader::read allocated the size before it looked at the method (fuzz_npy: a 2 GB malloc
// from a 495-byte file). Now the method is checked first.
TEST(FuzzRegressions, ZipEntryWithUnknownMethodIsRefusedBeforeAllocating) {
  std::string z;
  auto u16 = [&](uint32_t v) { z += char(v & 0xFF), z += char((v >> 8) & 0xFF); };
  auto u32 = [&](uint32_t v) { u16(v & 0xFFFF), u16(v >> 16); };
  const std::string name = "x.npy", data = "abcd";
  u32(0x04034b50), u16(20), u16(0), u16(99), u16(0), u16(0x21), u32(0), u32(4), u32(4);
  u16(uint32_t(name.size())), u16(0), z += name, z += data;  // local header and data
  const uint32_t cd = uint32_t(z.size());
  u32(0x02014b50), u16(45), u16(45), u16(0), u16(99), u16(0), u16(0x21), u32(0), u32(4);
  u32(0xFFFFFFFFu), u16(uint32_t(name.size())), u16(12), u16(0), u16(0), u16(0), u32(0), u32(0);
  z += name;
  u16(1), u16(8), u32(0), u32(1u << 28);  // zip64 extra: size = 2^60
  const uint32_t cd_size = uint32_t(z.size()) - cd;
  u32(0x06054b50), u16(0), u16(0), u16(1), u16(1), u32(cd_size), u32(cd), u16(0);
  TempDir t;
  spit(t / "m.npz", z);
  zip::Reader r(t / "m.npz");
  ASSERT_EQ(r.entries().size(), 1u);
  EXPECT_EQ(r.entries()[0].size, uint64_t(1) << 60);
  EXPECT_EQ(error_of([&] { r.read(r.entries()[0]); }),
            t / "m.npz" + ": x.npy: unsupported zip compression method 99");
  EXPECT_TRUE(has(error_of([&] { load_npz(t / "m.npz"); }), "unsupported zip compression method"));
}

// A ~70-byte PNG declaring 14000 x 14000 RGB made stb_image allocate its 588 MB of pixels before
// finding that the data is missing (stb 2.30 itself stops PNGs at 1 GB of pixels; the fuzzer's
// high-RSS image units pointed here). Like PIL, images above 2 x 89478485 pixels are refused
// from the header.
TEST(FuzzRegressions, DecompressionBombImageIsRefusedFromItsHeader) {
  const uint8_t px[3] = {1, 2, 3};
  std::vector<uint8_t> png = encode_png(px, 1, 1, 3);
  // IHDR's data starts at byte 16 (signature 8, length 4, type 4); its CRC covers type + data.
  auto be32 = [&](size_t at, uint32_t v) {
    for (int i = 0; i < 4; ++i) png[at + size_t(i)] = uint8_t(v >> (24 - 8 * i));
  };
  be32(16, 14000);
  be32(20, 14000);
  be32(29, uint32_t(crc32(0, png.data() + 12, 17)));
  EXPECT_EQ(error_of([&] { decode_image(png.data(), png.size(), "bomb.png", 3); }),
            "bomb.png: 14000x14000 pixels is more than 178956970 (a decompression bomb, as PIL "
            "calls it)");
  be32(16, 1000);  // 1000 x 14000 passes the header check and fails on the missing pixels
  be32(29, uint32_t(crc32(0, png.data() + 12, 17)));
  EXPECT_TRUE(has(error_of([&] { decode_image(png.data(), png.size(), "tall.png", 3); }),
                  "tall.png: cannot decode image"));
}

// Finding 15 (docs/fuzzing.md): TGA has no magic and no checksum, and stb_image reads a cut TGA's
// missing bytes as zeros, so 40 bytes declaring 13648 x 12810 RGBA (under the pixel limit above)
// decoded to a 700 MB image (48 s and 1.5 GB RSS under ASan: the fuzzer's slow units). A TGA whose
// file is shorter than its pixels need (RLE: one byte per 128 pixels at least) is truncated, as PIL
// says ("image file is truncated"). It fails without the check in src/io/image_read.cpp.
TEST(FuzzRegressions, TruncatedTgaIsRefusedBeforeDecoding) {
  for (const uint8_t type : {3, 11}) {  // uncompressed and RLE greyscale
    std::vector<uint8_t> tga(18, 0);
    tga[2] = type;
    tga[12] = tga[14] = 0x00;
    tga[13] = tga[15] = 0x10;  // 4096 x 4096
    tga[16] = 8;               // bits per pixel
    tga.push_back(0);          // one byte of pixel data
    const std::string e = error_of([&] { decode_image(tga.data(), tga.size(), "cut.tga", 1); });
    EXPECT_TRUE(has(e, "cut.tga: truncated")) << "type " << int(type) << ": " << e;
  }
}
