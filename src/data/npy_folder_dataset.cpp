// A folder of per-image .npy arrays of varying size (FiTv2's packed training, docs/data.md): each
// item sits top-left on a fixed canvas, the loader passes its valid size on with the batch.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "data/item_checks.hpp"
#include "data/pixels.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace {

class NpyFolder final : public Dataset {
 public:
  NpyFolder(const std::string& dir, int C, int H, int W, int patch, int max_tokens,
            const std::string& resize_or_crop)
      : C_(C), H_(H), W_(W) {
    UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
    UVIT_CHECK(C > 0 && H > 0 && W > 0 && patch > 0 && max_tokens >= 0, "dataset npy_folder ", dir,
               ": bad canvas [", C, ", ", H, ", ", W, "] / patch ", patch, " / max_tokens ",
               max_tokens);
    UVIT_CHECK(resize_or_crop == "random" || resize_or_crop == "resize" || resize_or_crop == "crop",
               "dataset npy_folder: resize_or_crop '", resize_or_crop,
               "' is not random, resize or crop");
    choice_ = resize_or_crop == "random" ? kRandom : resize_or_crop == "resize" ? kResize : kCrop;
    std::vector<std::string> flips, crops;
    for (std::string& f : data::list_files_recursively(dir, {"npy"}))
      (f.ends_with(kFlipSuffix)   ? flips
       : f.ends_with(kCropSuffix) ? crops
                                  : files_)
          .push_back(std::move(f));
    UVIT_CHECK(!files_.empty(), dir, ": no .npy files found");
    labels_ = data::prefix_labels(files_, &k_);
    // Only each file's header here (a folder may hold many thousands); get() reads the data.
    const auto fits = [&](const std::string& f, const std::string& role) -> std::array<int, 2> {
      const NpyInfo a = read_npy_header(f);
      UVIT_CHECK(a.shape.size() == 3 && a.shape[0] == C, f, role, ": expected a [", C,
                 ", h, w] array, got ", shape_str(a.shape));
      // Items are used as stored: uint8 pixels would train as values 0..255.
      UVIT_CHECK(data::is_float_dtype(a.dtype), f, role, ": a ", dtype_name(a.dtype),
                 " array; items are used as stored, so they must be floats (latents, or pixels in "
                 "[-1, 1]: x / 127.5 - 1; docs/data.md)");
      const int h = int(a.shape[1]), w = int(a.shape[2]);
      UVIT_CHECK(h > 0 && w > 0 && h <= H && w <= W && h % patch == 0 && w % patch == 0, f, role,
                 ": ", h, " x ", w, " is not a multiple of ", patch, " within the ", H, " x ", W,
                 " canvas");
      UVIT_CHECK(max_tokens == 0 || (h / patch) * (w / patch) <= max_tokens, f, role, ": ",
                 (h / patch) * (w / patch), " tokens exceed max_tokens ", max_tokens);
      return {h, w};
    };
    versions_.resize(files_.size());
    std::unordered_map<std::string, std::pair<size_t, int>> where;  // item or crop file -> [i][v]
    for (size_t i = 0; i < files_.size(); ++i) {
      versions_[i][0] = {files_[i], "", fits(files_[i], "")};
      where.emplace(files_[i], std::pair<size_t, int>{i, 0});
    }
    // A crop version (NAME.crop.npy, what `convert-fit-latents --versions both` writes) is an
    // alternative of the item NAME.npy, not an item: the official loader's list of the two.
    for (const std::string& f : crops) {
      const std::string item = f.substr(0, f.size() - kCropSuffix.size()) + ".npy";
      const auto it = where.find(item);
      UVIT_CHECK(it != where.end() && it->second.second == 0, f,
                 ": a crop version without its item ", item);
      const size_t i = it->second.first;
      versions_[i][1] = {f, "", fits(f, cat(" (the crop version of ", item, ")"))};
      where.emplace(f, std::pair<size_t, int>{i, 1});
    }
    // Stored flips, matched to their item or crop version by name.
    for (const std::string& f : flips) {
      const std::string of = f.substr(0, f.size() - kFlipSuffix.size()) + ".npy";
      const auto it = where.find(of);
      UVIT_CHECK(it != where.end(), f, ": a stored flip without its item ", of);
      Stored& s = versions_[it->second.first][size_t(it->second.second)];
      const NpyInfo a = read_npy_header(f);
      UVIT_CHECK(a.shape == std::vector<int64_t>({C, s.size[0], s.size[1]}), f, ": shape ",
                 shape_str(a.shape), " differs from its item's [", C, ", ", s.size[0], ", ",
                 s.size[1], "]");
      s.flip = f;
    }
    // A draw may take either version, so random_flip must find the same kind of flip in both.
    for (const auto& v : versions_) {
      if (v[1].file.empty() || v[0].flip.empty() == v[1].flip.empty()) continue;
      const Stored &without = v[0].flip.empty() ? v[0] : v[1],
                   &with = v[0].flip.empty() ? v[1] : v[0];
      fail(without.file, ": no stored flip, while its other version ", with.file, " has one");
    }
    desc_ = cat("npy folder ", dir, ": ", files_.size(), " arrays (", flips.size(),
                " stored flips), ", k_, " classes, canvas [", C, ", ", H, ", ", W, "]");
    if (!crops.empty())
      desc_ +=
          cat(", ", crops.size(), " with a crop version (resize_or_crop ", resize_or_crop, ")");
  }
  int64_t size() const override { return int64_t(files_.size()); }
  std::array<int64_t, 3> item_shape() const override { return {C_, H_, W_}; }
  int num_classes() const override { return k_; }
  bool variable_size() const override { return true; }
  std::array<int, 2> valid_size(int64_t i, const DrawRng& rng) const override {
    return drawn(i, rng).size;
  }
  int64_t get(int64_t i, float* x, float*, const DrawRng& rng) const override {
    const Stored& s = drawn(i, rng);
    read(s.file, s.size, x);
    return labels_[size_t(i)];
  }
  // The stored flip when there is one (the latent of the mirrored image is not the mirrored
  // latent), else the valid region mirrored in place (pixel arrays).
  int64_t get_flipped(int64_t i, float* x, float* ctx, const DrawRng& rng) const override {
    const Stored& s = drawn(i, rng);
    const auto [h, w] = s.size;
    if (!s.flip.empty()) {
      read(s.flip, s.size, x);
      return labels_[size_t(i)];
    }
    get(i, x, ctx, rng);
    for (int64_t r = 0; r < C_ * H_; ++r)
      if (r % H_ < h) std::reverse(x + r * W_, x + r * W_ + w);
    return labels_[size_t(i)];
  }
  std::string describe() const override { return desc_; }

