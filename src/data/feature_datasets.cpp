// Pre-encoded latent datasets (ImageNet 256/512 features, MS-COCO 256 features). Each draw returns
// a fresh posterior sample z = scale * (mean + exp(0.5 * clamp(logvar, -30, 20)) * eps), as the
// official training loop's autoencoder.sample(moments); ImageNet features of a deterministic
// encoder (dataset.feature_kind "deterministic", SVG) are returned as stored.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>

#include "data/feature_npy.hpp"
#include "data/item_checks.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace {

// Parses "123" (digits only, no leading zeros except "0").
bool parse_index(const std::string& s, int64_t& v) {
  if (s.empty() || s.size() > 12 || (s.size() > 1 && s[0] == '0')) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  return true;
}

// An encoder's output is float; integer moments (a quantised export) would train as raw counts.
void check_float(const Array& a, const std::string& path, const char* what) {
  UVIT_CHECK(data::is_float_dtype(a.dtype), path, ": ", what, " are a ", dtype_name(a.dtype),
             " array; feature files hold an encoder's float output (float16, float32 or float64; "
             "docs/data.md \"Latent features\")");
}

// A label outside ImageNet's 1000 classes would index past the label embedding.
void check_label(const data::FeatureRecord& r, const std::string& path) {
  UVIT_CHECK(r.label >= 0 && r.label < 1000, path, ": label ", r.label,
             " outside 0..999 (ImageNet's classes; 1000 is the null class, never stored)");
}

// Moments [2c, h, h]: 8 channels for SD's kl-f8, 64 for the VA-VAE f16d32.
void sample_posterior(const Array& moments, const std::string& path, int64_t c, int64_t h,
                      float scale, float* x, const DrawRng& rng) {
  UVIT_CHECK(moments.shape == std::vector<int64_t>({2 * c, h, h}), path, ": moments have shape ",
             shape_str(moments.shape), ", expected [", 2 * c, ", ", h, ", ", h, "]");
  check_float(moments, path, "moments");
  const std::vector<float> m = moments.to_f32();
  data::check_finite(m, path);
  uvit::sample_posterior(m.data(), c, h * h, scale, rng.stream(kRngPosterior),
                         uint64_t(rng.position) * uint64_t(c * h * h), x);
}

// Deterministic features [c, h, h] (SVG's encoder output) copied as they are.
void copy_features(const Array& f, const std::string& path, int64_t c, int64_t h, float* x) {
  UVIT_CHECK(f.shape == std::vector<int64_t>({c, h, h}), path, ": features have shape ",
             shape_str(f.shape), ", expected [", c, ", ", h, ", ", h, "]");
  check_float(f, path, "features");
  const std::vector<float> v = f.to_f32();
  data::check_finite(v, path);
  std::copy(v.begin(), v.end(), x);
}

class ImageNetFeatures : public Dataset {
 public:
  ImageNetFeatures(std::string dir, int64_t n, int64_t c, int64_t h, int resolution, float scale,
                   bool deterministic)
      : dir_(std::move(dir)),
        n_(n),
        c_(c),
        h_(h),
        res_(resolution),
        scale_(scale),
        deterministic_(deterministic) {}
  int64_t size() const override { return n_; }
  std::array<int64_t, 3> item_shape() const override { return {c_, h_, h_}; }
  int num_classes() const override { return 1000; }
  int64_t get(int64_t i, float* x, float*, const DrawRng& rng) const override {
    UVIT_CHECK(i >= 0 && i < n_, dir_, ": index ", i, " out of range");
    std::string path = cat(dir_, "/", i, ".npy");
    data::FeatureRecord r = data::load_feature_record(path);
    check_label(r, path);
    if (deterministic_)
      copy_features(r.moments, path, c_, h_, x);
    else
      sample_posterior(r.moments, path, c_, h_, scale_, x, rng);
    return r.label;
  }
  std::string describe() const override {
    if (deterministic_)
      return cat("imagenet", res_, "_features ", dir_, ": ", n_, " deterministic features [", c_,
                 ",", h_, ",", h_, "], 1000 classes, used as-is");
    return cat("imagenet", res_, "_features ", dir_, ": ", n_, " moments [", 2 * c_, ",", h_, ",",
               h_, "], 1000 classes, scale ", scale_);
  }

 private:
  std::string dir_;
  int64_t n_, c_, h_;
  int res_;
  float scale_;
  bool deterministic_;
};

class CocoFeatures : public Dataset {
 public:
  CocoFeatures(std::string dir, std::vector<int> ncap, std::vector<float> empty, float scale)
      : dir_(std::move(dir)), ncap_(std::move(ncap)), empty_(std::move(empty)), scale_(scale) {}
  int64_t size() const override { return int64_t(ncap_.size()); }
  std::array<int64_t, 3> item_shape() const override { return {4, 32, 32}; }
  std::array<int64_t, 2> context_shape() const override { return {77, 768}; }
  const std::vector<float>& empty_context() const override { return empty_; }
  int64_t get(int64_t i, float* x, float* ctx, const DrawRng& rng) const override {
    UVIT_CHECK(i >= 0 && i < size(), dir_, ": index ", i, " out of range");
    std::string path = cat(dir_, "/", i, ".npy");
    sample_posterior(load_npy(path), path, 4, 32, scale_, x, rng);
    // random.randint(0, n - 1): one caption uniformly.
    int n = ncap_[size_t(i)];
    int k = std::min(n - 1, int(rng.stream(kRngCaption).uniform(uint64_t(rng.position)) * n));
    std::string cpath = cat(dir_, "/", i, "_", k, ".npy");
    Array c = load_npy(cpath);
    UVIT_CHECK(c.shape == std::vector<int64_t>({77, 768}), cpath, ": context has shape ",
               shape_str(c.shape), ", expected [77, 768]");
    std::vector<float> v = c.to_f32();
    std::copy(v.begin(), v.end(), ctx);
    return -1;
  }
  std::string describe() const override {
    return cat("mscoco256_features ", dir_, ": ", size(),
               " moments [8,32,32] with captions, scale ", scale_);
  }

