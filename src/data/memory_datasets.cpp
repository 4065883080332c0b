// Small datasets held in memory as uint8: MNIST / Fashion-MNIST idx files and CIFAR-10 binaries.
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>

#include "data/pixels.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace data {

const std::array<float, 256>& totensor_normalize_lut() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> r{};
    for (int i = 0; i < 256; ++i) {
      volatile float u = float(i) / 255.0f;  // ToTensor, float32
      r[i] = (u - 0.5f) / 0.5f;              // Normalize
    }
    return r;
  }();
  return t;
}

const std::array<float, 256>& imagenet_lut() {
  static const std::array<float, 256> t = [] {
    std::array<float, 256> r{};
    for (int i = 0; i < 256; ++i) {
      volatile float u = float(i) / 127.5f;
      r[i] = u - 1.0f;
    }
    return r;
  }();
  return t;
}

}  // namespace data

namespace {

// A dataset of uint8 CHW images kept in memory.
class MemoryDataset : public Dataset {
 public:
  MemoryDataset(std::string desc, int64_t n, int64_t c, int64_t h, int64_t w, int k,
                std::vector<uint8_t> px, std::vector<int64_t> labels)
      : desc_(std::move(desc)),
        n_(n),
        c_(c),
        h_(h),
        w_(w),
        k_(k),
        px_(std::move(px)),
        labels_(std::move(labels)) {}
  int64_t size() const override { return n_; }
  std::array<int64_t, 3> item_shape() const override { return {c_, h_, w_}; }
  int num_classes() const override { return k_; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    UVIT_CHECK(i >= 0 && i < n_, desc_, ": index ", i, " out of range");
    const auto& lut = data::totensor_normalize_lut();
    int64_t m = c_ * h_ * w_;
    const uint8_t* p = &px_[size_t(i * m)];
    for (int64_t j = 0; j < m; ++j) x[j] = lut[p[j]];
    return labels_[size_t(i)];
  }
  std::string describe() const override { return desc_; }

 private:
  std::string desc_;
  int64_t n_, c_, h_, w_;
  int k_;
  std::vector<uint8_t> px_;
  std::vector<int64_t> labels_;
};

uint32_t be32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}

// Reads an idx file whole, inflating it when it starts with the gzip magic. The gunzipped size is
// bounded by the header: once `header` bytes are in, `declared` checks them (it also gets fewer
// at the end of a short stream) and returns the file size they declare; a stream that inflates
// to more is refused without inflating further, so a small .gz cannot expand to gigabytes.
std::vector<uint8_t> read_idx_file(
    const std::string& path, size_t header,
    const std::function<int64_t(const std::vector<uint8_t>&)>& declared) {
  const auto head = [&](const std::vector<uint8_t>& b) {
    return size_t(
        declared(std::vector<uint8_t>(b.begin(), b.begin() + long(std::min(header, b.size())))));
  };
  std::vector<uint8_t> raw = read_file(path);
  if (raw.size() < 2 || raw[0] != 0x1f || raw[1] != 0x8b) {
    head(raw);  // the header checks; the caller compares the sizes
    return raw;
  }
  z_stream zs{};
  UVIT_CHECK(inflateInit2(&zs, 16 + MAX_WBITS) == Z_OK, path, ": zlib init failed");
  std::vector<uint8_t> out;
  zs.next_in = raw.data();
  zs.avail_in = uInt(raw.size());
  // `limit`: the bytes wanted so far (the header, then the declared size); one more shows excess.
  size_t limit = header;
  bool sized = false;
  int rc = Z_OK;
  try {
    while (rc != Z_STREAM_END) {
      if (!sized && zs.total_out >= header) {
        limit = head(out);
        sized = true;
      }
      UVIT_CHECK(zs.total_out <= limit, path, ": the gzip stream inflates to more than the ", limit,
                 " bytes its idx header declares");
      out.resize(std::min(std::max<size_t>(out.size() * 2, size_t(1) << 20), limit + 1));
      zs.next_out = out.data() + zs.total_out;
      zs.avail_out = uInt(std::min<size_t>(out.size() - zs.total_out, 1u << 30));
      rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) {
        if (rc == Z_BUF_ERROR) fail(path, ": truncated gzip stream");
        fail(path, ": corrupt gzip stream (", zs.msg ? zs.msg : cat("zlib error ", rc), ")");
      }
    }
  } catch (...) {
    inflateEnd(&zs);
    throw;
  }
  out.resize(zs.total_out);
  inflateEnd(&zs);
  if (!sized) limit = head(out);  // the whole stream fit in the first read
  UVIT_CHECK(out.size() <= limit, path, ": the gzip stream inflates to more than the ", limit,
             " bytes its idx header declares");
  return out;
}

// `stem` without extension: prefers the raw file, else stem.gz.
std::string find_idx(const std::string& dir, const std::string& stem) {
  std::string raw = dir + "/" + stem;
  if (fs::exists(raw)) return raw;
  if (fs::exists(raw + ".gz")) return raw + ".gz";
  fail(dir, ": missing ", stem, "(.gz)");
}

}  // namespace

