// Datasets decoded from image files on every draw: CelebA, ImageNet (pixel space), plain folders.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "data/pixels.hpp"
#include "io/dir_walk.hpp"
#include "uvit/ascii.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/log.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace data {

namespace {

// What a walk left out, for the one line that says so (docs/data.md, "What an image folder may
// hold").
struct Skipped {
  std::vector<std::string> hidden, other_format, repeated;
};

// The extensions of image formats a user's folder may hold that the image datasets do not read
// (guided-diffusion reads jpg, jpeg, png and gif): named in the warning, not silently dropped.
bool other_image_format(const std::string& ext) {
  static const std::set<std::string> kOther = {"webp", "bmp", "tif",  "tiff", "ppm",  "pgm", "pbm",
                                               "pnm",  "tga", "heic", "heif", "avif", "jxl", "jp2"};
  return kOther.count(ext) > 0;
}

void walk(const std::string& dir, const std::vector<std::string>& exts, std::set<fs::path>* seen,
          std::vector<std::string>* out, Skipped* skipped) {
  std::vector<std::string> entries;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    entries.push_back(it->path().filename().string());
  UVIT_CHECK(!ec, dir, ": cannot list directory: ", ec.message());
  std::sort(entries.begin(), entries.end());
  for (const auto& e : entries) {
    const std::string full = dir + "/" + e;
    const size_t dot = e.rfind('.');
    const std::string ext = ascii_lower(dot == std::string::npos ? "" : e.substr(dot + 1));
    const bool wanted = std::find(exts.begin(), exts.end(), ext) != exts.end();
    // One stat per entry (a folder may hold a million images): it follows links, and fails on a
    // dangling one or a loop of links.
    struct stat st {};
    const bool found = ::stat(full.c_str(), &st) == 0;
    const int err = errno;
    const bool is_dir = found && S_ISDIR(st.st_mode);
    if (io::hidden_name(e)) {
      if (wanted || is_dir) skipped->hidden.push_back(full);
    } else if (is_dir) {
      // A link back up the tree (or to a folder already read) would list its images again.
      const fs::path real = fs::canonical(full, ec);
      if (ec || !seen->insert(real).second)
        skipped->repeated.push_back(full);
      else
        walk(full, exts, seen, out, skipped);
    } else if (wanted) {
      if (!found && fs::is_symlink(fs::symlink_status(full, ec)))
        fail(full, ": a symbolic link to ", fs::read_symlink(full, ec).string(),
             ", which does not exist: remove the link or restore its file");
      UVIT_CHECK(found, full, ": cannot read: ", std::strerror(err));
      UVIT_CHECK(S_ISREG(st.st_mode), full, ": not a regular file");
      UVIT_CHECK(st.st_size > 0, full, ": an empty file (0 bytes): remove it or replace it");
      out->push_back(full);
    } else if (other_image_format(ext)) {
      skipped->other_format.push_back(full);
    }
  }
}

// "a.webp, b.webp, c.webp and 5 more", relative to the walk's root.
std::string some(const std::vector<std::string>& names, const std::string& root) {
  std::string s;
  for (size_t i = 0; i < std::min<size_t>(names.size(), 3); ++i)
    s += (i ? ", " : "") + fs::path(names[i]).lexically_relative(root).string();
  return names.size() > 3 ? cat(s, " and ", names.size() - 3, " more") : s;
}

}  // namespace

