// The "dataset" section of a config -> a Dataset and the loader flags the official pipeline uses.
#include <filesystem>

#include "uvit/autoencoder.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/quote.hpp"

namespace uvit {
namespace {

template <class T>
void read_field(const nlohmann::json& d, const char* key, T& v) {
  if (!d.contains(key) || d[key].is_null()) return;
  try {
    v = d[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail("config dataset.", key, ": unexpected value ", clipped(d[key].dump()));
  }
}

std::string canonical_name(const std::string& n) {
  if (n == "fmnist" || n == "fashion_mnist" || n == "fashion-mnist" || n == "fashionmnist")
    return "fmnist";
  for (const char* k : {"mnist", "cifar10", "celeba", "imagenet", "imagenet256_features",
                        "imagenet512_features", "mscoco256_features", "image_folder", "npy_folder"})
    if (n == k) return n;
  fail("config dataset.name: unknown dataset '", clipped(n),
       "' (fmnist, mnist, cifar10, celeba, imagenet, imagenet256_features, imagenet512_features, "
       "mscoco256_features, image_folder, npy_folder)");
}

// npy_folder's canvas, patch and token limit: the dataset section's, else the preset's nnet
// (in_channels, input_size as a side or [height, width], patch_size, context_size).
void npy_folder_options(const nlohmann::json& config, const nlohmann::json& d, DataOptions& o) {
  const nlohmann::json none = nlohmann::json::object();
  const nlohmann::json& n =
      config.contains("nnet") && config["nnet"].is_object() ? config["nnet"] : none;
  auto pick = [&](const char* dk, const char* nk, int& v) {
    if (n.contains(nk) && n[nk].is_number_integer()) v = n[nk].get<int>();
    read_field(d, dk, v);
  };
  pick("channels", "in_channels", o.channels);
  pick("patch_size", "patch_size", o.patch);
  pick("max_tokens", "context_size", o.max_tokens);
  const nlohmann::json* c = d.contains("canvas")       ? &d["canvas"]
                            : n.contains("input_size") ? &n["input_size"]
                                                       : nullptr;
  if (!c) return;
  if (c->is_number_integer()) {
    o.canvas_h = o.canvas_w = c->get<int>();
  } else {
    UVIT_CHECK(c->is_array() && c->size() == 2 && (*c)[0].is_number_integer() &&
                   (*c)[1].is_number_integer(),
               "config dataset.canvas: expected a side or [height, width], got ", c->dump());
    o.canvas_h = (*c)[0].get<int>();
    o.canvas_w = (*c)[1].get<int>();
  }
}

}  // namespace

DataOptions data_options_from_json(const nlohmann::json& config, const std::string& path_override) {
  UVIT_CHECK(config.is_object(), "config: expected an object with a \"dataset\" section");
  const nlohmann::json& d = config.contains("dataset") ? config["dataset"] : config;
  UVIT_CHECK(d.is_object(), "config dataset: expected an object");
  DataOptions o;
  read_field(d, "name", o.name);
  o.name = canonical_name(o.name);
  read_field(d, "path", o.path);
  read_field(d, "split", o.split);
  read_field(d, "resolution", o.resolution);
  read_field(d, "random_flip", o.random_flip);
  read_field(d, "cfg", o.cfg);
  read_field(d, "p_uncond", o.p_uncond);
  read_field(d, "scale_factor", o.scale_factor);
  read_field(d, "feature_kind", o.feature_kind);
  read_field(d, "resize_or_crop", o.resize_or_crop);
  // Checked for every dataset, not only when an npy_folder loads: a typo on another one (the FiT
  // presets carry the field) trained without a word.
  UVIT_CHECK(
      o.resize_or_crop == "random" || o.resize_or_crop == "resize" || o.resize_or_crop == "crop",
      "config dataset: resize_or_crop '", o.resize_or_crop,
      "' is not random, resize or crop (docs/fit.md)");
  UVIT_CHECK(o.feature_kind == "moments" || o.feature_kind == "deterministic",
             "config dataset.feature_kind: '", o.feature_kind, "' is not moments or deterministic");
  if (o.scale_factor == 0 && config.contains("autoencoder") && config["autoencoder"].is_object()) {
    const auto& ae = config["autoencoder"];
    if (ae.contains("scale_factor") && ae["scale_factor"].is_number())
      o.scale_factor = ae["scale_factor"].get<double>();
    else if (ae.contains("config") && ae["config"].is_string())  // e.g. vavae_f16d32: 1
      o.scale_factor = autoencoder_config_from(ae["config"].get<std::string>()).scale_factor;
  }
  if (o.name == "npy_folder") npy_folder_options(config, d, o);
  if (!path_override.empty()) o.path = path_override;
  UVIT_CHECK(o.p_uncond >= 0 && o.p_uncond <= 1, "config dataset.p_uncond: ", o.p_uncond,
             " outside [0, 1]");
  UVIT_CHECK(o.resolution >= 0, "config dataset.resolution: ", o.resolution, " is negative");
  return o;
}

std::shared_ptr<Dataset> make_dataset(const DataOptions& in) {
  DataOptions o = in;
  o.name = canonical_name(o.name);
  if (o.path.empty() && o.name == "fmnist") o.path = kDefaultFmnistPath;
  UVIT_CHECK(!o.path.empty(), "dataset ", o.name, ": no path given (set dataset.path)");
  // The presets' paths are the official repos' (assets/datasets/...): say how to give one.
  std::error_code ec;
  UVIT_CHECK(std::filesystem::exists(o.path, ec), o.path, ": dataset ", o.name,
             " not found (give its folder: uvit train --data PATH, or dataset.path; docs/data.md)");
  auto natural = [&](int size) {
    UVIT_CHECK(o.resolution == 0 || o.resolution == size, "dataset ", o.name, ": images are ", size,
               "x", size, ", resolution ", o.resolution, " is not supported");
  };
  if (o.name == "fmnist" || o.name == "mnist") {
    natural(28);
    return make_idx_dataset(o.path, o.split);
  }
  if (o.name == "cifar10") {
    natural(32);
    return make_cifar10_dataset(o.path, o.split);
  }
  if (o.name == "celeba") {
    UVIT_CHECK(!o.cfg, "dataset celeba: unlabeled, so cfg cannot be enabled");
    return make_celeba_dataset(o.path, o.resolution ? o.resolution : 64, o.split);
  }
  if (o.name == "imagenet") {
    UVIT_CHECK(o.split == "train", "dataset imagenet: only the train split exists");
    return make_imagenet_dataset(o.path, o.resolution ? o.resolution : 64);
  }
  if (o.name == "image_folder") {
    UVIT_CHECK(o.resolution > 0, "dataset image_folder: set dataset.resolution");
    UVIT_CHECK(!o.cfg, "dataset image_folder: unlabeled, so cfg cannot be enabled");
    return make_image_folder_dataset(o.path, o.resolution);
  }
  if (o.name == "npy_folder") {
    UVIT_CHECK(o.channels > 0 && o.canvas_h > 0 && o.canvas_w > 0,
               "dataset npy_folder: set "
               "dataset.channels and dataset.canvas (or nnet.in_channels and nnet.input_size)");
    return make_npy_folder_dataset(o.path, o.channels, o.canvas_h, o.canvas_w, o.patch,
                                   o.max_tokens, o.resize_or_crop);
  }
  if (o.name == "imagenet256_features" || o.name == "imagenet512_features") {
    UVIT_CHECK(o.split == "train", "dataset ", o.name, ": only the train split exists");
    int res = o.name == "imagenet256_features" ? 256 : 512;
    UVIT_CHECK(o.resolution == 0 || o.resolution == res, "dataset ", o.name, ": resolution ",
               o.resolution, " does not match");
    return make_imagenet_features_dataset(o.path, res, o.scale_factor ? o.scale_factor : 0.18215,
                                          o.feature_kind == "deterministic");
  }
  UVIT_CHECK(o.feature_kind == "moments", "dataset ", o.name,
             ": feature_kind deterministic applies to imagenet256/512_features only");
  // mscoco256_features
  natural(256);
  return make_mscoco_features_dataset(o.path, o.split, o.scale_factor ? o.scale_factor : 0.23010);
}

LoaderOptions loader_options(const DataOptions& o, int64_t batch_size, uint64_t seed) {
  LoaderOptions l;
  l.batch_size = batch_size;
  l.seed = seed;
  std::string n = canonical_name(o.name);
  // CelebA flips unconditionally; feature datasets hold flipped copies as separate files.
  l.random_flip = n == "celeba"                              ? true
                  : n.find("_features") != std::string::npos ? false
                                                             : o.random_flip;
  l.cfg = o.cfg;
  l.p_uncond = o.cfg ? o.p_uncond : 0.0;
  return l;
}

}  // namespace uvit
