// Datasets, the loader, PNG output and the PIL-compatible image transforms.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "data/feature_npy.hpp"
#include "toy_dataset.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

std::string temp_dir() {
  char tmpl[] = "/tmp/uvit_data_test_XXXXXX";
  const char* d = mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d;
}

struct TempDir {
  std::string path = temp_dir();
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

std::vector<uint8_t> gzip_bytes(const std::vector<uint8_t>& raw) {
  z_stream zs{};
  EXPECT_EQ(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::vector<uint8_t> out(deflateBound(&zs, uLong(raw.size())) + 64);
  zs.next_in = const_cast<uint8_t*>(raw.data());
  zs.avail_in = uInt(raw.size());
  zs.next_out = out.data();
  zs.avail_out = uInt(out.size());
  EXPECT_EQ(deflate(&zs, Z_FINISH), Z_STREAM_END);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

void put_be32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(uint8_t(x >> s));
}

// The pixel pattern used for the PIL reference values (tests authored with Pillow 9.4 / numpy).
Image pattern(int w, int h, int c) {
  Image im(w, h, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k)
        im.at(y, x, k) = uint8_t((x * x * 7 + y * 13 + k * 61 + (x * y) % 17) % 256);
  return im;
}

// sum(v * (i % 251 + 1)) over the HWC bytes: position-sensitive checksum, as computed in Python.
int64_t checksum(const Image& im) {
  int64_t s = 0;
  for (size_t i = 0; i < im.px.size(); ++i) s += int64_t(im.px[i]) * int64_t(i % 251 + 1);
  return s;
}

// Back from ToTensor+Normalize floats to the uint8 they came from.
uint8_t from_normalized(float v) { return uint8_t(std::lround((v * 0.5f + 0.5f) * 255.0f)); }

}  // namespace

// ---- Image output
// ---------------------------------------------------------------------------------

TEST(Image, ToUint8MatchesTorchSaveImage) {
  // Expected values from torch 1.13: x = 0.5*(v+1); x.clamp_(0,1);
  // x.mul(255).add_(0.5).clamp_(0,255) .to(torch.uint8), float32. The triples around k+0.5 ties
  // probe the round-half-up boundary.
  const std::pair<float, int> cases[] = {
      {-2.000000000e+00f, 0},   {-1.000000000e+00f, 0},   {-9.900000095e-01f, 1},
      {-5.000000000e-01f, 64},  {0.000000000e+00f, 128},  {2.500000000e-01f, 159},
      {5.000000000e-01f, 191},  {9.990000129e-01f, 255},  {1.000000000e+00f, 255},
      {1.500000000e+00f, 255},  {9.999999939e-09f, 128},  {-9.999999939e-09f, 128},
      {-9.960784316e-01f, 1},   {-9.960784912e-01f, 0},   {-9.960783720e-01f, 1},
      {-9.882352948e-01f, 1},   {-9.882353544e-01f, 1},   {-9.882352352e-01f, 2},
      {-6.039215922e-01f, 50},  {-6.039216518e-01f, 50},  {-6.039215326e-01f, 51},
      {-7.843137719e-03f, 127}, {-7.843138650e-03f, 127}, {-7.843136787e-03f, 127},
      {-1.401298464e-45f, 128}, {1.401298464e-45f, 128},  {5.725490451e-01f, 201},
      {5.725489855e-01f, 201},  {5.725491047e-01f, 201},  {9.882352948e-01f, 254},
      {9.882352352e-01f, 254},  {9.882353544e-01f, 254},  {9.960784316e-01f, 255},
      {9.960783720e-01f, 255},  {9.960784912e-01f, 255},
  };
  for (auto [v, q] : cases) EXPECT_EQ(int(to_uint8(v)), q) << "v = " << v;
  EXPECT_EQ(to_uint8(std::nanf("")), 0);
  EXPECT_EQ(to_uint8(INFINITY), 255);
  EXPECT_EQ(to_uint8(-INFINITY), 0);
}

TEST(Image, ToImageIsChwToHwc) {
  const float chw[2 * 1 * 3] = {-1, 0, 1, 1, 0, -1};  // C=2, H=1, W=3
  Image im = to_image(chw, 2, 1, 3);
  ASSERT_EQ(im.c, 2);
  EXPECT_EQ(im.px, (std::vector<uint8_t>{0, 255, 128, 128, 255, 0}));
}

TEST(Image, PngRoundTripThroughStb) {
  TempDir t;
  for (int c = 1; c <= 4; ++c) {
    Image im = pattern(37, 23, c);
    std::string p = t.path + "/rt" + std::to_string(c) + ".png";
    write_png(p, im, {{"uvit", "seed=1"}});
    Image back = read_image(p);
    EXPECT_EQ(back.w, 37);
    EXPECT_EQ(back.h, 23);
    EXPECT_EQ(back.c, c);
    EXPECT_EQ(back.px, im.px) << "channels " << c;
  }
  // PIL-style RGB conversion of a gray PNG replicates the channel.
  Image g = read_image(t.path + "/rt1.png", 3);
  Image src = pattern(37, 23, 1);
  ASSERT_EQ(g.c, 3);
  EXPECT_EQ(g.at(5, 7, 0), src.at(5, 7, 0));
  EXPECT_EQ(g.at(5, 7, 2), src.at(5, 7, 0));
}

TEST(Image, PngTextChunks) {
  TempDir t;
  std::string p = t.path + "/meta.png";
  std::map<std::string, std::string> meta = {{"prompt", "A green train is coming down the tracks."},
                                             {"uvit", "{\"seed\": 1234, \"steps\": 50}"},
                                             {"utf8", "caf\xc3\xa9"}};
  write_png(p, pattern(4, 3, 3), meta);
  EXPECT_EQ(read_png_text(p), meta);
  // The ASCII values are stored as tEXt chunks, the UTF-8 one as iTXt.
  std::vector<uint8_t> f = read_file(p);
  std::string s(f.begin(), f.end());
  EXPECT_NE(s.find("tEXtprompt"), std::string::npos);
  EXPECT_NE(s.find("iTXtutf8"), std::string::npos);
  EXPECT_EQ(s.find("IHDR"), 12u);
  EXPECT_EQ(s.substr(s.size() - 8, 4), "IEND");
  // A flipped bit in a chunk is caught by the CRC check (stb still decodes pixels; we check text).
  f[s.find("tEXtprompt") + 6] ^= 1;
  write_bytes(p, f);
  EXPECT_THROW(read_png_text(p), Error);
  EXPECT_THROW(write_png(t.path + "/bad.png", pattern(2, 2, 3), {{"", "x"}}), Error);
}

// read_png_text_head (resuming `sample --dir`): every text chunk, however long, is read and
// CRC-checked; image data over 64 KiB is skipped by its length, so a cut file still fails.
TEST(Image, PngTextHeadReadsLongTextAndSkipsImageData) {
  TempDir t;
  const std::string p = t.path + "/big.png";
  Image im(200, 200, 3);
  uint32_t r = 1;
  for (auto& v : im.px) v = uint8_t((r = r * 1664525u + 1013904223u) >> 24);  // incompressible
  const std::map<std::string, std::string> meta = {{"prompt", std::string(100000, 'a')},
                                                   {"uvit", "{}"}};
  write_png(p, im, meta);
  EXPECT_EQ(read_png_text_head(p), meta);
  std::vector<uint8_t> f = read_file(p);
  const std::string s(f.begin(), f.end());
  const size_t idat = s.find("IDAT");
  ASSERT_NE(idat, std::string::npos);
  ASSERT_GT(f.size() - idat, size_t(64 << 10));
  std::vector<uint8_t> g = f;
  g[idat + 1000] ^= 1;  // in the image data: not read
  write_bytes(p, g);
  EXPECT_EQ(read_png_text_head(p), meta);
  EXPECT_THROW(read_png_text(p), Error);
  g = f;
  g[s.find("tEXtprompt") + 5000] ^= 1;  // in the long text: read, so caught
  write_bytes(p, g);
  EXPECT_THROW(read_png_text_head(p), Error);
  g = f;
  g.resize(f.size() - 20);  // cut inside the image data
  write_bytes(p, g);
  EXPECT_THROW(read_png_text_head(p), Error);
}

// A chunk length over the PNG limit of 2^31 - 1 is refused. 0xFFFFFFFC (in a sparse file of over
// 4 GiB, so that the length fits the file) made read_png_text_head's window n + 4 bytes wrap to 0
// in 32 bits, and the CRC then read 4 GiB past a 4 KiB buffer (a crash).
TEST(Image, PngTextHeadRefusesChunkLengthOverTheLimit) {
  TempDir t;
  const std::string p = t.path + "/huge.png";
  write_png(p, Image(2, 2, 3), {});
  std::vector<uint8_t> f = read_file(p);
  f.resize(8 + 25);                                                      // the signature and IHDR
  const uint8_t head[8] = {0xFF, 0xFF, 0xFF, 0xFC, 't', 'E', 'X', 't'};  // length, type
  f.insert(f.end(), head, head + 8);
  write_bytes(p, f);
  std::filesystem::resize_file(p, f.size() + 0xFFFFFFFCull + 4);  // a hole: nothing written
  try {
    read_png_text_head(p);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("over the PNG limit"), std::string::npos) << e.what();
  }
}

