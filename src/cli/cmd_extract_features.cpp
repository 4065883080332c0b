// `uvit extract-features`: ImageNet-style image folder -> the official imagenet{256,512}_features
// layout (SPEC 15.4): center crop, each image and its horizontal flip through encode_moments,
// one {idx}.npy per (moments, label), for any RGB autoencoder config (SD kl-f8, VA-VAE f16d32);
// with --latent-stats / --write-latent-stats the moments are of the normalised latents
// (docs/autoencoder.md). Resumable: finished files are skipped (writes are atomic); the dot-file
// OUT/.manifest.json records what made them, and a resume with other settings is refused.
// With --encoder svg, SVG's deterministic DINOv3 + residual features instead (docs/svg_encoder.md).
// With --fit, FiTv2's variable-size latents (docs/fit.md): REL.npy + REL.flip.npy per image.
// With --captions, MS-COCO instead (SPEC 15.5): images + captions JSON -> moments, one CLIP
// context per caption and empty_context.npy (src/data/mscoco_features.cpp).
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>

#include "cli/autoencoder_cli.hpp"
#include "cli/clip_options.hpp"
#include "cli/commands.hpp"
#include "cli/fit_versions.hpp"
#include "cli/json_text.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "cli/run_manifest.hpp"
#include "data/mscoco_features.hpp"
#include "data/pixels.hpp"
#include "io/abs_path.hpp"
#include "models/svg_encoder.hpp"
#include "uvit/autoencoder.hpp"
#include "uvit/backend.hpp"
#include "uvit/clip.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/metadata.hpp"
#include "uvit/rng.hpp"

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
  std::string data, weights, out, config, captions, clip, clip_config, vocab, latent_stats,
      write_stats, split = "train", device = "cpu", precision, encoder = "autoencoder", dinov3,
                   svg_config, versions = "resize";
  int resolution = 256, batch = 4, patch = 2, min_tokens = 16;
  bool quiet = false, fit = false, crop = false;
};

