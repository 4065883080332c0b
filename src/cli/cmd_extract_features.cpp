// `uvit extract-features`: ImageNet-style image folder -> the official imagenet{256,512}_features
// layout (SPEC 15.4): center crop, each image and its horizontal flip through encode_moments,
// one {idx}.npy per (moments, label). Resumable: finished files are skipped (writes are atomic).
// With --captions, MS-COCO instead (SPEC 15.5): images + captions JSON -> moments, one CLIP
// context per caption and empty_context.npy (src/data/mscoco_features.cpp).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.hpp"
#include "cli/progress.hpp"
#include "data/mscoco_features.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {

// The official extractor's DataLoader batch: within each block of 256 images the originals come
// first, then their flips, so file indices depend on it.
constexpr int64_t kOfficialBatch = 256;

struct Item {
  int64_t image, file, flip_file;
};

// Official file indices of image i among n images.
Item file_indices(int64_t i, int64_t n) {
  const int64_t block = i / kOfficialBatch, j = i % kOfficialBatch;
  const int64_t nb = std::min(kOfficialBatch, n - block * kOfficialBatch);
  const int64_t base = 2 * block * kOfficialBatch;
  return {i, base + j, base + nb + j};
}

struct Opts {
  std::string data, weights, out, config, captions, clip, clip_config, vocab,
      split = "train", device = "cpu", precision;
  int resolution = 256, batch = 4;
  bool quiet = false;
};

// MS-COCO: moments of each image and the CLIP context of each of its captions.
void extract_mscoco(const Opts& o) {
  UVIT_CHECK(!o.clip.empty(), "extract-features --captions needs --clip (CLIP text weights)");
  const AutoencoderConfig cfg =
      o.config.empty() ? AutoencoderConfig{} : load_autoencoder_config(o.config);
  const Autoencoder ae = Autoencoder::load(o.weights, cfg, o.device, o.precision);
  const ClipTokenizer tok = ClipTokenizer::load(clip_vocab_path(o.vocab));
  auto be = make_encoder_backend(o.device, o.precision);
  ClipTextModel clip(o.clip_config.empty() ? ClipTextConfig{} : ClipTextConfig::load(o.clip_config),
                     *be);
  clip.load_file(o.clip);
  MscocoExtractOptions mo;
  mo.images_dir = o.data;
  mo.captions_json = o.captions;
  mo.out_dir = o.out;
  mo.split = o.split;
  mo.resolution = o.resolution;
  mo.batch = o.batch;
  std::unique_ptr<Progress> bar;  // the total is known once the captions JSON is read
  const auto t0 = std::chrono::steady_clock::now();
  const MscocoExtractResult r = extract_mscoco_features(
      mo, [&](const Array& x) { return ae.encode_moments(x); }, tok, clip,
      [&](int64_t done, int64_t total) {
        if (!bar) bar = std::make_unique<Progress>("extract", long(total), o.quiet);
        bar->update(long(done));
      });
  if (bar) bar->finish();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!o.quiet)
    std::fprintf(stderr, "encoded %lld images and %lld captions into %s/%s in %.1f s\n",
                 (long long)r.images, (long long)r.captions, o.out.c_str(), o.split.c_str(), s);
}

}  // namespace