TEST(Image, ReadErrorsNameThePath) {
  TempDir t;
  write_bytes(t.path + "/junk.png", {1, 2, 3, 4, 5});
  try {
    read_image(t.path + "/junk.png");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.png"), std::string::npos);
  }
  EXPECT_THROW(read_image(t.path + "/missing.png"), Error);
}

TEST(Image, MakeGridLikeTorchvision) {
  std::vector<Image> ims;
  for (int k = 0; k < 3; ++k) ims.push_back(Image(2, 2, 1, uint8_t(10 * (k + 1))));
  Image g = make_grid(ims, 2, 1);
  // xmaps = 2, ymaps = 2: width 2*(2+1)+1 = 7, height 7.
  ASSERT_EQ(g.w, 7);
  ASSERT_EQ(g.h, 7);
  EXPECT_EQ(g.at(0, 0, 0), 0);
  EXPECT_EQ(g.at(1, 1, 0), 10);
  EXPECT_EQ(g.at(2, 2, 0), 10);
  EXPECT_EQ(g.at(1, 3, 0), 0);  // padding column between images
  EXPECT_EQ(g.at(1, 4, 0), 20);
  EXPECT_EQ(g.at(4, 1, 0), 30);
  EXPECT_EQ(g.at(4, 4, 0), 0);            // empty cell keeps pad_value
  Image one = make_grid({ims[0]}, 8, 2);  // a single image is not padded
  EXPECT_EQ(one.w, 2);
  EXPECT_THROW(make_grid({Image(2, 2, 1), Image(3, 2, 1)}), Error);
}

TEST(Image, PlotDrawsAxesAndLine) {
  PlotSeries s;
  for (int i = 0; i <= 100; ++i) s.x.push_back(i), s.y.push_back(std::exp(-0.05 * i));
  s.y[3] = -1;  // skipped in log scale
  Image im = plot_lines({s}, 320, 200, true);
  ASSERT_EQ(im.w, 320);
  ASSERT_EQ(im.c, 3);
  // Axes: left = 70, bottom = h - 30.
  EXPECT_EQ(im.at(100, 70, 0), 0);
  EXPECT_EQ(im.at(170, 200, 0), 0);
  // Log scale makes exp(-0.05 x) a straight line from (left, top) to (right, bottom).
  int mid_x = 70 + (305 - 70) / 2;
  int blue = 0;
  for (int y = 0; y < im.h; ++y)
    if (im.at(y, mid_x, 0) == 31 && im.at(y, mid_x, 2) == 180) blue = y;
  EXPECT_NEAR(blue, (15 + 170) / 2, 2);
  TempDir t;
  write_plot_png(t.path + "/loss.png", {s}, 320, 200, false, {{"title", "loss"}});
  EXPECT_EQ(read_image(t.path + "/loss.png").px, plot_lines({s}, 320, 200, false).px);
}