std::shared_ptr<Dataset> make_idx_dataset(const std::string& dir, const std::string& split) {
  UVIT_CHECK(split == "train" || split == "test", dir, ": unknown split '", split,
             "' (train or test)");
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::string pre = split == "train" ? "train" : "t10k";
  std::string ipath = find_idx(dir, pre + "-images-idx3-ubyte");
  std::string lpath = find_idx(dir, pre + "-labels-idx1-ubyte");
  // The header checks run on the first bytes (of a .gz too, before the rest is inflated).
  int64_t n = 0, rows = 0, cols = 0;
  const std::vector<uint8_t> im = read_idx_file(ipath, 16, [&](const std::vector<uint8_t>& h) {
    UVIT_CHECK(h.size() >= 16, ipath, ": truncated idx header (", h.size(), " bytes)");
    UVIT_CHECK(be32(&h[0]) == 0x803, ipath, ": bad idx magic 0x", std::hex, be32(&h[0]),
               " (expected 0x803: unsigned bytes, 3 dimensions)");
    n = be32(&h[4]), rows = be32(&h[8]), cols = be32(&h[12]);
    UVIT_CHECK(n > 0 && rows > 0 && cols > 0 && rows <= 4096 && cols <= 4096, ipath,
               ": bad idx dimensions ", n, "x", rows, "x", cols);
    return 16 + n * rows * cols;
  });
  UVIT_CHECK(int64_t(im.size()) == 16 + n * rows * cols, ipath, ": size mismatch: header says ", n,
             " images of ", rows, "x", cols, " (", 16 + n * rows * cols, " bytes), file has ",
             im.size());
  const std::vector<uint8_t> lb = read_idx_file(lpath, 8, [&](const std::vector<uint8_t>& h) {
    UVIT_CHECK(h.size() >= 8, lpath, ": truncated idx header (", h.size(), " bytes)");
    UVIT_CHECK(be32(&h[0]) == 0x801, lpath, ": bad idx magic 0x", std::hex, be32(&h[0]),
               " (expected 0x801: unsigned bytes, 1 dimension)");
    const int64_t nl = be32(&h[4]);
    UVIT_CHECK(nl == n, lpath, ": ", nl, " labels for ", n, " images in ", ipath);
    return 8 + n;
  });
  UVIT_CHECK(int64_t(lb.size()) == 8 + n, lpath, ": size mismatch: header says ", n,
             " labels, file has ", lb.size() - 8, " bytes of labels");
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) {
    labels[i] = lb[8 + i];
    UVIT_CHECK(labels[i] <= 9, lpath, ": label ", labels[i], " of item ", i,
               " is not a digit class");
  }
  return std::make_shared<MemoryDataset>(
      cat("idx ", dir, " (", split, "): ", n, " images 1x", rows, "x", cols, ", 10 classes"), n, 1,
      rows, cols, 10, std::vector<uint8_t>(im.begin() + 16, im.end()), std::move(labels));
}

std::shared_ptr<Dataset> make_cifar10_dataset(const std::string& dir_in, const std::string& split) {
  UVIT_CHECK(split == "train" || split == "test", dir_in, ": unknown split '", split,
             "' (train or test)");
  std::string dir = dir_in;
  if (!fs::exists(dir + "/test_batch.bin") && !fs::exists(dir + "/data_batch_1.bin") &&
      fs::is_directory(dir + "/cifar-10-batches-bin"))
    dir += "/cifar-10-batches-bin";
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::vector<std::string> files;
  if (split == "train")
    for (int b = 1; b <= 5; ++b) files.push_back(cat(dir, "/data_batch_", b, ".bin"));
  else
    files.push_back(dir + "/test_batch.bin");
  constexpr int64_t kRec = 1 + 3072, kPer = 10000;
  std::vector<uint8_t> px;
  std::vector<int64_t> labels;
  px.reserve(files.size() * kPer * 3072);
  for (const auto& f : files) {
    UVIT_CHECK(fs::exists(f), f, ": missing CIFAR-10 batch file");
    // The size first, so that a wrong file is not read whole.
    std::error_code ec;
    const uintmax_t bytes = fs::file_size(f, ec);
    UVIT_CHECK(!ec && bytes == uintmax_t(kRec * kPer), f, ": expected ", kRec * kPer,
               " bytes (10000 records of 1 label + 3072 pixels), file has ",
               ec ? std::string("no size (") + ec.message() + ")" : std::to_string(bytes));
    std::vector<uint8_t> d = read_file(f);
    UVIT_CHECK(int64_t(d.size()) == kRec * kPer, f, ": expected ", kRec * kPer,
               " bytes (10000 records of 1 label + 3072 pixels), file has ", d.size());
    for (int64_t r = 0; r < kPer; ++r) {
      const uint8_t* rec = &d[size_t(r * kRec)];
      UVIT_CHECK(rec[0] < 10, f, ": record ", r, " has label ", int(rec[0]), " (expected 0..9)");
      labels.push_back(rec[0]);
      px.insert(px.end(), rec + 1, rec + kRec);
    }
  }
  int64_t n = int64_t(labels.size());
  return std::make_shared<MemoryDataset>(
      cat("cifar10 ", dir, " (", split, "): ", n, " images 3x32x32, 10 classes"), n, 3, 32, 32, 10,
      std::move(px), std::move(labels));
}

}  // namespace uvit
