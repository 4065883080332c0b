// MS-COCO feature extraction: the official MSCOCODatabase preprocessing (center crop, LANCZOS
// resize) and per-caption CLIP contexts, written in the layout of make_mscoco_features_dataset.
#include "data/mscoco_features.hpp"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"

namespace uvit {
namespace fs = std::filesystem;

namespace {

struct CocoImage {
  int64_t id;
  std::string file;
  std::vector<std::string> captions;
};

std::vector<CocoImage> read_captions(const std::string& path) {
  const nlohmann::json j = read_json_file(path);
  UVIT_CHECK(j.is_object() && j.contains("images") && j["images"].is_array() &&
                 j.contains("annotations") && j["annotations"].is_array(),
             path, ": expected a COCO captions file with \"images\" and \"annotations\" arrays");
  std::map<int64_t, CocoImage> imgs;  // sorted by id, as sorted(coco.imgs.keys())
  for (const auto& im : j["images"]) {
    UVIT_CHECK(im.is_object() && im.contains("id") && im["id"].is_number_integer() &&
                   im.contains("file_name") && im["file_name"].is_string(),
               path, ": an image entry lacks an integer id or a file_name");
    int64_t id = im["id"].get<int64_t>();
    UVIT_CHECK(!imgs.count(id), path, ": image id ", id, " appears twice");
    imgs[id] = {id, im["file_name"].get<std::string>(), {}};
  }
  for (const auto& a : j["annotations"]) {
    UVIT_CHECK(a.is_object() && a.contains("image_id") && a["image_id"].is_number_integer() &&
                   a.contains("caption") && a["caption"].is_string(),
               path, ": an annotation lacks an integer image_id or a caption");
    auto it = imgs.find(a["image_id"].get<int64_t>());
    UVIT_CHECK(it != imgs.end(), path, ": annotation for unknown image id ",
               a["image_id"].get<int64_t>());
    it->second.captions.push_back(a["caption"].get<std::string>());
  }
  std::vector<CocoImage> out;
  for (auto& [id, im] : imgs) {
    UVIT_CHECK(!im.captions.empty(), path, ": image id ", id, " (", im.file, ") has no captions");
    out.push_back(std::move(im));
  }
  UVIT_CHECK(!out.empty(), path, ": no images");
  return out;
}

// center_crop(R, R, img): the central square of side min(H, W), LANCZOS to R x R, x/127.5 - 1.
void preprocess(const std::string& path, int res, float* chw) {
  Image im = read_image(path, 3);
  const int c = std::min(im.w, im.h);
  Image sq = crop(im, (im.w - c) / 2, (im.h - c) / 2, c, c);
  Image r = resize_pil(sq, res, res, Resample::Lanczos);
  const size_t plane = size_t(res) * res;
  for (int y = 0; y < res; ++y)
    for (int x = 0; x < res; ++x)
      for (int ch = 0; ch < 3; ++ch)
        chw[ch * plane + size_t(y) * res + x] = float(r.at(y, x, ch)) / 127.5f - 1.f;
}

}  // namespace

MscocoExtractResult extract_mscoco_features(const MscocoExtractOptions& opt,
                                            const MomentsFn& moments, const ClipTokenizer& tok,
                                            ClipTextModel& clip,
                                            const std::function<void(int64_t, int64_t)>& progress) {
  UVIT_CHECK(opt.split == "train" || opt.split == "val", "mscoco extraction: split '", opt.split,
             "' (train or val)");
  UVIT_CHECK(opt.resolution > 0 && opt.resolution % 8 == 0, "mscoco extraction: resolution ",
             opt.resolution, " is not a positive multiple of 8");
  UVIT_CHECK(opt.batch > 0, "mscoco extraction: batch must be positive");
  UVIT_CHECK(fs::is_directory(opt.images_dir), opt.images_dir, ": image directory not found");
  std::vector<CocoImage> imgs = read_captions(opt.captions_json);
  if (opt.limit >= 0 && int64_t(imgs.size()) > opt.limit) imgs.resize(size_t(opt.limit));
  const std::string sub = opt.out_dir + "/" + opt.split;
  fs::create_directories(sub);

  const int64_t L = ClipTokenizer::kContextLength, D = clip.config().hidden_size;
  std::vector<float> empty = clip_encode_prompts(tok, clip, {""});
  save_npy(opt.out_dir + "/empty_context.npy", Array::from_f32({L, D}, empty.data()));

  const int R = opt.resolution, h = R / 8;
  const int64_t n = int64_t(imgs.size());
  MscocoExtractResult res;
  for (int64_t i0 = 0; i0 < n; i0 += opt.batch) {
    const int64_t B = std::min<int64_t>(opt.batch, n - i0);
    Array x(DType::F32, {B, 3, R, R});
    for (int64_t b = 0; b < B; ++b)
      preprocess((fs::path(opt.images_dir) / imgs[size_t(i0 + b)].file).string(), R,
                 x.as<float>() + size_t(b) * 3 * R * R);
    Array m = moments(x);
    UVIT_CHECK(m.dtype == DType::F32 && m.shape == std::vector<int64_t>({B, 8, h, h}),
               "mscoco extraction: the encoder returned moments ", shape_str(m.shape),
               ", expected ", shape_str({B, 8, h, h}), " float32");
    for (int64_t b = 0; b < B; ++b) {
      const int64_t i = i0 + b;
      save_npy(cat(sub, "/", i, ".npy"),
               Array::from_f32({8, h, h}, m.as<float>() + size_t(b) * 8 * h * h));
      const auto& caps = imgs[size_t(i)].captions;
      std::vector<float> ctx = clip_encode_prompts(tok, clip, caps);
      for (size_t k = 0; k < caps.size(); ++k)
        save_npy(cat(sub, "/", i, "_", k, ".npy"),
                 Array::from_f32({L, D}, ctx.data() + k * size_t(L * D)));
      res.captions += int64_t(caps.size());
      ++res.images;
    }
    if (progress) progress(i0 + B, n);
  }
  return res;
}

}  // namespace uvit