// ---- PIL-compatible transforms
// --------------------------------------------------------------------- Expected checksums from
// Pillow 9.4 on the same pattern (see checksum()).

TEST(Image, ResizeMatchesPillow) {
  Image a = resize_pil(crop(pattern(178, 218, 3), 25, 57, 128, 128), 64, 64, Resample::Bilinear);
  EXPECT_EQ(checksum(a), 197310082);
  EXPECT_EQ(a.at(0, 0, 0), 88);
  EXPECT_EQ(a.at(0, 0, 1), 112);
  EXPECT_EQ(a.at(63, 63, 2), 93);
  EXPECT_EQ(checksum(resize_pil(pattern(50, 40, 3), 23, 31, Resample::Lanczos)), 33199357);
  EXPECT_EQ(checksum(resize_pil(pattern(101, 77, 3), 50, 38, Resample::Box)), 91297979);
  EXPECT_EQ(checksum(resize_pil(pattern(30, 20, 1), 7, 9, Resample::Bilinear)), 270693);
  EXPECT_EQ(checksum(resize_pil(pattern(13, 11, 3), 40, 29, Resample::Bicubic)), 56454539);
}

TEST(Image, CenterCropArrMatchesGuidedDiffusion) {
  Image a = center_crop_arr(pattern(300, 200, 3), 64);  // BOX halving, then BICUBIC down
  ASSERT_EQ(a.w, 64);
  ASSERT_EQ(a.h, 64);
  EXPECT_EQ(checksum(a), 197867841);
  EXPECT_EQ(checksum(center_crop_arr(pattern(97, 131, 3), 64)), 196710613);  // BICUBIC up
}

TEST(Image, CropPadsWithZero) {
  Image c = crop(pattern(4, 4, 1), 2, -1, 3, 2);
  EXPECT_EQ(c.px, (std::vector<uint8_t>{0, 0, 0, pattern(4, 4, 1).at(0, 2, 0),
                                        pattern(4, 4, 1).at(0, 3, 0), 0}));
}

// ---- Datasets
// ---------------------------------------------------------------------------------------