 private:
  struct Stored {
    std::string file, flip;  // flip: its stored flip, "" if none
    std::array<int, 2> size{};
  };
  static constexpr std::string_view kFlipSuffix = ".flip.npy", kCropSuffix = ".crop.npy";
  // The version draw `rng` takes of item i: its crop version with p 1/2 (resize_or_crop random,
  // the official random.choice) from its own stream, so the flip draw is untouched; an item
  // without one draws nothing.
  const Stored& drawn(int64_t i, const DrawRng& rng) const {
    UVIT_CHECK(i >= 0 && i < size(), desc_, ": index ", i, " out of range");
    const auto& v = versions_[size_t(i)];
    if (v[1].file.empty() || choice_ == kResize) return v[0];
    if (choice_ == kCrop) return v[1];
    return rng.stream(kRngVersion).uniform(uint64_t(rng.position)) < 0.5f ? v[1] : v[0];
  }
  // File f, checked against its opening size, top-left on the zeroed canvas.
  void read(const std::string& f, std::array<int, 2> size, float* x) const {
    const Array a = load_npy(f);
    const auto [h, w] = size;
    UVIT_CHECK(a.shape == std::vector<int64_t>({C_, h, w}), f,
               ": changed shape since the dataset opened, now ", shape_str(a.shape));
    const std::vector<float> v = a.to_f32();
    data::check_finite(v, f);
    std::fill(x, x + C_ * H_ * W_, 0.f);
    for (int64_t c = 0; c < C_; ++c)
      for (int y = 0; y < h; ++y) std::copy_n(v.data() + (c * h + y) * w, w, x + (c * H_ + y) * W_);
  }

  int64_t C_, H_, W_;
  int k_ = 0;
  enum Choice { kRandom, kResize, kCrop } choice_;  // resize_or_crop
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  std::vector<std::array<Stored, 2>> versions_;  // per item: [0] itself, [1] its crop version
  std::string desc_;
};

}  // namespace

std::shared_ptr<Dataset> make_npy_folder_dataset(const std::string& dir, int channels, int canvas_h,
                                                 int canvas_w, int patch, int max_tokens,
                                                 const std::string& resize_or_crop) {
  return std::make_shared<NpyFolder>(dir, channels, canvas_h, canvas_w, patch, max_tokens,
                                     resize_or_crop);
}

}  // namespace uvit