std::vector<std::string> list_files_recursively(const std::string& dir,
                                                const std::vector<std::string>& exts) {
  std::vector<std::string> out;
  Skipped skipped;
  std::set<fs::path> seen;
  std::error_code ec;
  seen.insert(fs::canonical(dir, ec));
  walk(dir, exts, &seen, &out, &skipped);
  std::string line;
  const auto add = [&](const std::vector<std::string>& names, const std::string& what) {
    if (!names.empty()) line += cat(line.empty() ? "" : "; ", what, ": ", some(names, dir));
  };
  std::string reads;
  for (const std::string& e : exts) reads += (reads.empty() ? "" : ", ") + e;
  add(skipped.hidden, "hidden (a leading '.')");
  add(skipped.other_format, cat("a format not read here (it reads ", reads, ")"));
  add(skipped.repeated, "folders reached again through a symbolic link");
  if (!line.empty())
    log(LogLevel::Warn,
        cat(dir, ": skipped ", line, " (docs/data.md, \"What an image folder may hold\")"));
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
  ImageFileDataset(std::string name, std::string desc, std::vector<std::string> files,
                   std::vector<int64_t> labels, int k, int res, Transform t)
      : name_(std::move(name)),
        desc_(name_ + ": " + desc),
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
    Image im;
    try {
      im = read_image(files_[size_t(i)], 3);  // PIL .convert("RGB")
    } catch (const Error& e) {
      // The listing checked names and sizes, not contents: a damaged file is found when drawn.
      fail(e.what(), "; an image of ", name_, ": remove or replace it");
    }
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
  std::string name_, desc_;
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
      cat("celeba ", dir, " (", split, ")"),
      cat(n, " images, crop 128 at (57,25), resize to ", resolution), std::move(files),
      std::vector<int64_t>{}, 0, resolution, Transform::CelebA);
}

std::shared_ptr<Dataset> make_imagenet_dataset(const std::string& dir, int resolution) {
  UVIT_CHECK(resolution > 0, dir, ": bad resolution ", resolution);
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::string root = fs::is_directory(dir + "/train") ? dir + "/train" : dir;
  std::vector<std::string> files = data::list_images_recursively(root);
  UVIT_CHECK(!files.empty(), root, ": no images found (jpg/jpeg/png/gif)");
  // The label is the file name's prefix (ImageNet's n01440764/n01440764_10026.JPEG), not the
  // folder: class folders of other names (torchvision's ImageFolder layout) would give each file
  // name stem its own class, or one class for all, without a word.
  // A file directly in the root, or with a folder of its prefix's name on its path (a class
  // folder nested deeper), is ImageNet's layout.
  for (const std::string& f : files) {
    const fs::path p(f), folders = p.lexically_relative(root).parent_path();
    const std::string folder = p.parent_path().filename().string(), base = p.filename().string();
    const std::string prefix = base.substr(0, base.find('_'));
    UVIT_CHECK(
        folders.empty() || std::find(folders.begin(), folders.end(), prefix) != folders.end(), f,
        ": its class would be its name's prefix before the first '_' ('", prefix,
        "', as ImageNet's n01440764/n01440764_10026.JPEG), not its folder '", folder,
        "': name the files FOLDER_*, or use dataset image_folder (unlabeled; docs/data.md)");
  }
  int k = 0;
  std::vector<int64_t> labels = data::prefix_labels(files, &k);
  size_t n = files.size();
  return std::make_shared<ImageFileDataset>(
      cat("imagenet ", root), cat(n, " images, ", k, " classes, center crop to ", resolution),
      std::move(files), std::move(labels), k, resolution, Transform::CenterCrop);
}

std::shared_ptr<Dataset> make_image_folder_dataset(const std::string& dir, int resolution) {
  UVIT_CHECK(resolution > 0, dir, ": bad resolution ", resolution);
  UVIT_CHECK(fs::is_directory(dir), dir, ": dataset directory not found");
  std::vector<std::string> files = data::list_images_recursively(dir);
  UVIT_CHECK(!files.empty(), dir, ": no images found (jpg/jpeg/png/gif)");
  size_t n = files.size();
  return std::make_shared<ImageFileDataset>(
      cat("image folder ", dir), cat(n, " images, center crop to ", resolution), std::move(files),
      std::vector<int64_t>{}, 0, resolution, Transform::CenterCrop);
}

}  // namespace uvit