TEST(Data, FashionMnistIdx) {
  if (!fs::exists(kDefaultFmnistPath)) GTEST_SKIP() << "dataset-fashion-mnist not installed";
  // Expected values computed with /usr/bin/python3 + numpy + gzip from the same files.
  auto tr = make_idx_dataset(kDefaultFmnistPath, "train");
  auto te = make_idx_dataset(kDefaultFmnistPath, "test");
  EXPECT_EQ(tr->size() + te->size(), 70000);
  EXPECT_EQ(tr->size(), 60000);
  EXPECT_EQ(tr->item_shape(), (std::array<int64_t, 3>{1, 28, 28}));
  EXPECT_EQ(tr->num_classes(), 10);
  std::vector<float> x(784);
  DrawRng r;
  const int64_t first_labels[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
  for (int i = 0; i < 10; ++i) EXPECT_EQ(tr->get(i, x.data(), nullptr, r), first_labels[i]);
  EXPECT_EQ(tr->get(0, x.data(), nullptr, r), 9);
  int64_t sum = 0;
  double mean = 0;
  for (float v : x) sum += from_normalized(v), mean += v;
  EXPECT_EQ(sum, 76247);
  EXPECT_NEAR(mean / 784, -0.23722488, 1e-6);      // torch: ToTensor + Normalize, mean
  EXPECT_FLOAT_EQ(x[14 * 28 + 14], 0.701960802f);  // pixel 217
  tr->get(59999, x.data(), nullptr, r);
  sum = 0;
  for (float v : x) sum += from_normalized(v);
  EXPECT_EQ(sum, 16684);
  EXPECT_EQ(te->get(0, x.data(), nullptr, r), 9);
  std::vector<int64_t> counts(10, 0);
  for (int64_t i = 0; i < tr->size(); ++i) counts[size_t(tr->get(i, x.data(), nullptr, r))]++;
  for (int64_t c : counts) EXPECT_EQ(c, 6000);
}

TEST(Data, IdxErrors) {
  TempDir t;
  auto images = [](uint32_t magic, uint32_t n, uint32_t rows, size_t pixels) {
    std::vector<uint8_t> v;
    put_be32(v, magic), put_be32(v, n), put_be32(v, rows), put_be32(v, rows);
    v.resize(v.size() + pixels, 7);
    return v;
  };
  auto labels = [](uint32_t n, size_t count, uint8_t value = 3) {
    std::vector<uint8_t> v;
    put_be32(v, 0x801), put_be32(v, n);
    v.resize(v.size() + count, value);
    return v;
  };
  std::string d = t.path;
  auto expect_error = [&](const std::string& needle) {
    try {
      make_idx_dataset(d, "train");
      ADD_FAILURE() << "no error, expected " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("missing train-images");
  write_bytes(d + "/train-images-idx3-ubyte", images(0x803, 3, 2, 12));
  write_bytes(d + "/train-labels-idx1-ubyte", labels(3, 3));
  auto ok = make_idx_dataset(d, "train");  // a valid raw (uncompressed) set
  EXPECT_EQ(ok->size(), 3);
  std::vector<float> x(4);
  EXPECT_EQ(ok->get(2, x.data(), nullptr, DrawRng{}), 3);
  EXPECT_FLOAT_EQ(x[0], (7 / 255.0f - 0.5f) / 0.5f);
  write_bytes(d + "/train-images-idx3-ubyte", images(0x802, 3, 2, 12));
  expect_error("bad idx magic");
  write_bytes(d + "/train-images-idx3-ubyte", images(0x803, 3, 2, 11));
  expect_error("size mismatch");
  write_bytes(d + "/train-images-idx3-ubyte", {0, 0, 8});
  expect_error("truncated idx header");
  write_bytes(d + "/train-images-idx3-ubyte", images(0x803, 3, 2, 12));
  write_bytes(d + "/train-labels-idx1-ubyte", labels(4, 4));
  expect_error("4 labels for 3 images");
  write_bytes(d + "/train-labels-idx1-ubyte", labels(3, 3, 12));
  expect_error("label 12");
  // gzip: the .gz file is used when the raw one is absent; a cut stream is an error.
  fs::remove(d + "/train-labels-idx1-ubyte");
  auto gz = gzip_bytes(labels(3, 3));
  write_bytes(d + "/train-labels-idx1-ubyte.gz", gz);
  EXPECT_EQ(make_idx_dataset(d, "train")->size(), 3);
  gz.resize(gz.size() / 2);
  write_bytes(d + "/train-labels-idx1-ubyte.gz", gz);
  expect_error("truncated gzip");
  EXPECT_THROW(make_idx_dataset(d + "/nope", "train"), Error);
  EXPECT_THROW(make_idx_dataset(d, "validation"), Error);
}

TEST(Data, Cifar10Binary) {
  TempDir t;
  std::string d = t.path + "/cifar-10-batches-bin";
  std::vector<uint8_t> b(10000 * 3073);
  for (int r = 0; r < 10000; ++r) {
    b[size_t(r) * 3073] = uint8_t(r % 10);
    for (int j = 0; j < 3072; ++j) b[size_t(r) * 3073 + 1 + j] = uint8_t((r * 7 + j) % 256);
  }
  write_bytes(d + "/test_batch.bin", b);
  auto ds = make_cifar10_dataset(t.path, "test");  // finds the cifar-10-batches-bin subfolder
  EXPECT_EQ(ds->size(), 10000);
  EXPECT_EQ(ds->item_shape(), (std::array<int64_t, 3>{3, 32, 32}));
  std::vector<float> x(3072);
  EXPECT_EQ(ds->get(1234, x.data(), nullptr, DrawRng{}), 4);
  // CHW order straight from the record: channel 1, row 2, col 3 is byte 1024 + 64 + 3.
  EXPECT_EQ(from_normalized(x[1024 + 64 + 3]), uint8_t((1234 * 7 + 1024 + 64 + 3) % 256));
  EXPECT_THROW(make_cifar10_dataset(t.path, "train"), Error);  // no data_batch_*.bin
  b.pop_back();
  write_bytes(d + "/test_batch.bin", b);
  EXPECT_THROW(make_cifar10_dataset(d, "test"), Error);
}

TEST(Data, CelebAFolderAndPartition) {
  TempDir t;
  std::string base = t.path + "/celeba";
  fs::create_directories(base + "/img_align_celeba");
  for (int i = 1; i <= 3; ++i) {
    Image im = pattern(178, 218, 3);
    im.px[0] = uint8_t(i);  // distinguishable, outside the crop
    write_png(base + "/img_align_celeba/00000" + std::to_string(i) + ".png", im);
  }
  std::ofstream(base + "/list_eval_partition.txt") << "000001.png 0\n000002.png 1\n000003.png 0\n";
  auto ds = make_celeba_dataset(t.path, 64, "train");
  EXPECT_EQ(ds->size(), 2);
  EXPECT_EQ(make_celeba_dataset(t.path, 64, "valid")->size(), 1);
  EXPECT_EQ(ds->num_classes(), 0);
  std::vector<float> x(3 * 64 * 64);
  EXPECT_EQ(ds->get(1, x.data(), nullptr, DrawRng{}), -1);
  Image back(64, 64, 3);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 64; ++y)
      for (int xx = 0; xx < 64; ++xx)
        back.at(y, xx, c) = from_normalized(x[(c * 64 + y) * 64 + xx]);
  EXPECT_EQ(checksum(back), 197310082);  // Pillow: crop((25,57,153,185)).resize((64,64), BILINEAR)
  fs::remove(base + "/img_align_celeba/000003.png");
  EXPECT_THROW(make_celeba_dataset(t.path, 64, "train"), Error);
}

TEST(Data, ImageNetLabelsFromSynsetPrefix) {
  TempDir t;
  std::string tr = t.path + "/train";
  fs::create_directories(tr + "/n02");
  fs::create_directories(tr + "/n01");
  write_png(tr + "/n02/n02_7.png", pattern(300, 200, 3));
  write_png(tr + "/n01/n01_1.PNG", pattern(97, 131, 3));
  write_png(tr + "/n01/n01_2.png", pattern(97, 131, 1));
  std::ofstream(tr + "/n01/notes.txt") << "ignored";
  auto ds = make_imagenet_dataset(t.path, 64);
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->num_classes(), 2);
  std::vector<float> x(3 * 64 * 64);
  // Sorted walk: n01/n01_1.PNG, n01/n01_2.png, n02/n02_7.png.
  EXPECT_EQ(ds->get(0, x.data(), nullptr, DrawRng{}), 0);
  EXPECT_EQ(ds->get(1, x.data(), nullptr, DrawRng{}), 0);
  EXPECT_EQ(ds->get(2, x.data(), nullptr, DrawRng{}), 1);
  Image back(64, 64, 3);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < 64; ++y)
      for (int xx = 0; xx < 64; ++xx)
        back.at(y, xx, c) = uint8_t(std::lround((x[(c * 64 + y) * 64 + xx] + 1.0f) * 127.5f));
  EXPECT_EQ(checksum(back), 197867841);
  EXPECT_THROW(make_imagenet_dataset(t.path + "/empty_missing", 64), Error);
}