// MS-COCO: moments of each image and the CLIP context of each of its captions.
void extract_mscoco(const Opts& o) {
  UVIT_CHECK(!o.clip.empty(), "extract-features --captions needs --clip (CLIP text weights)");
  UVIT_CHECK(o.latent_stats.empty() && o.write_stats.empty(),
             "extract-features --captions: --latent-stats/--write-latent-stats apply to ImageNet "
             "features only");
  const Autoencoder ae = Autoencoder::load(o.weights, autoencoder_config_from(o.config), o.device,
                                           o.precision, AutoencoderUse::encode);
  print_skipped(ae, o.weights, o.quiet);
  const ClipTokenizer tok = ClipTokenizer::load(clip_vocab_path(o.vocab));
  auto be = make_encoder_backend(o.device, o.precision);
  ClipTextModel clip(ClipTextConfig::load(o.clip_config), *be);
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

std::string feature_path(const Opts& o, int64_t file) { return cat(o.out, "/", file, ".npy"); }

// Images i (and, with flips, their mirror images after them) as one batch [k or 2k, 3, R, R];
// labels[j] of image j.
Array load_images(const Dataset& ds, const std::vector<int64_t>& images, int64_t R, bool flips,
                  std::vector<int64_t>& labels) {
  const int m = int(images.size());
  const int64_t img = 3 * R * R;
  // [originals..., flips...] as the official torch.cat([img, img.flip(-1)]).
  Array x(DType::F32, {(flips ? 2 : 1) * m, 3, R, R});
  float* xd = x.as<float>();
  labels.assign(size_t(m), 0);
  DrawRng rng{};  // the center-crop transform draws nothing
  std::string err;
#pragma omp parallel for schedule(dynamic, 1)
  for (int j = 0; j < m; ++j) {
    try {
      labels[size_t(j)] = ds.get(images[size_t(j)], xd + j * img, nullptr, rng);
      if (!flips) continue;
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
  return x;
}

// LightningDiT's statistics: min(10000, n) images drawn without replacement (a partial
// Fisher-Yates shuffle on a fixed Philox stream), one posterior sample of each, no flips.
LatentStats compute_latent_stats(const Opts& o, const Dataset& ds, const Autoencoder& ae) {
  constexpr int64_t kStatsImages = 10000;
  const int64_t n = ds.size(), k = std::min(n, kStatsImages);
  std::vector<int64_t> perm(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) perm[size_t(i)] = i;
  const Philox pick(0, 0x9c4);  // not the stream of the posterior samples
  for (int64_t i = 0; i < k; ++i) {
    const int64_t j =
        i + int64_t(uint64_t(pick.bits(uint64_t(2 * i))) << 32 | pick.bits(uint64_t(2 * i + 1))) %
                (n - i);
    std::swap(perm[size_t(i)], perm[size_t(j)]);
  }
  LatentStatsAccumulator acc(0);
  Progress bar("latent stats", long(k), o.quiet);
  std::vector<int64_t> labels;
  for (int64_t b = 0; b < k; b += o.batch) {
    const std::vector<int64_t> idx(perm.begin() + b, perm.begin() + std::min(k, b + o.batch));
    const Array mom = ae.encode_moments(load_images(ds, idx, o.resolution, false, labels));
    const int64_t per = mom.numel() / mom.shape[0];
    for (size_t j = 0; j < idx.size(); ++j)
      acc.add(Array::from_f32({mom.shape[1], mom.shape[2], mom.shape[3]},
                              mom.as<float>() + int64_t(j) * per),
              uint64_t(idx[j]));
    bar.update(long(b + int64_t(idx.size())));
  }
  bar.finish();
  return acc.finish();
}

// Images of the folder whose two files (original, flip) are not both there yet: a resumed run
// encodes only those (writes are atomic, so a file that exists is complete).
std::vector<Item> pending_images(const Opts& o, const Dataset& ds) {
  const int64_t n = ds.size();
  make_dir(o.out);
  std::vector<Item> todo;
  for (int64_t i = 0; i < n; ++i) {
    const Item it = file_indices(i, n);
    if (!fs::exists(feature_path(o, it.file)) || !fs::exists(feature_path(o, it.flip_file)))
      todo.push_back(it);
  }
  if (!o.quiet)
    std::fprintf(stderr, "%s\n%lld images -> %lld feature files in %s (%lld already done)\n",
                 ds.describe().c_str(), (long long)n, (long long)(2 * n), o.out.c_str(),
                 (long long)(n - int64_t(todo.size())));
  return todo;
}

// The manifest of a feature folder lives in it, as the dot-file OUT/.manifest.json, so that it
// follows the folder when it is moved or copied. The readers of these layouts take `{idx}.npy` by
// index or walk `*.npy`, and none lists it (docs/autoencoder.md "What made a feature folder").
std::string manifest_path(const std::string& out) {
  return (fs::path(out) / ".manifest.json").string();
}

// Where uvit before 2026-12-07 kept it: beside the folder, OUT.manifest.json.
std::string beside_manifest_path(const std::string& out) {
  fs::path p = fs::path(out).lexically_normal();
  if (!p.has_filename()) p = p.parent_path();  // "feat/"
  if (p.empty() || p.filename() == "." || p.filename() == "..") {
    p = io::absolute_path(p.string());
    if (!p.has_filename()) p = p.parent_path();
  }
  return p.string() + ".manifest.json";
}

// A file of the folder by its path relative to the folder (it moves with it: LightningDiT keeps
// its latent statistics there), any other by its absolute path; "" for none.
std::string recorded_path(const std::string& f, const std::string& out) {
  if (f.empty()) return "";
  const fs::path a = io::absolute_path(f),
                 dir = fs::path(io::absolute_path(out + "/.")).parent_path();
  const fs::path rel = a.lexically_relative(dir);
  const bool inside = !rel.empty() && *rel.begin() != ".." && rel != ".";
  return inside ? rel.string() : a.string();
}

// The folder's manifest where this uvit reads it: one beside the folder (an older uvit's) is moved
// in; paths into the folder that an older uvit recorded absolute are made relative, as a fresh one
// records them.
void bring_manifest_in(const Opts& o, const std::string& path) {
  const std::string beside = beside_manifest_path(o.out);
  if (!fs::exists(path) && fs::exists(beside)) {
    std::error_code ec;
    fs::rename(beside, path, ec);
    if (ec) {  // another file system (OUT a mount point): copied, then removed
      const std::vector<uint8_t> b = read_file(beside);
      write_file_atomic(path, b.data(), b.size());
      if (!fs::remove(beside, ec) && ec)  // the copy inside is the record now: not an error
        std::fprintf(
            stderr,
            "uvit: warning: %s: copied into %s but not removed (%s); it is not read any more\n",
            beside.c_str(), path.c_str(), ec.message().c_str());
    }
    if (!o.quiet)
      std::fprintf(stderr,
                   "%s: its manifest %s (an older uvit's, beside the folder) moved into %s\n",
                   o.out.c_str(), beside.c_str(), path.c_str());
  }
  if (!fs::exists(path)) return;
  nlohmann::json m = read_json_file(path);
  bool changed = false;
  for (const char* k : {"svg_config", "write_latent_stats"})
    if (m.is_object() && m.contains(k) && m[k].is_string()) {
      const std::string v = m[k], r = fs::path(v).is_absolute() ? recorded_path(v, o.out) : v;
      if (r != v) m[k] = r, changed = true;
    }
  if (changed) {
    const std::string t = json_text(m, 1);
    write_file_atomic(path, t.data(), t.size());
  }
}

// What makes the files of a layout ("imagenet", "svg" or "fit") what they are. The precision
// the encoder computes in (fp32, or tf32 on cuda, its default there) changes every value well
// beyond rounding, so a resume in the other one is refused; the device alone only rounds.
nlohmann::json feature_manifest(const Opts& o, const std::string& layout) {
  nlohmann::json m = {{"layout", layout},
                      {"encoder", o.encoder},
                      {"weights_sha256", file_sha256(o.weights)},
                      {"resolution", o.resolution},
                      {"precision", encoder_precision(o.device, o.precision)}};
  if (layout == "svg") {
    m["dinov3_weights_sha256"] = o.dinov3.empty() ? "" : file_sha256(o.dinov3);
    m["svg_config"] = recorded_path(o.svg_config, o.out);
    return m;
  }
  m["config"] = o.config;
  if (layout == "fit") {
    m["patch"] = o.patch;
    m["min_tokens"] = o.min_tokens;
    // What REL.npy holds of an image over S px both ways: a resize folder resumed with
    // --versions both gains its crop files, and one of both resumed with resize keeps them.
    m["rel_npy"] = o.versions == "crop" ? "crop" : "resize";
  } else {
    m["latent_stats_sha256"] = o.latent_stats.empty() ? "" : file_sha256(o.latent_stats);
    m["write_latent_stats"] = recorded_path(o.write_stats, o.out);
  }
  return m;
}

// Before any file is written: a folder made with other settings is refused, naming what differs.
// A folder of `done` images from before manifests were kept is taken as made with these settings.
void check_feature_manifest(const Opts& o, const std::string& layout, size_t done) {
  const std::string path = manifest_path(o.out);
  bring_manifest_in(o, path);
  // A FiT manifest from before --versions lacks rel_npy: its REL.npy are resize versions, so a
  // resume that completes the key may not be one of --versions crop.
  if (layout == "fit" && fs::exists(path)) {
    const nlohmann::json m = read_json_file(path);
    const std::string was = m.is_object() && m.contains("rel_npy") && m["rel_npy"].is_string()
                                ? m["rel_npy"].get<std::string>()
                                : "resize",
                      now = feature_manifest(o, layout)["rel_npy"];
    UVIT_CHECK(was == now, o.out, ": its REL.npy files hold the ", was,
               " versions of images over --resolution px both ways, this run's the ", now,
               " versions (--versions ", o.versions, "); give another --out folder, or delete it");
  }
  const bool had =
      check_or_write_manifest(path, feature_manifest(o, layout), o.out, "features",
                              "give another --out folder, or delete it", {"precision", "rel_npy"},
                              o.quiet);  // older manifests lack them
  if (!had && done > 0 && !o.quiet)
    std::fprintf(stderr,
                 "%s: %zu images were done with no manifest; taken as made with these "
                 "settings, recorded in %s\n",
                 o.out.c_str(), done, path.c_str());
}

// One batch of pending work: images [k, 3, H, W] and, per image, its output file and label.
struct ExtractBatch {
  Array images;
  std::vector<std::string> paths;
  std::vector<int64_t> labels;
};

// The extraction loop of every layout: `count` pending images in batches of `batch` (`load(first,
// m)` builds one, images and their flips), each through `encode` ([k, ...] per-image arrays), then
// `write(path, array, label)` per output file (atomic, so a file that exists is complete).
void run_extraction(size_t count, int batch, bool quiet,
                    const std::function<ExtractBatch(size_t, int)>& load,
                    const std::function<Array(const Array&)>& encode,
                    const std::function<void(const std::string&, const Array&, int64_t)>& write) {
  Progress bar("extract", long(count), quiet);
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k < count; k += size_t(batch)) {
    const int m = int(std::min(count - k, size_t(batch)));
    const ExtractBatch b = load(k, m);
    const Array z = encode(b.images);
    const int64_t per = z.numel() / z.shape[0];
    for (size_t j = 0; j < b.paths.size(); ++j)
      write(b.paths[j],
            Array::from_f32({z.shape[1], z.shape[2], z.shape[3]}, z.as<float>() + int64_t(j) * per),
            b.labels[j]);
    bar.update(long(k) + m);
  }
  bar.finish();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!quiet) std::fprintf(stderr, "encoded %zu images (+ flips) in %.1f s\n", count, s);
}

// The pending images in batches of --batch, each batch [originals..., flips...] through `encode`
// ([2m, ...] per-image arrays), one (array, label) record per file.
void write_features(const Opts& o, const Dataset& ds, const std::vector<Item>& todo,
                    const std::function<Array(const Array&)>& encode) {
  const auto load = [&](size_t first, int m) {
    std::vector<int64_t> idx, labels;
    for (int j = 0; j < m; ++j) idx.push_back(todo[first + size_t(j)].image);
    ExtractBatch b;
    b.images = load_images(ds, idx, o.resolution, true, labels);
    for (int j = 0; j < 2 * m; ++j) {
      const Item& it = todo[first + size_t(j % m)];
      b.paths.push_back(feature_path(o, j < m ? it.file : it.flip_file));
      b.labels.push_back(labels[size_t(j % m)]);
    }
    return b;
  };
  run_extraction(todo.size(), o.batch, o.quiet, load, encode,
                 [](const std::string& path, const Array& one, int64_t label) {
                   const auto bytes = encode_feature_record(one, label);
                   write_file_atomic(path, bytes.data(), bytes.size());
                 });
}

void extract_imagenet(const Opts& o) {
  UVIT_CHECK(o.latent_stats.empty() || o.write_stats.empty(),
             "give --latent-stats or --write-latent-stats, not both");
  if (!o.write_stats.empty()) check_output("--write-latent-stats", o.write_stats, {".safetensors"});
  const AutoencoderConfig cfg = autoencoder_config_from(o.config);
  const int f = cfg.downsample_factor();
  UVIT_CHECK(cfg.in_channels == 3 && o.resolution % f == 0,
             "extract-features: the feature layout needs an RGB autoencoder whose downsampling (",
             f, ") divides --resolution ", o.resolution);
  std::optional<LatentStats> stats;
  if (!o.latent_stats.empty()) stats = load_latent_stats(o.latent_stats, cfg.embed_dim);
  if (!o.write_stats.empty() && fs::exists(o.write_stats))
    stats = load_latent_stats(o.write_stats, cfg.embed_dim);  // a resumed run keeps its stats
  const Autoencoder ae =
      Autoencoder::load(o.weights, cfg, o.device, o.precision, AutoencoderUse::encode);
  print_skipped(ae, o.weights, o.quiet);
  const auto ds = make_imagenet_dataset(o.data, o.resolution);
  const int64_t n = ds->size();
  const std::vector<Item> todo = pending_images(o, *ds);
  UVIT_CHECK(o.write_stats.empty() || stats || todo.size() == size_t(n), o.out,
             ": holds features of ", n - int64_t(todo.size()), " images but ", o.write_stats,
             " is missing: their normalisation is unknown (use a new --out folder)");
  check_feature_manifest(o, "imagenet", size_t(n) - todo.size());
  if (!o.write_stats.empty() && !stats) {
    stats = compute_latent_stats(o, *ds, ae);
    save_latent_stats(o.write_stats, *stats);
    if (!o.quiet) std::fprintf(stderr, "latent stats -> %s\n", o.write_stats.c_str());
  }
  write_features(o, *ds, todo, [&](const Array& x) {
    Array mom = ae.encode_moments(x);
    if (stats) normalize_moments(mom, *stats);
    return mom;
  });
}

// SVG's encoder: deterministic features [392, 16, 16] per image (docs/svg_encoder.md), with
// match_distribution's statistics per image so that a file does not depend on its batch.
void extract_svg(const Opts& o) {
  UVIT_CHECK(
      o.captions.empty() && o.latent_stats.empty() && o.write_stats.empty() && o.config.empty(),
      "extract-features --encoder svg: --captions, --config, --latent-stats and "
      "--write-latent-stats apply to the autoencoders only");
  const SvgEncoderConfig cfg = SvgEncoderConfig::load(o.svg_config);
  UVIT_CHECK(o.resolution == cfg.residual.image_size,
             "extract-features --encoder svg: --resolution ", o.resolution,
             " differs from the encoder's image size ", cfg.residual.image_size);
  auto be = make_encoder_backend(o.device, o.precision);
  SvgEncoder enc(cfg, *be);
  enc.load_files(o.weights, o.dinov3);
  const auto ds = make_imagenet_dataset(o.data, o.resolution);
  const std::vector<Item> todo = pending_images(o, *ds);
  check_feature_manifest(o, "svg", size_t(ds->size()) - todo.size());
  write_features(o, *ds, todo, [&](const Array& x) { return enc.encode(x, 1); });
}

// One forward pass of --fit: an image (and its mirror image) at one version. `crop` draws its
// pixels by center_crop_arr instead of resize_arr; `suffix` is "" (REL.npy, REL.flip.npy) or
// ".crop" (REL.crop.npy, REL.crop.flip.npy, the alternative npy_folder draws).
struct FitUnit {
  size_t file;
  bool crop;
  const char* suffix;
};

// FiTv2's layout (docs/fit.md "Training on your own images"): every image of the folder at its own
// size after the official resize_arr, it and its mirror image through the VAE, one posterior sample
// times the scale factor per file: REL.npy and REL.flip.npy [C, h, w] (REL: the image's path under
// --data without its extension), the npy_folder layout with its stored flips. --versions crop /
// both: an image over S px both ways (the README's "H > S and W > S") also has its crop version,
// ADM's center_crop_arr to S x S (our reading of its CenterCrop(Resize(I))), as REL.npy or beside.
void extract_fit(const Opts& o) {
  UVIT_CHECK(o.captions.empty() && o.latent_stats.empty() && o.write_stats.empty(),
             "extract-features --fit: --captions, --latent-stats and --write-latent-stats do not "
             "apply");
  const AutoencoderConfig cfg = autoencoder_config_from(o.config);
  UVIT_CHECK(cfg.in_channels == 3 && !cfg.decoder_only,
             "extract-features --fit needs an RGB autoencoder with an encoder");
  const int granularity = cfg.downsample_factor() * o.patch;
  UVIT_CHECK(o.resolution >= granularity, "extract-features --fit: --resolution ", o.resolution,
             " is below one token (", granularity, " px)");
  const bool crops = o.versions != "resize";
  UVIT_CHECK(!crops || o.resolution % granularity == 0, "extract-features --fit --versions ",
             o.versions, ": --resolution ", o.resolution, " is not a multiple of ", granularity,
             " px (one token), so its S x S crop would not be whole tokens");
  const std::vector<std::string> files = data::list_images_recursively(o.data);
  UVIT_CHECK(!files.empty(), o.data, ": no images (jpg, jpeg, png, gif) found");
  // OUT/REL + suffix; the walk names every image DATA/REL.
  const auto out_path = [&](const std::string& img, const std::string& suffix) {
    return cat(o.out, "/",
               fs::path(img.substr(o.data.size() + 1)).replace_extension(suffix).string());
  };
  // npy_folder reads NAME.flip.npy and NAME.crop.npy as versions of NAME.npy, not as items. Two
  // images differing only in extension (a.png, a.jpg) would write one a.npy: the second would
  // then be skipped as done, silently one image fewer.
  std::unordered_map<std::string, const std::string*> writer;
  for (const std::string& f : files) {
    for (const char* v : {".flip", ".crop"})
      UVIT_CHECK(!fs::path(f).stem().string().ends_with(v), f, ": a name ending in ", v,
                 " would read as another image's version in the npy folder (rename it)");
    const auto [it, fresh] = writer.emplace(out_path(f, ".npy"), &f);
    UVIT_CHECK(fresh, *it->second, " and ", f, " would both be written as ", it->first,
               " (the same name without its extension: rename one)");
  }
  const auto have = [&](const std::string& f, const std::string& suffix) {
    return fs::exists(out_path(f, suffix + ".npy")) &&
           fs::exists(out_path(f, suffix + ".flip.npy"));
  };
  // The official data leave images of under 16 tokens out (their `less_than_16` folder, which the
  // loader does not read): so do we, and their crop version with them, judged from each pending
  // image's header. A resized side of 0 goes on to fit_resize's error.
  const auto too_small = [&](int w, int h) {
    if (o.min_tokens <= 0) return false;
    const auto [rw, rh] = fit_resize_size(w, h, o.resolution, granularity);
    return rw > 0 && rh > 0 && int64_t(rw / granularity) * (rh / granularity) < o.min_tokens;
  };
  std::vector<FitUnit> todo;
  size_t small = 0, done = 0, cropped = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    const bool resized = have(f, ""), crop_done = o.versions != "both" || have(f, ".crop");
    if (resized && crop_done) {
      ++done;
      continue;
    }
    const auto [w, h] = read_image_size(f);
    if (too_small(w, h)) {
      ++small;
      continue;
    }
    const bool over = crops && w > o.resolution && h > o.resolution;
    const size_t before = todo.size();
    if (!resized) todo.push_back({i, o.versions == "crop" && over, ""});
    if (o.versions == "both" && over && !crop_done) todo.push_back({i, true, ".crop"});
    cropped += over && todo.size() > before;
    if (todo.size() == before) ++done;  // --versions both: no crop version to write
  }
  if (!o.quiet) {
    std::fprintf(stderr,
                 "%zu images -> FiT latents (resize_arr to <= %d tokens of %d px) in %s (%zu "
                 "already done, %zu under %d tokens left out)\n",
                 files.size(), (o.resolution / granularity) * (o.resolution / granularity),
                 granularity, o.out.c_str(), done, small, o.min_tokens);
    if (crops)
      std::fprintf(stderr, "%zu pending images over %d px both ways: their crop (%d x %d) %s\n",
                   cropped, o.resolution, o.resolution, o.resolution,
                   o.versions == "both" ? "beside, as REL.crop.npy + REL.crop.flip.npy"
                                        : "instead, as REL.npy + REL.flip.npy");
  }
  make_dir(o.out);
  // Loaded before the manifest's hash, which so describes the file loaded (file_sha256).
  const Autoencoder ae =
      Autoencoder::load(o.weights, cfg, o.device, o.precision, AutoencoderUse::encode);
  print_skipped(ae, o.weights, o.quiet);
  check_feature_manifest(o, "fit", done);
  const auto& lut = data::totensor_normalize_lut();
  // One image and its mirror image per batch: sizes differ between images.
  const auto load = [&](size_t first, int) {
    const FitUnit& u = todo[first];
    const std::string& f = files[u.file];
    const Image src = read_image(f, 3);
    const Image im =
        u.crop ? center_crop_arr(src, o.resolution) : fit_resize(src, o.resolution, granularity, f);
    const int64_t h = im.h, w = im.w;
    ExtractBatch b;
    b.images = Array(DType::F32, {2, 3, h, w});
    float* x = b.images.as<float>();
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < h; ++y)
        for (int64_t xx = 0; xx < w; ++xx) {
          const float v = lut[im.at(int(y), int(xx), int(c))];
          x[(c * h + y) * w + xx] = v;
          x[((3 + c) * h + y) * w + (w - 1 - xx)] = v;
        }
    for (const char* suffix : {".npy", ".flip.npy"}) {
      b.paths.push_back(out_path(f, u.suffix + std::string(suffix)));
      b.labels.push_back(-1);  // npy_folder labels by the file-name prefix
    }
    return b;
  };
  // The posterior noise of a file hangs on its name alone (FNV-1a), not on the batch or the resume.
  const auto write = [&](const std::string& path, const Array& moments, int64_t) {
    uint64_t key = 0xcbf29ce484222325ull;
    for (unsigned char ch : path.substr(o.out.size() + 1)) key = (key ^ ch) * 0x100000001b3ull;
    const int64_t c = moments.shape[0] / 2, h = moments.shape[1], w = moments.shape[2];
    Array z(DType::F32, {c, h, w});
    sample_posterior(moments.as<float>(), c, h * w, float(cfg.scale_factor), Philox(key, 0xf17), 0,
                     z.as<float>());
    make_parent_dir(path);
    save_npy(path, z);
  };
  run_extraction(
      todo.size(), 1, o.quiet, load, [&](const Array& x) { return ae.encode_moments(x); }, write);
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
  cmd->add_option("--weights,-w", o->weights,
                  "autoencoder_kl.pth, a VA-VAE .pt (other modules skipped) or .safetensors")
      ->required();
  cmd->add_option("--out,-o", o->out, "feature folder ({idx}.npy files)")->required();
  cmd->add_option("--resolution", o->resolution,
                  "256 or 512 (default 256); with --fit the official image size S (any, at least "
                  "8 * patch): images of over S^2 pixels shrink to about S^2")
      ->check(at_least(1));
  cmd->add_option("--config,-c,--autoencoder-config", o->config, kAutoencoderConfigHelp);
  cmd->add_option("--batch", o->batch, "images per forward pass (each also flipped; default 4)")
      ->check(at_least(1));
  cmd->add_flag("--quiet,-q", o->quiet, "print only errors");
  add_encoder_device(cmd, o->device, o->precision, "the encoders");
  cmd->add_option(
      "--captions", o->captions,
      "MS-COCO: captions JSON (annotations/captions_train2014.json); --data is then the "
      "image folder and --out the dataset root");
  add_clip_options(cmd, o->clip, o->clip_config, o->vocab, ClipWeights::Text,
                   "MS-COCO: CLIP text encoder weights (Hugging Face layout)", "MS-COCO: ");
  cmd->add_option("--split", o->split, "MS-COCO: output subfolder, train or val (default train)")
      ->check(CLI::IsMember({"train", "val"}));
  cmd->add_option("--latent-stats", o->latent_stats,
                  std::string(kLatentStatsHelp) +
                      ": the files hold the moments of (z - mean) / std (no scale factor)");
  cmd->add_option("--write-latent-stats", o->write_stats,
                  "compute the per-channel mean/std as LightningDiT does (one posterior sample of "
                  "up to 10000 random images, no flips) and write them (.safetensors); a file "
                  "already there is reused; then normalise as --latent-stats");
  cmd->add_option("--encoder", o->encoder,
                  "autoencoder (default: moments of the --weights autoencoder) or svg (SVG's "
                  "DINOv3 + residual ViT features, used as-is; --weights is the SVG autoencoder "
                  "checkpoint)")
      ->check(CLI::IsMember({"autoencoder", "svg"}));
  cmd->add_option("--dinov3-weights", o->dinov3,
                  "svg: the DINOv3 ViT-S+/16 weights (dinov3_vits16plus_pretrain_*.pth; default: "
                  "the checkpoint's encoder.* tensors)");
  cmd->add_option("--svg-config", o->svg_config,
                  "svg: encoder config JSON {dinov3, residual, use_outnorm} (default: the official "
                  "sizes)");
  cmd->add_flag("--fit", o->fit,
                "FiTv2 (docs/fit.md): every image at its own size after the official resize_arr "
                "(at most (resolution / (8 * patch))^2 tokens, aspect ratio kept) -> REL.npy and "
                "REL.flip.npy latents [C, h, w] under --out, the npy_folder layout");
  CLI::Option* versions =
      cmd->add_option(
             "--versions", o->versions,
             "--fit: of an image over resolution px both ways: resize (default), crop (ADM's "
             "center crop to resolution x resolution, as REL.npy), or both (the crop beside, "
             "as REL.crop.npy + REL.crop.flip.npy: npy_folder draws one of the two, the "
             "official random: 'random')")
          ->check(CLI::IsMember({"resize", "crop", "both"}));
  cmd->add_flag("--crop", o->crop, "--fit: --versions crop (the official random: 'crop')");
  CLI::Option* patch =
      cmd->add_option("--patch", o->patch, "--fit: the network's patch size (default 2)")
          ->check(at_least(1));
  CLI::Option* min_tokens =
      cmd->add_option("--min-tokens", o->min_tokens,
                      "--fit: leave out images of fewer tokens after the resize (default 16, the "
                      "official data's less_than_16; 0 keeps all)")
          ->check(at_least(0));
  // Given at all, not only away from their defaults (`--versions resize` without --fit was taken).
  cmd->callback([o, versions, patch, min_tokens] {
    UVIT_CHECK(o->fit || patch->count() == 0, "extract-features: --patch needs --fit");
    UVIT_CHECK(o->fit || min_tokens->count() == 0, "extract-features: --min-tokens needs --fit");
    UVIT_CHECK(o->fit || (versions->count() == 0 && !o->crop),
               "extract-features: --versions and --crop need --fit");
    take_crop_alias(o->crop, *versions, o->versions);
    UVIT_CHECK(o->fit || o->resolution == 256 || o->resolution == 512,
               "extract-features: --resolution must be 256 or 512, got ", o->resolution);
    if (o->fit) {
      UVIT_CHECK(o->encoder == "autoencoder",
                 "extract-features --fit: --encoder svg does not apply");
      return extract_fit(*o);
    }
    if (o->encoder == "svg") return extract_svg(*o);
    UVIT_CHECK(o->dinov3.empty() && o->svg_config.empty(),
               "extract-features: --dinov3-weights and --svg-config need --encoder svg");
    if (!o->captions.empty()) return extract_mscoco(*o);
    extract_imagenet(*o);
  });
}

}  // namespace uvit::cli
