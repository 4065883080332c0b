// MS-COCO feature extraction (SPEC 15.5, scripts/extract_mscoco_feature.py): images + captions
// JSON -> {out}/{split}/{i}.npy moments, {i}_{k}.npy CLIP contexts, {out}/empty_context.npy; the
// layout make_mscoco_features_dataset reads.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "uvit/array.hpp"
#include "uvit/clip.hpp"

namespace uvit {

struct MscocoExtractOptions {
  std::string images_dir;       // e.g. coco/train2014: file_name of each JSON image is under it
  std::string captions_json;    // e.g. annotations/captions_train2014.json
  std::string out_dir;          // the dataset root (dataset.path of the mscoco presets)
  std::string split = "train";  // output subfolder: "train" or "val"
  int resolution = 256;
  int batch = 8;       // images per moments call
  int64_t limit = -1;  // only the first `limit` images (in sorted id order); -1 = all
};

// images float32 [B, 3, R, R] in [-1, 1] -> moments float32 [B, 8, R/8, R/8] (mean, logvar): the
// autoencoder's encode_moments.
using MomentsFn = std::function<Array(const Array& images)>;

struct MscocoExtractResult {
  int64_t images = 0, captions = 0;
};

// Images in sorted COCO image-id order (i = enumeration index, not the COCO id); each is center
// cropped to its short side, LANCZOS-resized to R x R and mapped to x/127.5 - 1. Every caption of
// an image (annotation order) is encoded with CLIP. Every file is written atomically.
MscocoExtractResult extract_mscoco_features(
    const MscocoExtractOptions& opt, const MomentsFn& moments, const ClipTokenizer& tok,
    ClipTextModel& clip, const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace uvit