// The bytes numpy 1.24 writes for np.save(p, np.array((m, np.int64(7)), dtype=object)) with
// m = (arange(32) * 0.25 - 4).reshape(8, 2, 2) float32: the official ImageNet feature file format.
static const char kFeatureNpy[] =
    "\x93NUMPY\x01\x00\x76\x00{'descr': '|O', 'fortran_order': False, 'shape': (2,), }"
    "                                                             \n"
    "\x80\x03\x63numpy.core.multiarray\n_reconstruct\nq\x00\x63numpy\nndarray\nq\x01K\x00\x85q\x02"
    "C\x01\x62q\x03\x87q\x04Rq\x05("
    "K\x01K\x02\x85q\x06\x63numpy\ndtype\nq\x07X\x02\x00\x00\x00O8q\x08"
    "\x89\x88\x87q\x09Rq\x0a(K\x03X\x01\x00\x00\x00|q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?"
    "tq\x0c"
    "b\x89]q\x0d(h\x00h\x01K\x00\x85q\x0eh\x03\x87q\x0fRq\x10("
    "K\x01K\x08K\x02K\x02\x87q\x11h\x07X\x02"
    "\x00\x00\x00\x66\x34q\x12\x89\x88\x87q\x13Rq\x14(K\x03X\x01\x00\x00\x00<"
    "q\x15NNNJ\xff\xff\xff\xff"
    "J\xff\xff\xff\xffK\x00tq\x16\x62\x89\x43\x80"
    "\x00\x00\x80\xc0\x00\x00\x70\xc0\x00\x00\x60\xc0\x00\x00\x50\xc0\x00\x00\x40\xc0\x00\x00\x30"
    "\xc0"
    "\x00\x00\x20\xc0\x00\x00\x10\xc0\x00\x00\x00\xc0\x00\x00\xe0\xbf\x00\x00\xc0\xbf\x00\x00\xa0"
    "\xbf"
    "\x00\x00\x80\xbf\x00\x00\x40\xbf\x00\x00\x00\xbf\x00\x00\x80\xbe\x00\x00\x00\x00\x00\x00\x80"
    "\x3e"
    "\x00\x00\x00\x3f\x00\x00\x40\x3f\x00\x00\x80\x3f\x00\x00\xa0\x3f\x00\x00\xc0\x3f\x00\x00\xe0"
    "\x3f"
    "\x00\x00\x00\x40\x00\x00\x10\x40\x00\x00\x20\x40\x00\x00\x30\x40\x00\x00\x40\x40\x00\x00\x50"
    "\x40"
    "\x00\x00\x60\x40\x00\x00\x70\x40"
    "q\x17tq\x18\x62\x63numpy.core."
    "multiarray\nscalar\nq\x19h\x07X\x02\x00\x00\x00i8q\x1a\x89\x88\x87"
    "q\x1bRq\x1c(K\x03h\x15NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x1d\x62\x43\x08"
    "\x07\x00\x00\x00\x00\x00\x00\x00q\x1e\x86q\x1fRq\x20\x65tq\x21\x62.";

namespace {

std::vector<uint8_t> feature_template() {
  return std::vector<uint8_t>(kFeatureNpy, kFeatureNpy + sizeof(kFeatureNpy) - 1);
}

// Writes a feature file exactly as numpy would for moments [8, h, h]: the template above with the
// shape, the data opcode (SHORT_BINBYTES or BINBYTES by length) and the label replaced.
std::vector<uint8_t> feature_file(const std::vector<float>& m, int h, int64_t label) {
  std::vector<uint8_t> t = feature_template();
  auto find = [&](const std::string& s, size_t from = 0) {
    auto it = std::search(t.begin() + from, t.end(), s.begin(), s.end(),
                          [](uint8_t a, char b) { return a == uint8_t(b); });
    EXPECT_NE(it, t.end());
    return size_t(it - t.begin());
  };
  size_t shape = find(std::string("K\x08K\x02K\x02", 6)) + 2;
  size_t data = find(std::string("\x62\x89\x43\x80", 4)) + 2;
  size_t after = data + 2 + 128;
  size_t lab = find(std::string("\x43\x08\x07", 3), after) + 2;
  std::vector<uint8_t> o(t.begin(), t.begin() + shape);
  o.insert(o.end(), {'K', uint8_t(h), 'K', uint8_t(h)});
  o.insert(o.end(), t.begin() + shape + 4, t.begin() + data);
  size_t n = m.size() * 4;
  if (n < 256) {
    o.insert(o.end(), {'C', uint8_t(n)});
  } else {
    o.push_back('B');
    for (int s = 0; s < 32; s += 8) o.push_back(uint8_t(n >> s));
  }
  const uint8_t* mb = reinterpret_cast<const uint8_t*>(m.data());
  o.insert(o.end(), mb, mb + n);
  o.insert(o.end(), t.begin() + after, t.begin() + lab);
  for (int s = 0; s < 64; s += 8) o.push_back(uint8_t(uint64_t(label) >> s));
  o.insert(o.end(), t.begin() + lab + 8, t.end());
  return o;
}

}  // namespace

