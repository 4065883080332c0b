// Images (a folder, or uint8 .npy/.npz samples) to Inception features.
#include <algorithm>
#include <filesystem>
#include <set>

#include "io/dir_walk.hpp"
#include "io/npy.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/image.hpp"
#include "uvit/inception.hpp"
#include "uvit/io.hpp"
#include "uvit/log.hpp"

namespace fs = std::filesystem;

namespace uvit {

std::vector<std::string> list_image_files(const std::string& dir) {
  // pytorch-fid globs '*.ext' for these extensions (case-sensitive, not recursive) and sorts.
  static const std::set<std::string> exts = {".bmp", ".jpg", ".jpeg", ".pgm", ".png",
                                             ".ppm", ".tif", ".tiff", ".webp"};
  // Hidden names are left out, as the training walk does: pytorch-fid's pathlib glob would list
  // macOS's ._NAME.png and then fail to decode it (docs/evaluation.md, "Image folders").
  std::vector<std::string> files, hidden;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && exts.count(e.path().extension().string()))
      (io::hidden_name(e.path().filename().string()) ? hidden : files).push_back(e.path().string());
  UVIT_CHECK(!ec, dir, ": cannot list the folder (", ec.message(), ")");
  std::sort(files.begin(), files.end());
  std::sort(hidden.begin(), hidden.end());
  if (!hidden.empty())
    log(LogLevel::Warn,
        cat(dir, ": skipped ", hidden.size(), " hidden file(s) (a leading '.'), ",
            fs::path(hidden[0]).filename().string(), hidden.size() > 1 ? " and others" : "",
            " (docs/evaluation.md, \"Image folders\")"));
  UVIT_CHECK(!files.empty(), dir,
             ": no images (looked for *.png, *.jpg, *.jpeg, *.bmp, *.pgm, *.ppm, *.tif, *.tiff, "
             "*.webp)");
  return files;
}

bool is_feature_npy(const std::string& path) {
  if (fs::path(path).extension() != ".npy") return false;
  NpyHeader h;
  try {  // only the header: a file that is not an .npy is not a feature file (read as samples)
    h = peek_npy_header(path);
  } catch (const Error&) {
    return false;
  }
  return (h.descr == "<f4" || h.descr == "<f8") && h.shape.size() == 2 &&
         h.shape[1] == FidInception::kDims;
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
  // [N, H, W] is N grayscale images; one RGB image [H, W, 3] would read as H images 3 px wide.
  UVIT_CHECK(a.shape.size() != 3 || a.shape[2] != 3, path, ": shape ", shape_str(a.shape),
             " reads as grayscale images [N, H, W] 3 px wide; one RGB image is [1, H, W, 3]");
  if (a.shape.size() == 3) a.shape.push_back(1);
  UVIT_CHECK(a.shape.size() == 4 && (a.shape[3] == 1 || a.shape[3] == 3), path,
             ": expected uint8 images [N, H, W, C] with C = 1 or 3, got shape ",
             shape_str(a.shape));
  UVIT_CHECK(a.shape[0] > 0 && a.shape[1] > 0 && a.shape[2] > 0, path, ": no images (shape ",
             shape_str(a.shape), ")");
  return a;
}
}  // namespace

void visit_image_source(const std::string& source, long chunk,
                        const std::function<std::pair<long, long>(long)>& range,
                        const std::function<void(const ImageRun&)>& fn) {
  if (fs::is_directory(source)) {
    const std::vector<std::string> files = list_image_files(source);
    const long n = long(files.size());
    const auto [lo, hi] = range(n);
    std::vector<Image> ims(size_t(std::max(0L, std::min(chunk, hi - lo))));
    std::vector<uint8_t> batch;
    for (long i0 = lo; i0 < hi; i0 += chunk) {
      // Decoded in parallel (stb is reentrant); the first failure is rethrown in file order.
      const long m = std::min(chunk, hi - i0);
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
      // Runs of images of one size go together.
      for (long j = 0; j < m;) {
        const Image& a = ims[size_t(j)];
        long k = j + 1;
        while (k < m && ims[size_t(k)].h == a.h && ims[size_t(k)].w == a.w) ++k;
        const size_t per = a.px.size();
        batch.resize(per * size_t(k - j));
        for (long t = j; t < k; ++t)
          std::copy(ims[size_t(t)].px.begin(), ims[size_t(t)].px.end(),
                    batch.begin() + long(per) * (t - j));
        fn({i0 + j, int(k - j), a.h, a.w, 3, batch.data(), lo, hi});
        j = k;
      }
    }
    return;
  }
  UVIT_CHECK(fs::exists(source), source, ": no such file or folder");
  const std::string ext = fs::path(source).extension().string();
  UVIT_CHECK(ext == ".npy" || ext == ".npz", source,
             ": expected a folder of images, a .npy of uint8 images [N,H,W,C] or an .npz of them");
  const Array a = load_samples(source);
  const long n = a.shape[0];
  const int H = int(a.shape[1]), W = int(a.shape[2]), C = int(a.shape[3]);
  const auto [lo, hi] = range(n);
  for (long i = lo; i < hi; i += chunk) {
    const int m = int(std::min(chunk, hi - i));
    fn({i, m, H, W, C, a.as<uint8_t>() + size_t(i) * H * W * C, lo, hi});
  }
}

std::vector<float> source_features(const FidInception& net, const std::string& source,
                                   std::vector<float>* logits,
                                   const std::function<void(long, long)>& progress,
                                   std::vector<float>* spatial, int part, int parts) {
  constexpr int D = FidInception::kDims, K = FidInception::kClasses, S = FidInception::kSpatialDims;
  std::vector<float> f;
  // Chunks of images per call, so that a device backend runs them batched (FidInception::forward).
  constexpr long kChunk = 32;
  // This part's images [lo, hi) of n, in whole chunks; rows are stored from lo.
  auto share = [&](long n) {
    const long chunks = (n + kChunk - 1) / kChunk;
    const long lo = std::min(n, chunks * part / parts * kChunk);
    const long hi = std::min(n, chunks * (part + 1) / parts * kChunk);
    f.resize(size_t(hi - lo) * D);
    if (logits) logits->resize(size_t(hi - lo) * K);
    if (spatial) spatial->resize(size_t(hi - lo) * S);
    return std::make_pair(lo, hi);
  };
  visit_image_source(source, kChunk, share, [&](const ImageRun& r) {
    const long at = r.first - r.lo;
    net.forward_u8(r.px, r.n, r.h, r.w, r.c, f.data() + at * D,
                   logits ? logits->data() + at * K : nullptr,
                   spatial ? spatial->data() + at * S : nullptr);
    if (progress) progress(at + r.n, r.hi - r.lo);
  });
  return f;
}

}  // namespace uvit