void add_extract_features(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "extract-features",
      "Encode an ImageNet-style image folder (or MS-COCO images + captions) into the official "
      "feature layout");
  auto o = std::make_shared<Opts>();
  cmd->add_option("--data", o->data,
                  "image folder (or its train/ subfolder): files <synset>_*.{jpg,png,...}, "
                  "the label is the sorted index of the synset prefix")
      ->required();
  cmd->add_option("--weights,-w", o->weights, "autoencoder_kl.pth or .safetensors")->required();
  cmd->add_option("--out,-o", o->out, "feature folder ({idx}.npy files)")->required();
  cmd->add_option("--resolution", o->resolution, "256 or 512 (default 256)")
      ->check(CLI::IsMember({256, 512}));
  cmd->add_option("--config,-c", o->config, "autoencoder JSON (default: Stable Diffusion kl-f8)");
  cmd->add_option("--batch", o->batch, "images per forward pass (each also flipped; default 4)")
      ->check(at_least(1));
  cmd->add_flag("--quiet,-q", o->quiet, "print only errors");
  add_encoder_device(cmd, o->device, o->precision, "the encoders");
  cmd->add_option(
      "--captions", o->captions,
      "MS-COCO: captions JSON (annotations/captions_train2014.json); --data is then the "
      "image folder and --out the dataset root");
  cmd->add_option("--clip", o->clip, "MS-COCO: CLIP text encoder weights (Hugging Face layout)");
  cmd->add_option("--clip-config", o->clip_config,
                  "MS-COCO: CLIPTextConfig JSON (default ViT-L/14)");
  cmd->add_option("--vocab", o->vocab, "MS-COCO: CLIP vocabulary (default: data/clip)");
  cmd->add_option("--split", o->split, "MS-COCO: output subfolder, train or val (default train)")
      ->check(CLI::IsMember({"train", "val"}));
  cmd->callback([o] {
    if (!o->captions.empty()) return extract_mscoco(*o);
    const AutoencoderConfig cfg =
        o->config.empty() ? AutoencoderConfig{} : load_autoencoder_config(o->config);
    UVIT_CHECK(cfg.embed_dim == 4 && cfg.in_channels == 3 && cfg.downsample_factor() == 8,
               "extract-features: the feature layout needs an RGB kl-f8 autoencoder with "
               "embed_dim 4 (moments [8, res/8, res/8])");
    const Autoencoder ae = Autoencoder::load(o->weights, cfg, o->device, o->precision);
    const auto ds = make_imagenet_dataset(o->data, o->resolution);
    const int64_t n = ds->size();
    std::error_code ec;
    fs::create_directories(o->out, ec);
    UVIT_CHECK(!ec, o->out, ": cannot create directory: ", ec.message());
    auto path = [&](int64_t f) { return cat(o->out, "/", f, ".npy"); };

    // Resume: only images with a missing output are encoded again.
    std::vector<Item> todo;
    for (int64_t i = 0; i < n; ++i) {
      const Item it = file_indices(i, n);
      if (!fs::exists(path(it.file)) || !fs::exists(path(it.flip_file))) todo.push_back(it);
    }
    if (!o->quiet)
      std::fprintf(stderr, "%s\n%lld images -> %lld feature files in %s (%lld already done)\n",
                   ds->describe().c_str(), (long long)n, (long long)(2 * n), o->out.c_str(),
                   (long long)(n - int64_t(todo.size())));
    const int64_t R = o->resolution, img = 3 * R * R;
    Progress bar("extract", long(todo.size()), o->quiet);
    const auto t0 = std::chrono::steady_clock::now();
    DrawRng rng{};  // the center-crop transform draws nothing
    for (size_t k = 0; k < todo.size(); k += size_t(o->batch)) {
      const int m = int(std::min(todo.size() - k, size_t(o->batch)));
      // [originals..., flips...] as the official torch.cat([img, img.flip(-1)]).
      Array x(DType::F32, {2 * m, 3, R, R});
      float* xd = x.as<float>();
      std::vector<int64_t> labels(static_cast<size_t>(m));
      std::string err;
#pragma omp parallel for schedule(dynamic, 1)
      for (int j = 0; j < m; ++j) {
        try {
          labels[size_t(j)] = ds->get(todo[k + size_t(j)].image, xd + j * img, nullptr, rng);
          const float* src = xd + j * img;
          float* dst = xd + (m + j) * img;
          for (int64_t row = 0; row < 3 * R; ++row)
            for (int64_t c = 0; c < R; ++c) dst[row * R + c] = src[row * R + (R - 1 - c)];
        } catch (const std::exception& e) {
#pragma omp critical
          if (err.empty()) err = e.what();
        }
      }
      UVIT_CHECK(err.empty(), err);
      const Array mom = ae.encode_moments(x);
      const int64_t per = mom.numel() / (2 * m);
      for (int j = 0; j < 2 * m; ++j) {
        const Item& it = todo[k + size_t(j % m)];
        Array one =
            Array::from_f32({mom.shape[1], mom.shape[2], mom.shape[3]}, mom.as<float>() + j * per);
        const auto bytes = encode_feature_record(one, labels[size_t(j % m)]);
        write_file_atomic(path(j < m ? it.file : it.flip_file), bytes.data(), bytes.size());
      }
      bar.update(long(k) + m);
    }
    bar.finish();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!o->quiet) std::fprintf(stderr, "encoded %zu images (+ flips) in %.1f s\n", todo.size(), s);
  });
}

}  // namespace uvit::cli