TEST(Data, FeatureRecordPickle) {
  auto t = feature_template();
  auto r = data::parse_feature_record(t.data(), t.size(), "mem.npy");
  EXPECT_EQ(r.label, 7);
  ASSERT_EQ(r.moments.shape, (std::vector<int64_t>{8, 2, 2}));
  auto v = r.moments.to_f32();
  for (int i = 0; i < 32; ++i) EXPECT_EQ(v[size_t(i)], i * 0.25f - 4);
  // The test writer reproduces numpy's bytes.
  std::vector<float> m(32);
  for (int i = 0; i < 32; ++i) m[size_t(i)] = i * 0.25f - 4;
  EXPECT_EQ(feature_file(m, 2, 7), t);
  // Truncations and a refused global are errors, never crashes.
  for (size_t cut : {size_t(5), size_t(100), size_t(200), size_t(400), t.size() - 1})
    EXPECT_THROW(data::parse_feature_record(t.data(), cut, "cut.npy"), Error) << cut;
  std::string evil(kFeatureNpy, sizeof(kFeatureNpy) - 1);
  evil.replace(evil.find("numpy\nndarray"), 13, "posix\nsystem_");
  EXPECT_THROW(data::parse_feature_record(reinterpret_cast<const uint8_t*>(evil.data()),
                                          evil.size(), "evil.npy"),
               Error);
}

TEST(Data, ImageNetFeaturesFreshPosteriorSample) {
  TempDir t;
  const int h = 32, n = 4 * h * h;
  // Channel c: mean mu[c], logvar lv[c]; channel 3's logvar is clamped to -30 (sd ~ 3e-7).
  const float mu[4] = {0.5f, -1.0f, 2.0f, 0.25f}, lv[4] = {0.0f, -2.0f, 1.0f, -40.0f};
  std::vector<float> m(2 * size_t(n));
  for (int c = 0; c < 4; ++c)
    for (int j = 0; j < h * h; ++j)
      m[size_t(c * h * h + j)] = mu[c], m[size_t(n + c * h * h + j)] = lv[c];
  for (int i = 0; i < 3; ++i)
    write_bytes(t.path + "/" + std::to_string(i) + ".npy", feature_file(m, h, 10 * i + 1));
  auto ds = make_imagenet_features_dataset(t.path, 256, 0.18215);
  ASSERT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->item_shape(), (std::array<int64_t, 3>{4, 32, 32}));
  EXPECT_EQ(ds->num_classes(), 1000);
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  EXPECT_EQ(ds->get(2, x.data(), nullptr, DrawRng{5, 0, 0}), 21);
  ds->get(2, y.data(), nullptr, DrawRng{5, 0, 0});
  EXPECT_EQ(x, y);  // same (seed, epoch, position): same sample
  ds->get(2, y.data(), nullptr, DrawRng{5, 0, 1});
  EXPECT_NE(x, y);  // another draw: fresh noise
  const int draws = 50;
  double s1[4] = {}, s2[4] = {};
  for (int d = 0; d < draws; ++d) {
    ds->get(1, x.data(), nullptr, DrawRng{9, d / 10, d % 10});
    for (int c = 0; c < 4; ++c)
      for (int j = 0; j < h * h; ++j) {
        double v = x[size_t(c * h * h + j)];
        s1[c] += v, s2[c] += v * v;
      }
  }
  const double N = draws * h * h, s = 0.18215;
  for (int c = 0; c < 4; ++c) {
    double mean = s1[c] / N, sd = std::sqrt(s2[c] / N - mean * mean);
    double want_sd = s * std::exp(0.5 * std::max(lv[c], -30.0f));
    EXPECT_NEAR(mean, s * mu[c], 5 * want_sd / std::sqrt(N) + 1e-6) << "channel " << c;
    EXPECT_NEAR(sd, want_sd, 0.02 * want_sd + 1e-6) << "channel " << c;
  }
  // A gap in the numbering and a wrong shape are errors naming the file.
  fs::remove(t.path + "/1.npy");
  EXPECT_THROW(make_imagenet_features_dataset(t.path, 256), Error);
  EXPECT_THROW(make_imagenet_features_dataset(t.path, 512), Error);
}

// dataset.feature_kind "deterministic" (SVG's features): items are the stored arrays as they are,
// for any channel count; the moments reader refuses an odd one; the field is validated.
TEST(Data, ImageNetFeaturesDeterministic) {
  TempDir t;
  const int c = 3, h = 16, n = c * h * h;
  for (int i = 0; i < 2; ++i) {
    std::vector<float> f(static_cast<size_t>(n));
    for (int j = 0; j < n; ++j) f[size_t(j)] = 0.01f * float(j) - float(i);
    const auto bytes = encode_feature_record(Array::from_f32({c, h, h}, f.data()), 5 + i);
    write_bytes(t.path + "/" + std::to_string(i) + ".npy", bytes);
  }
  DataOptions o = data_options_from_json(nlohmann::json::parse(
      R"({"dataset": {"name": "imagenet256_features", "feature_kind": "deterministic"}})"));
  o.path = t.path;
  auto ds = make_dataset(o);
  EXPECT_EQ(ds->item_shape(), (std::array<int64_t, 3>{3, 16, 16}));
  std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n));
  EXPECT_EQ(ds->get(1, x.data(), nullptr, DrawRng{5, 0, 0}), 6);
  ds->get(1, y.data(), nullptr, DrawRng{5, 3, 7});
  EXPECT_EQ(x, y);  // no noise
  for (int j = 0; j < n; ++j) ASSERT_EQ(x[size_t(j)], 0.01f * float(j) - 1.f) << j;
  EXPECT_THROW(make_imagenet_features_dataset(t.path, 256), Error);  // 3 channels: not moments
  EXPECT_THROW(data_options_from_json(nlohmann::json::parse(
                   R"({"name": "imagenet256_features", "feature_kind": "sampled"})")),
               Error);
  o.name = "mscoco256_features";
  EXPECT_THROW(make_dataset(o), Error);
}

