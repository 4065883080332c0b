// Datasets decoded from image files on every draw: CelebA, ImageNet (pixel space), plain folders.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "data/pixels.hpp"
#include "uvit/ascii.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace data {

std::vector<std::string> list_files_recursively(const std::string& dir,
                                                const std::vector<std::string>& exts) {
  std::vector<std::string> entries, out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    entries.push_back(it->path().filename().string());
  UVIT_CHECK(!ec, dir, ": cannot list directory: ", ec.message());
  std::sort(entries.begin(), entries.end());
  for (const auto& e : entries) {
    std::string full = dir + "/" + e;
    size_t dot = e.rfind('.');
    const std::string ext = ascii_lower(dot == std::string::npos ? "" : e.substr(dot + 1));
    if (dot != std::string::npos && std::find(exts.begin(), exts.end(), ext) != exts.end()) {
      out.push_back(full);
    } else if (fs::is_directory(full)) {
      auto sub = list_files_recursively(full, exts);
      out.insert(out.end(), sub.begin(), sub.end());
    }
  }
  return out;
}

std::vector<std::string> list_images_recursively(const std::string& dir) {
  return list_files_recursively(dir, {"jpg", "jpeg", "png", "gif"});
}

std::vector<int64_t> prefix_labels(const std::vector<std::string>& files, int* classes) {
  std::vector<std::string> cls(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    std::string b = fs::path(files[i]).filename().string();
    cls[i] = b.substr(0, b.find('_'));
  }
  std::set<std::string> uniq(cls.begin(), cls.end());
  std::map<std::string, int64_t> index;
  for (const auto& c : uniq) index.emplace(c, int64_t(index.size()));
  std::vector<int64_t> labels(files.size());
  for (size_t i = 0; i < files.size(); ++i) labels[i] = index[cls[i]];
  *classes = int(uniq.size());
  return labels;
}

}  // namespace data

namespace {

enum class Transform { CelebA, CenterCrop };

class ImageFileDataset : public Dataset {
 public:
  ImageFileDataset(std::string desc, std::vector<std::string> files, std::vector<int64_t> labels,
                   int k, int res, Transform t)
      : desc_(std::move(desc)),
        files_(std::move(files)),
        labels_(std::move(labels)),
        k_(k),
        res_(res),
        t_(t) {}
  int64_t size() const override { return int64_t(files_.size()); }
  std::array<int64_t, 3> item_shape() const override { return {3, res_, res_}; }
  int num_classes() const override { return k_; }
  int64_t get(int64_t i, float* x, float*, const DrawRng&) const override {
    UVIT_CHECK(i >= 0 && i < size(), desc_, ": index ", i, " out of range");
    Image im = read_image(files_[size_t(i)], 3);  // PIL .convert("RGB")
    const std::array<float, 256>* lut;
    if (t_ == Transform::CelebA) {
      // F.crop(img, 57, 25, 128, 128), then Resize(res) (PIL bilinear, antialiased).
      im = crop(im, 25, 57, 128, 128);
      if (res_ != 128) im = resize_pil(im, res_, res_, Resample::Bilinear);
      lut = &data::totensor_normalize_lut();
    } else {
      im = center_crop_arr(im, res_);
      lut = &data::imagenet_lut();
    }
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < res_; ++y)
        for (int xx = 0; xx < res_; ++xx) x[(c * res_ + y) * res_ + xx] = (*lut)[im.at(y, xx, c)];
    return labels_.empty() ? -1 : labels_[size_t(i)];
  }
  std::string describe() const override { return desc_; }

 private:
  std::string desc_;
  std::vector<std::string> files_;
  std::vector<int64_t> labels_;
  int k_;
  int64_t res_;
  Transform t_;
};

}  // namespace

std::shared_ptr<Dataset> make_celeba_dataset(const std::string& dir, int resolution,
                                             const std::string& split) {
  UVIT_CHECK(resolution > 0, dir, ": bad resolution ", resolution);
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::string base;
  for (const std::string& b : {dir + "/celeba", dir})
    if (fs::exists(b + "/list_eval_partition.txt")) {
      base = b;
      break;
    }
  std::vector<std::string> files;
  if (!base.empty()) {
    std::map<std::string, int> part = {
        {"train", 0}, {"valid", 1}, {"val", 1}, {"test", 2}, {"all", -1}};
    UVIT_CHECK(part.count(split), dir, ": unknown CelebA split '", split, "'");
    std::string list = base + "/list_eval_partition.txt";
    std::ifstream in(list);
    UVIT_CHECK(in, list, ": cannot open");
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      std::istringstream ls(line);
      std::string name;
      int p;
      if (!(ls >> name)) continue;  // blank line
      UVIT_CHECK(bool(ls >> p), list, ":", lineno, ": expected '<file> <partition>'");
      if (part[split] < 0 || p == part[split]) files.push_back(base + "/img_align_celeba/" + name);
    }
    for (const auto& f : files) UVIT_CHECK(fs::exists(f), f, ": listed in ", list, " but missing");
  } else {
    UVIT_CHECK(split == "train" || split == "all", dir, ": split '", split,
               "' needs list_eval_partition.txt");
    files = data::list_images_recursively(dir);
  }
  UVIT_CHECK(!files.empty(), dir, ": no images found (jpg/jpeg/png/gif)");
  size_t n = files.size();
  return std::make_shared<ImageFileDataset>(
      cat("celeba ", dir, " (", split, "): ", n, " images, crop 128 at (57,25), resize to ",
          resolution),
      std::move(files), std::vector<int64_t>{}, 0, resolution, Transform::CelebA);
}

std::shared_ptr<Dataset> make_imagenet_dataset(const std::string& dir, int resolution) {
  UVIT_CHECK(resolution > 0, dir, ": bad resolution ", resolution);
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::string root = fs::is_directory(dir + "/train") ? dir + "/train" : dir;
  std::vector<std::string> files = data::list_images_recursively(root);
  UVIT_CHECK(!files.empty(), root, ": no images found (jpg/jpeg/png/gif)");
  int k = 0;
  std::vector<int64_t> labels = data::prefix_labels(files, &k);
  size_t n = files.size();
  return std::make_shared<ImageFileDataset>(
      cat("imagenet ", root, ": ", n, " images, ", k, " classes, center crop to ", resolution),
      std::move(files), std::move(labels), k, resolution, Transform::CenterCrop);
}

std::shared_ptr<Dataset> make_image_folder_dataset(const std::string& dir, int resolution) {
  UVIT_CHECK(resolution > 0, dir, ": bad resolution ", resolution);
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::vector<std::string> files = data::list_images_recursively(dir);
  UVIT_CHECK(!files.empty(), dir, ": no images found (jpg/jpeg/png/gif)");
  size_t n = files.size();
  return std::make_shared<ImageFileDataset>(
      cat("image folder ", dir, ": ", n, " images, center crop to ", resolution), std::move(files),
      std::vector<int64_t>{}, 0, resolution, Transform::CenterCrop);
}

}  // namespace uvit
