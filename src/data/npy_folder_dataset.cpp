// A folder of per-image .npy arrays of varying size (FiTv2's packed training, docs/data.md): each
// item sits top-left on a fixed canvas, the loader passes its valid size on with the batch.
#include <algorithm>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "data/pixels.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace {

class NpyFolder final : public Dataset {
 public:
  NpyFolder(const std::string& dir, int C, int H, int W, int patch, int max_tokens)
      : C_(C), H_(H), W_(W) {
    UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
    UVIT_CHECK(C > 0 && H > 0 && W > 0 && patch > 0 && max_tokens >= 0, "dataset npy_folder ", dir,
               ": bad canvas [", C, ", ", H, ", ", W, "] / patch ", patch, " / max_tokens ",
               max_tokens);
    std::vector<std::string> flips;
    for (std::string& f : data::list_files_recursively(dir, {"npy"}))
      (is_flip(f) ? flips : files_).push_back(std::move(f));
    UVIT_CHECK(!files_.empty(), dir, ": no .npy files found");
    labels_ = data::prefix_labels(files_, &k_);
    // Only each file's header here (a folder may hold many thousands); get() reads the data.
    for (const std::string& f : files_) {
      const NpyInfo a = read_npy_header(f);
      UVIT_CHECK(a.shape.size() == 3 && a.shape[0] == C, f, ": expected a [", C,
                 ", h, w] array, got ", shape_str(a.shape));
      const int h = int(a.shape[1]), w = int(a.shape[2]);
      UVIT_CHECK(h > 0 && w > 0 && h <= H && w <= W && h % patch == 0 && w % patch == 0, f, ": ", h,
                 " x ", w, " is not a multiple of ", patch, " within the ", H, " x ", W, " canvas");
      UVIT_CHECK(max_tokens == 0 || (h / patch) * (w / patch) <= max_tokens, f, ": ",
                 (h / patch) * (w / patch), " tokens exceed max_tokens ", max_tokens);
      sizes_.push_back({h, w});
    }
    // Stored flips, matched to their items by name.
    flip_of_.assign(files_.size(), "");
    std::unordered_map<std::string, size_t> index;
    for (size_t i = 0; i < files_.size(); ++i) index.emplace(files_[i], i);
    for (const std::string& f : flips) {
      const std::string item = f.substr(0, f.size() - kFlipSuffix.size()) + ".npy";
      const auto it = index.find(item);
      UVIT_CHECK(it != index.end(), f, ": a stored flip without its item ", item);
      const size_t i = it->second;
      const NpyInfo a = read_npy_header(f);
      UVIT_CHECK(a.shape == std::vector<int64_t>({C, sizes_[i][0], sizes_[i][1]}), f, ": shape ",
                 shape_str(a.shape), " differs from its item's [", C, ", ", sizes_[i][0], ", ",
                 sizes_[i][1], "]");
      flip_of_[i] = f;
    }
    desc_ = cat("npy folder ", dir, ": ", files_.size(), " arrays (", flips.size(),
                " stored flips), ", k_, " classes, canvas [", C, ", ", H, ", ", W, "]");
  }
  int64_t size() const override { return int64_t(files_.size()); }
  std::array<int64_t, 3> item_shape() const override { return {C_, H_, W_}; }
  int num_classes() const override { return k_; }
  bool variable_size() const override { return true; }
  std::array<int, 2> valid_size(int64_t i) const override { return sizes_.at(size_t(i)); }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    UVIT_CHECK(i >= 0 && i < size(), desc_, ": index ", i, " out of range");
    read(files_[size_t(i)], sizes_[size_t(i)], x);
    return labels_[size_t(i)];
  }
  // The stored flip when there is one (the latent of the mirrored image is not the mirrored
  // latent), else the valid region mirrored in place (pixel arrays).
  int64_t get_flipped(int64_t i, float* x, float* ctx, const DrawRng& rng) const override {
    UVIT_CHECK(i >= 0 && i < size(), desc_, ": index ", i, " out of range");
    const auto [h, w] = sizes_[size_t(i)];
    if (!flip_of_[size_t(i)].empty()) {
      read(flip_of_[size_t(i)], {h, w}, x);
      return labels_[size_t(i)];
    }
    get(i, x, ctx, rng);
    for (int64_t r = 0; r < C_ * H_; ++r)
      if (r % H_ < h) std::reverse(x + r * W_, x + r * W_ + w);
    return labels_[size_t(i)];
  }
  std::string describe() const override { return desc_; }

 private:
  static constexpr std::string_view kFlipSuffix = ".flip.npy";
  static bool is_flip(const std::string& f) {
    return f.size() >= kFlipSuffix.size() &&
           f.compare(f.size() - kFlipSuffix.size(), kFlipSuffix.size(), kFlipSuffix) == 0;
  }
  // File f, checked against its opening size, top-left on the zeroed canvas.
  void read(const std::string& f, std::array<int, 2> size, float* x) const {
    const Array a = load_npy(f);
    const auto [h, w] = size;
    UVIT_CHECK(a.shape == std::vector<int64_t>({C_, h, w}), f,
               ": changed shape since the dataset opened, now ", shape_str(a.shape));
    const std::vector<float> v = a.to_f32();
    std::fill(x, x + C_ * H_ * W_, 0.f);
    for (int64_t c = 0; c < C_; ++c)
      for (int y = 0; y < h; ++y) std::copy_n(v.data() + (c * h + y) * w, w, x + (c * H_ + y) * W_);
  }

  int64_t C_, H_, W_;
  int k_ = 0;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  std::vector<std::array<int, 2>> sizes_;
  std::vector<std::string> flip_of_;  // the stored flip of each item, "" if none
  std::string desc_;
};

}  // namespace

std::shared_ptr<Dataset> make_npy_folder_dataset(const std::string& dir, int channels, int canvas_h,
                                                 int canvas_w, int patch, int max_tokens) {
  return std::make_shared<NpyFolder>(dir, channels, canvas_h, canvas_w, patch, max_tokens);
}

}  // namespace uvit
