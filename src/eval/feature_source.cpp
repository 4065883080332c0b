// Images (a folder, or uint8 .npy/.npz samples) to Inception features.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/image.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit {

std::vector<std::string> list_image_files(const std::string& dir) {
  // pytorch-fid globs '*.ext' for these extensions (case-sensitive, not recursive) and sorts.
  static const std::set<std::string> exts = {".bmp", ".jpg", ".jpeg", ".pgm", ".png",
                                             ".ppm", ".tif", ".tiff", ".webp"};
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && exts.count(e.path().extension().string()))
      files.push_back(e.path().string());
  UVIT_CHECK(!ec, dir, ": cannot list the folder (", ec.message(), ")");
  std::sort(files.begin(), files.end());
  UVIT_CHECK(!files.empty(), dir,
             ": no images (looked for *.png, *.jpg, *.jpeg, *.bmp, *.pgm, *.ppm, *.tif, *.tiff, "
             "*.webp)");
  return files;
}

bool is_feature_npy(const std::string& path) {
  if (fs::path(path).extension() != ".npy") return false;
  // Only the header is read: descr '<f4'/'<f8' and a 2-D shape (N, 2048).
  std::ifstream in(path, std::ios::binary);
  std::string head(4096, '\0');
  in.read(head.data(), head.size());
  head.resize(size_t(in.gcount()));
  const size_t e = head.find('}');
  if (head.compare(0, 6, "\x93NUMPY") != 0 || e == std::string::npos) return false;
  head.resize(e);
  const bool is_float =
      head.find("'<f4'") != std::string::npos || head.find("'<f8'") != std::string::npos;
  const size_t sh = head.find("'shape'");
  if (!is_float || sh == std::string::npos) return false;
  const size_t open = head.find('(', sh), close = head.find(')', sh);
  if (open == std::string::npos || close == std::string::npos) return false;
  // "N, 2048" (maybe with a trailing comma/space): exactly two integers, the second 2048.
  std::vector<long> v;
  long cur = -1;
  for (size_t i = open + 1; i < close; ++i) {
    const char c = head[i];
    if (c >= '0' && c <= '9') {
      cur = (cur < 0 ? 0 : cur * 10) + (c - '0');
    } else if (cur >= 0) {
      v.push_back(cur);
      cur = -1;
    }
  }
  if (cur >= 0) v.push_back(cur);
  return v.size() == 2 && v[1] == FidInception::kDims;
}

namespace {
// The uint8 sample array of a .npy, or of an .npz's "arr_0" (the samples file of `uvit eval` and
// of guided-diffusion's evaluator) or its only member.
Array load_samples(const std::string& path) {
  Array a;
  if (fs::path(path).extension() == ".npz") {
    NamedArrays z = load_npz(path);
    for (auto& [k, v] : z)
      if (k == "arr_0" || z.size() == 1) a = std::move(v);
    UVIT_CHECK(!a.shape.empty(), path, ": no 'arr_0' array of uint8 images");
  } else {
    a = load_npy(path);
  }
  UVIT_CHECK(a.dtype == DType::U8, path, ": expected uint8 images [N, H, W, C], got ",
             dtype_name(a.dtype), " ", shape_str(a.shape));
  if (a.shape.size() == 3) a.shape.push_back(1);
  UVIT_CHECK(a.shape.size() == 4 && (a.shape[3] == 1 || a.shape[3] == 3), path,
             ": expected uint8 images [N, H, W, C] with C = 1 or 3, got shape ",
             shape_str(a.shape));
  UVIT_CHECK(a.shape[0] > 0 && a.shape[1] > 0 && a.shape[2] > 0, path, ": no images (shape ",
             shape_str(a.shape), ")");
  return a;
}
}  // namespace

std::vector<float> source_features(const FidInception& net, const std::string& source,
                                   std::vector<float>* logits,
                                   const std::function<void(long, long)>& progress,
                                   std::vector<float>* spatial, int part, int parts) {
  constexpr int D = FidInception::kDims, K = FidInception::kClasses, S = FidInception::kSpatialDims;
  std::vector<float> f;
  // Chunks of images per call, so that a device backend runs them batched (FidInception::forward).
  constexpr long kChunk = 32;
  // This part's images [lo, hi) of n; rows are stored from lo.
  long lo = 0, hi = 0;
  auto share = [&](long n) {
    const long chunks = (n + kChunk - 1) / kChunk;
    lo = std::min(n, chunks * part / parts * kChunk);
    hi = std::min(n, chunks * (part + 1) / parts * kChunk);
    f.resize(size_t(hi - lo) * D);
    if (logits) logits->resize(size_t(hi - lo) * K);
    if (spatial) spatial->resize(size_t(hi - lo) * S);
  };
  if (fs::is_directory(source)) {
    const std::vector<std::string> files = list_image_files(source);
    const long n = long(files.size());
    share(n);
    std::vector<Image> ims(size_t(std::min(kChunk, n)));
    std::vector<uint8_t> batch;
    for (long i0 = lo; i0 < hi; i0 += kChunk) {
      // Decoded in parallel (stb is reentrant); the first failure is rethrown in file order.
      const long m = std::min(kChunk, n - i0);
      std::vector<std::string> err(static_cast<size_t>(m));
#pragma omp parallel for schedule(dynamic)
      for (long j = 0; j < m; ++j) {
        try {
          ims[size_t(j)] = read_image(files[size_t(i0 + j)], 3);  // PIL convert("RGB")
        } catch (const std::exception& e) {
          err[size_t(j)] = e.what();
        }
      }
      for (const std::string& e : err)
        if (!e.empty()) fail(e);
      // Runs of images of one size go through the network together.
      for (long j = 0; j < m;) {
        const Image& a = ims[size_t(j)];
        long k = j + 1;
        while (k < m && ims[size_t(k)].h == a.h && ims[size_t(k)].w == a.w) ++k;
        const size_t per = a.px.size();
        batch.resize(per * size_t(k - j));
        for (long t = j; t < k; ++t)
          std::copy(ims[size_t(t)].px.begin(), ims[size_t(t)].px.end(),
                    batch.begin() + long(per) * (t - j));
        net.forward_u8(batch.data(), int(k - j), a.h, a.w, 3, f.data() + (i0 - lo + j) * D,
                       logits ? logits->data() + (i0 - lo + j) * K : nullptr,
                       spatial ? spatial->data() + (i0 - lo + j) * S : nullptr);
        j = k;
      }
      if (progress) progress(i0 + m - lo, hi - lo);
    }
    return f;
  }
  UVIT_CHECK(fs::exists(source), source, ": no such file or folder");
  const std::string ext = fs::path(source).extension().string();
  UVIT_CHECK(ext == ".npy" || ext == ".npz", source,
             ": expected a folder of images, a .npy of uint8 images [N,H,W,C] or an .npz of them");
  const Array a = load_samples(source);
  const long n = a.shape[0];
  const int H = int(a.shape[1]), W = int(a.shape[2]), C = int(a.shape[3]);
  share(n);
  for (long i = lo; i < hi; i += kChunk) {
    const int m = int(std::min(kChunk, n - i));
    net.forward_u8(a.as<uint8_t>() + size_t(i) * H * W * C, m, H, W, C, f.data() + (i - lo) * D,
                   logits ? logits->data() + (i - lo) * K : nullptr,
                   spatial ? spatial->data() + (i - lo) * S : nullptr);
    if (progress) progress(i + m - lo, hi - lo);
  }
  return f;
}

}  // namespace uvit