TEST(Data, MscocoFeatures) {
  TempDir t;
  std::string tr = t.path + "/train";
  fs::create_directories(tr);
  const int ncap[2] = {1, 3};
  for (int i = 0; i < 2; ++i) {
    std::vector<float> m(8 * 32 * 32, 0.0f);
    for (int j = 0; j < 4 * 32 * 32; ++j)
      m[size_t(j)] = float(i + 1), m[size_t(4 * 1024 + j)] = -40.0f;
    save_npy(tr + "/" + std::to_string(i) + ".npy", Array::from_f32({8, 32, 32}, m.data()));
    for (int k = 0; k < ncap[i]; ++k) {
      std::vector<float> c(77 * 768, float(100 * i + k));
      save_npy(tr + "/" + std::to_string(i) + "_" + std::to_string(k) + ".npy",
               Array::from_f32({77, 768}, c.data()));
    }
  }
  std::vector<float> e(77 * 768, -5.0f);
  save_npy(t.path + "/empty_context.npy", Array::from_f32({77, 768}, e.data()));
  auto ds = make_mscoco_features_dataset(t.path, "train", 0.23010);
  ASSERT_EQ(ds->size(), 2);
  EXPECT_EQ(ds->context_shape(), (std::array<int64_t, 2>{77, 768}));
  std::vector<float> x(4 * 32 * 32), ctx(77 * 768);
  int seen[3] = {};
  for (int p = 0; p < 300; ++p) {
    EXPECT_EQ(ds->get(1, x.data(), ctx.data(), DrawRng{3, 0, p}), -1);
    int k = int(ctx[0]) - 100;
    ASSERT_TRUE(k >= 0 && k < 3) << ctx[0];
    seen[k]++;
  }
  EXPECT_NEAR(x[0], 0.23010f * 2.0f, 1e-5);
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(seen[k], 100, 40) << k;  // uniform caption choice
  // cfg: the empty context replaces the caption.
  LoaderOptions o;
  o.batch_size = 2, o.cfg = true, o.p_uncond = 1.0;
  Batch b;
  make_batch(*ds, o, {1, 0, 0}, b);
  EXPECT_EQ(b.L, 77);
  EXPECT_EQ(b.context[0], -5.0f);
  EXPECT_EQ(b.context[77 * 768 + 5], -5.0f);
  fs::remove(tr + "/1_1.npy");
  EXPECT_THROW(make_mscoco_features_dataset(t.path, "train"), Error);
}

TEST(Data, FromConfigJson) {
  auto cfg = nlohmann::json::parse(R"({"dataset": {"name": "fashion_mnist", "path": "/nowhere",
      "random_flip": false, "cfg": true, "p_uncond": 0.1},
      "autoencoder": {"scale_factor": 0.2301}})");
  DataOptions o = data_options_from_json(cfg, kDefaultFmnistPath);
  EXPECT_EQ(o.name, "fmnist");
  EXPECT_EQ(o.path, kDefaultFmnistPath);
  EXPECT_TRUE(o.cfg);
  EXPECT_DOUBLE_EQ(o.p_uncond, 0.1);
  EXPECT_DOUBLE_EQ(o.scale_factor, 0.2301);
  EXPECT_EQ(data_options_from_json(cfg).path, "/nowhere");
  LoaderOptions l = loader_options(o, 32, 7);
  EXPECT_TRUE(l.cfg);
  EXPECT_FALSE(l.random_flip);
  DataOptions c;
  c.name = "celeba";
  EXPECT_TRUE(loader_options(c, 8, 0).random_flip);  // CelebA always flips
  c.name = "imagenet256_features", c.random_flip = true;
  EXPECT_FALSE(loader_options(c, 8, 0).random_flip);  // flips are separate files
  EXPECT_THROW(data_options_from_json(nlohmann::json::parse(R"({"dataset": {"name": "svhn"}})")),
               Error);
  EXPECT_THROW(data_options_from_json(nlohmann::json::parse(R"({"dataset": {"cfg": "yes"}})")),
               Error);
  DataOptions m;
  m.name = "mnist";
  EXPECT_THROW(make_dataset(m), Error);  // no default path
  if (fs::exists(kDefaultFmnistPath)) {
    DataOptions f;  // the built-in default
    auto ds = make_dataset(f);
    EXPECT_EQ(ds->size(), 60000);
    f.resolution = 32;
    EXPECT_THROW(make_dataset(f), Error);  // 28x28 stays 28x28
  }
}

// ---- Loader
// -----------------------------------------------------------------------------------------

namespace {

using uvit::testing::Toy;

LoaderOptions toy_opts(uint64_t seed) {
  LoaderOptions o;
  o.batch_size = 8;
  o.seed = seed;
  o.random_flip = true;
  o.cfg = true;
  o.p_uncond = 0.15;
  o.prefetch = 3;
  return o;
}

bool same(const Batch& a, const Batch& b) {
  return a.x == b.x && a.labels == b.labels && a.epoch == b.epoch && a.offset == b.offset;
}

}  // namespace

TEST(Data, DroppedLabelsTakeTheNetworksNullRow) {
  // A dataset with fewer classes than the network (Toy: 10, a DiT with 1000 + the null row):
  // a dropped label must become the network's null row, not the dataset's class count, which is a
  // real class of the network.
  auto ds = std::make_shared<Toy>(64);
  LoaderOptions o = toy_opts(5);
  o.random_flip = false, o.p_uncond = 0.5, o.batch_size = 64;
  Batch dflt, net;
  make_batch(*ds, o, {5, 0, 0}, dflt);
  o.null_label = 1000;
  make_batch(*ds, o, {5, 0, 0}, net);
  int dropped = 0;
  for (size_t i = 0; i < 64; ++i) {
    if (dflt.labels[i] == 10) {
      EXPECT_EQ(net.labels[i], 1000) << i;  // the same draws are dropped
      ++dropped;
    } else {
      EXPECT_EQ(net.labels[i], dflt.labels[i]) << i;
      EXPECT_LT(net.labels[i], 10) << i;
    }
  }
  EXPECT_GT(dropped, 16);  // p_uncond 0.5 of 64: 32 expected
  EXPECT_LT(dropped, 48);
}