 private:
  std::string dir_;
  std::vector<int> ncap_;
  std::vector<float> empty_;
  float scale_;
};

}  // namespace

std::shared_ptr<Dataset> make_imagenet_features_dataset(const std::string& dir, int resolution,
                                                        double scale_factor, bool deterministic) {
  UVIT_CHECK(resolution == 256 || resolution == 512, dir,
             ": feature resolution must be 256 or 512, got ", resolution);
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  // The official length is hard-coded (2,562,334); we count the files and require 0..n-1.
  int64_t count = 0, maxi = -1;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    int64_t v;
    if (name.size() > 4 && name.ends_with(".npy") &&
        parse_index(name.substr(0, name.size() - 4), v)) {
      ++count;
      maxi = std::max(maxi, v);
    }
  }
  UVIT_CHECK(!ec, dir, ": cannot list directory: ", ec.message());
  UVIT_CHECK(count > 0, dir, ": no feature files {idx}.npy found");
  if (count != maxi + 1) {
    for (int64_t i = 0; i <= maxi; ++i)
      UVIT_CHECK(fs::exists(cat(dir, "/", i, ".npy")), dir, ": feature file ", i,
                 ".npy is missing (found ", count, " files up to index ", maxi, ")");
  }
  // The latent geometry comes from the first file: [8, r/8, r/8] (SD kl-f8) or [64, r/16, r/16]
  // (VA-VAE f16d32), any [2C, r/f, r/f] with f a power of two; deterministic: [C, r/f, r/f]
  // ([392, r/16, r/16] for SVG).
  std::string first = dir + "/0.npy";
  data::FeatureRecord r = data::load_feature_record(first);
  // The first file's dtype and label here, every file's when drawn (a folder holds millions).
  check_float(r.moments, first, deterministic ? "features" : "moments");
  check_label(r, first);
  const auto& s = r.moments.shape;
  const int64_t h = s.size() == 3 ? s[1] : 0;
  UVIT_CHECK(s.size() == 3 && s[0] > 0 && (deterministic || s[0] % 2 == 0) && h > 0 && s[2] == h &&
                 resolution % h == 0 && ((resolution / h) & (resolution / h - 1)) == 0,
             first, ": ", deterministic ? "features" : "moments", " have shape ", shape_str(s),
             ", expected [", deterministic ? "C" : "2C", ", ", resolution, "/f, ", resolution,
             "/f] (f a power of two) for resolution ", resolution);
  return std::make_shared<ImageNetFeatures>(dir, count, deterministic ? s[0] : s[0] / 2, h,
                                            resolution, float(scale_factor), deterministic);
}

std::shared_ptr<Dataset> make_mscoco_features_dataset(const std::string& dir,
                                                      const std::string& split,
                                                      double scale_factor) {
  UVIT_CHECK(split == "train" || split == "val" || split == "test", dir, ": unknown split '", split,
             "' (train or val)");
  std::string sub = dir + "/" + (split == "train" ? "train" : "val");
  UVIT_CHECK(fs::is_directory(sub), sub, ": dataset directory not found");
  std::map<int64_t, int> caps;  // image -> highest caption index + 1
  std::map<int64_t, int> ncount;
  std::vector<char> have;
  int64_t images = 0;
  std::error_code ec;
  for (fs::directory_iterator it(sub, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() <= 4 || !name.ends_with(".npy")) continue;
    std::string stem = name.substr(0, name.size() - 4);
    size_t us = stem.find('_');
    int64_t i, k;
    if (us == std::string::npos) {
      if (!parse_index(stem, i)) continue;
      if (int64_t(have.size()) <= i) have.resize(size_t(i) + 1, 0);
      have[size_t(i)] = 1;
      ++images;
    } else if (parse_index(stem.substr(0, us), i) && parse_index(stem.substr(us + 1), k)) {
      caps[i] = std::max(caps[i], int(k) + 1);
      ncount[i] += 1;
    }
  }
  UVIT_CHECK(!ec, sub, ": cannot list directory: ", ec.message());
  UVIT_CHECK(images > 0, sub, ": no feature files {i}.npy found");
  std::vector<int> ncap(size_t(images), 0);
  for (int64_t i = 0; i < images; ++i) {
    UVIT_CHECK(i < int64_t(have.size()) && have[size_t(i)], sub, ": feature file ", i,
               ".npy is missing (", images, " images found)");
    auto c = caps.find(i);
    UVIT_CHECK(c != caps.end(), sub, ": image ", i, " has no caption files ", i, "_{k}.npy");
    UVIT_CHECK(ncount[i] == c->second, sub, ": captions of image ", i, " are not numbered 0..",
               c->second - 1);
    ncap[size_t(i)] = c->second;
  }
  std::string epath = dir + "/empty_context.npy";
  UVIT_CHECK(fs::exists(epath), epath, ": missing (CLIP embedding of the empty prompt)");
  Array e = load_npy(epath);
  UVIT_CHECK(e.shape == std::vector<int64_t>({77, 768}), epath, ": shape ", shape_str(e.shape),
             ", expected [77, 768]");
  return std::make_shared<CocoFeatures>(sub, std::move(ncap), e.to_f32(), float(scale_factor));
}

}  // namespace uvit