TEST(Data, PermutationIsAPermutationAndSeeded) {
  auto p = epoch_permutation(1, 0, 1000);
  std::vector<int64_t> s = p;
  std::sort(s.begin(), s.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(s[size_t(i)], i);
  EXPECT_EQ(p, epoch_permutation(1, 0, 1000));
  EXPECT_NE(p, epoch_permutation(1, 1, 1000));
  EXPECT_NE(p, epoch_permutation(2, 0, 1000));
  auto id = epoch_permutation(1, 0, 5, false);
  EXPECT_EQ(id, (std::vector<int64_t>{0, 1, 2, 3, 4}));
  // Uniformity: element 0 lands in each of 4 slots about equally often over many epochs.
  int hits[4] = {};
  for (int e = 0; e < 4000; ++e) {
    auto q = epoch_permutation(3, e, 4);
    hits[std::find(q.begin(), q.end(), 0) - q.begin()]++;
  }
  for (int h : hits) EXPECT_NEAR(h, 1000, 5 * std::sqrt(4000 * 0.25 * 0.75));
}

TEST(Data, LoaderDeterministicAndResumable) {
  auto ds = std::make_shared<Toy>(37);  // 4 batches of 8 per epoch, 5 items dropped
  std::vector<Batch> a, b;
  {
    Loader l1(ds, toy_opts(42)), l2(ds, toy_opts(42));
    for (int k = 0; k < 12; ++k) a.push_back(l1.next()), b.push_back(l2.next());
  }
  for (int k = 0; k < 12; ++k) EXPECT_TRUE(same(a[size_t(k)], b[size_t(k)])) << k;
  EXPECT_EQ(a[4].epoch, 1);
  EXPECT_EQ(a[4].offset, 0);
  // Each epoch covers distinct items (no repeats within an epoch).
  std::set<int> seen;
  for (int k = 0; k < 4; ++k)
    for (int i = 0; i < 8; ++i) seen.insert(int(a[size_t(k)].x[size_t(i) * 6 + 1]));
  EXPECT_EQ(seen.size(), 32u);
  // A different seed gives different batches.
  Loader l3(ds, toy_opts(43));
  EXPECT_FALSE(same(l3.next(), a[0]));
  // Save at batch 6, restore in a new loader: the rest is identical. Also equal to make_batch.
  Loader l4(ds, toy_opts(42));
  for (int k = 0; k < 6; ++k) l4.next();
  LoaderState st = l4.get_state();
  EXPECT_EQ(st.seed, 42u);
  EXPECT_EQ(st.epoch, 1);
  EXPECT_EQ(st.offset, 16);
  Loader l5(ds, toy_opts(0));
  l5.next();
  l5.set_state(st);
  for (int k = 6; k < 12; ++k) {
    EXPECT_TRUE(same(l5.next(), a[size_t(k)])) << k;
    Batch m;
    make_batch(*ds, toy_opts(42), {42, a[size_t(k)].epoch, a[size_t(k)].offset}, m);
    EXPECT_TRUE(same(m, a[size_t(k)])) << k;
  }
  // Worker threads do not change the result.
  LoaderOptions w = toy_opts(42);
  w.num_workers = 3;
  Loader l6(ds, w);
  for (int k = 0; k < 5; ++k) EXPECT_TRUE(same(l6.next(), a[size_t(k)])) << k;
}

TEST(Data, LoaderLabelDropoutAndFlipRates) {
  auto ds = std::make_shared<Toy>(1000);
  LoaderOptions o = toy_opts(7);
  o.batch_size = 100;
  Loader l(ds, o);
  int64_t total = 0, dropped = 0, flipped = 0;
  for (int k = 0; k < 200; ++k) {
    Batch b = l.next();
    for (int64_t i = 0; i < b.B; ++i) {
      const float* x = &b.x[size_t(i) * 6];
      int64_t item = int64_t(std::floor(x[0]));
      bool flip = x[0] > x[2];  // row 0 reversed: j = 2, 1, 0
      if (flip) {
        EXPECT_FLOAT_EQ(x[0], float(item) + 0.002f);
        EXPECT_FLOAT_EQ(x[3], float(item) + 0.005f);
      }
      if (b.labels[size_t(i)] == 10)
        ++dropped;
      else
        EXPECT_EQ(b.labels[size_t(i)], item % 10);
      flipped += flip;
      ++total;
    }
  }
  ASSERT_EQ(total, 20000);
  // Binomial(20000, p): 5 standard deviations.
  EXPECT_NEAR(dropped, 0.15 * total, 5 * std::sqrt(total * 0.15 * 0.85));
  EXPECT_NEAR(flipped, 0.5 * total, 5 * std::sqrt(total * 0.25));
}

TEST(Data, LoaderErrors) {
  auto ds = std::make_shared<Toy>(5);
  LoaderOptions o = toy_opts(1);
  EXPECT_THROW(Loader(ds, o), Error);  // fewer items than one batch with drop_last
  o.drop_last = false;
  Loader l(ds, o);
  Batch b = l.next();
  EXPECT_EQ(b.B, 5);
  EXPECT_EQ(l.next().epoch, 1);
  // An error while decoding reaches next() as a uvit::Error.
  TempDir t;
  write_png(t.path + "/a.png", pattern(8, 8, 3));
  write_png(t.path + "/b.png", pattern(8, 8, 3));
  auto folder = make_image_folder_dataset(t.path, 4);
  fs::remove(t.path + "/b.png");
  LoaderOptions f;
  f.batch_size = 2;
  Loader lf(folder, f);
  EXPECT_THROW(lf.next(), Error);
}
