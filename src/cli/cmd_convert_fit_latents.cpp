// `uvit convert-fit-latents IN OUT`: FiTv2's official latent files (whlzy/FiT
// fit/data/in1k_latent_dataset.py, docs/fit.md "The official data pipeline") to the npy_folder
// layout: per file, the latent [C, h*p, w*p] of each of its two stored versions (the image and its
// flip) as LABEL_NAME.npy and LABEL_NAME.flip.npy, LABEL zero-padded to 4 digits; with --versions
// both, an image's crop file as LABEL_NAME.crop.npy and LABEL_NAME.crop.flip.npy beside them.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>

#include "cli/commands.hpp"
#include "cli/fit_latent_root.hpp"
#include "cli/fit_versions.hpp"
#include "cli/output_paths.hpp"
#include "cli/progress.hpp"
#include "data/pixels.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {

namespace {
// L of one of the folders the official loader reads for length L, else "".
std::string loader_folder_length(const std::string& name) {
  std::string l;
  if (name.rfind("from_16_to_", 0) == 0) l = name.substr(11);
  for (const std::string suffix : {"_resize", "_crop"})
    if (name.rfind("greater_than_", 0) == 0 && name.size() > 13 + suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      l = name.substr(13, name.size() - 13 - suffix.size());
  return l.find_first_not_of("0123456789") == std::string::npos ? l : "";
}
}  // namespace

std::string fit_latent_length(const std::string& dir) {
  std::string len;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string l = loader_folder_length(e.path().filename().string());
    if (l.empty() || !e.is_directory(ec)) continue;
    UVIT_CHECK(len.empty() || len == l, dir, ": holds FiT's latent folders of two target lengths (",
               std::min(len, l), " and ", std::max(len, l),
               "); give a folder with the folders of one");
    len = l;
  }
  return len;
}

namespace {

struct Converted {
  Array latent[2];  // feature[0], feature[1]
  int64_t label = 0;
};

// One file: feature [2, h, w, p*p*C] (tokens, features in (c, p1, p2) order), grid [2, h*w] (row 0
// the column, row 1 the row of each token: the official model's reading), size [h, w], label.
Converted read_fit_latent(const std::string& path, int p) {
  const NamedArrays t = load_safetensors(path);
  const auto get = [&](const char* k) -> const Array& {
    const auto it = std::find_if(t.begin(), t.end(), [&](const auto& e) { return e.first == k; });
    UVIT_CHECK(it != t.end(), path, ": no tensor '", k, "' (expected feature, grid, size, label)");
    return it->second;
  };
  const Array& f = get("feature");
  const auto& s = f.shape;
  UVIT_CHECK(s.size() == 4 && s[0] == 2 && s[1] > 0 && s[2] > 0 && s[3] > 0 && s[3] % (p * p) == 0,
             path, ": feature has shape ", shape_str(s), ", expected [2, h, w, ", p * p,
             "*C] (the image and its flip, patch ", p, ")");
  const int64_t h = s[1], w = s[2], d = s[3], C = d / (p * p), n = h * w;
  const std::vector<int64_t> size = get("size").to_i64();
  UVIT_CHECK(size == std::vector<int64_t>({h, w}), path, ": size ", shape_str(size),
             " differs from the feature's token grid [", h, ", ", w, "]");
  const Array& g = get("grid");
  UVIT_CHECK(g.shape == std::vector<int64_t>({2, n}), path, ": grid has shape ", shape_str(g.shape),
             ", expected [2, ", n, "]");
  const std::vector<int64_t> grid = g.to_i64();
  const std::vector<int64_t> label = get("label").to_i64();
  UVIT_CHECK(label.size() == 1 && label[0] >= 0 && label[0] < 10000, path,
             ": label must be one integer in 0..9999");
  const std::vector<float> v = f.to_f32();
  Converted out;
  out.label = label[0];
  std::vector<char> seen(size_t(n), 0);
  for (int k = 0; k < 2; ++k) out.latent[k] = Array(DType::F32, {C, h * p, w * p});
  for (int64_t tok = 0; tok < n; ++tok) {
    const int64_t col = grid[size_t(tok)], row = grid[size_t(n + tok)];
    UVIT_CHECK(row >= 0 && row < h && col >= 0 && col < w && !seen[size_t(row * w + col)], path,
               ": grid position (", row, ", ", col, ") of token ", tok, " is outside the ", h,
               " x ", w, " grid or repeated");
    seen[size_t(row * w + col)] = 1;
    for (int k = 0; k < 2; ++k) {
      float* z = out.latent[k].as<float>();
      const float* src = v.data() + (k * n + tok) * d;
      for (int64_t c = 0; c < C; ++c)
        for (int u = 0; u < p; ++u)
          for (int q = 0; q < p; ++q)
            z[(c * h * p + row * p + u) * w * p + col * p + q] = src[(c * p + u) * p + q];
    }
  }
  return out;
}

// One file to convert and, with --versions both, its crop version (written beside it).
struct Source {
  std::string file, crop;
};

// The files to convert: under the official root (fit_latent_length), the folders its loader
// reads, an image's greater_than_L_resize file paired with its greater_than_L_crop file of the
// same name (the loader's list of alternatives), of which `versions` keeps resize, crop or both;
// else every *.safetensors under IN.
std::vector<Source> fit_latent_files(const std::string& in, const std::string& versions) {
  UVIT_CHECK(fs::is_directory(in), in, ": not a directory");
  const std::string len = fit_latent_length(in);
  std::vector<Source> out;
  if (len.empty()) {
    UVIT_CHECK(versions == "resize", in, ": --versions ", versions,
               " needs the official root (from_16_to_L, greater_than_L_resize or _crop)");
    for (auto& f : data::list_files_recursively(in, {"safetensors"})) out.push_back({f, ""});
    return out;
  }
  const auto list = [&](const std::string& sub) {
    const std::string d = in + "/" + sub;
    return fs::is_directory(d) ? data::list_files_recursively(d, {"safetensors"})
                               : std::vector<std::string>{};
  };
  for (auto& f : list("from_16_to_" + len)) out.push_back({f, ""});
  std::map<std::string, std::string> crop_of;  // file name -> its greater_than_L_crop file
  for (auto& f : list("greater_than_" + len + "_crop"))
    crop_of.emplace(fs::path(f).filename().string(), f);
  for (auto& f : list("greater_than_" + len + "_resize")) {
    const auto it = crop_of.find(fs::path(f).filename().string());
    if (it == crop_of.end()) {
      out.push_back({f, ""});
      continue;
    }
    if (versions == "crop") out.push_back({it->second, ""});
    if (versions != "crop") out.push_back({f, versions == "both" ? it->second : ""});
    crop_of.erase(it);
  }
  // A crop file without a resize file: --versions crop takes it, as --crop always did; the
  // official loader would pair it with a resize file that does not exist.
  for (const auto& [name, f] : crop_of) {
    UVIT_CHECK(versions != "both", f, ": a crop version without its ", len,
               "_resize file of the same name (--versions both keeps both of an image)");
    if (versions == "crop") out.push_back({f, ""});
  }
  return out;
}

struct Opts {
  std::string in, out;
  int patch = 2;
  std::string versions = "resize";
  bool crop = false, quiet = false;
};

// Converts `files` into the folder `dir` (OUT.partial), the messages naming OUT's files; returns
// how many had a crop version.
size_t convert_into(const Opts& o, const std::vector<Source>& files, const std::string& dir) {
  Progress bar("convert", long(files.size()), o.quiet);
  std::map<std::string, std::string> written;  // output stem -> its input file
  size_t crops = 0;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i].file;
    const Converted c = read_fit_latent(f, o.patch);
    char label[8];
    std::snprintf(label, sizeof label, "%04lld", (long long)c.label);
    const std::string name = fs::path(f).stem().string(), stem = cat(o.out, "/", label, "_", name),
                      file = cat(dir, "/", label, "_", name);
    // npy_folder reads NAME.flip.npy and NAME.crop.npy as versions of NAME.npy, not as items.
    for (const char* suffix : {".flip", ".crop"})
      UVIT_CHECK(!name.ends_with(suffix), f, ": a name ending in ", suffix,
                 " would read as another file's version");
    // The output name drops the folders: two files of one name and label (an image's resize
    // and crop versions, when IN is not the official root) would write one pair, the later
    // over the earlier.
    const auto [it, fresh] = written.emplace(stem, f);
    UVIT_CHECK(fresh, o.in, ": ", it->second, " and ", f, " would both write ", stem,
               ".npy (two versions of one image? give the official root: its from_16_to_L "
               "folder picks one, or keeps both with --versions both)");
    save_npy(file + ".npy", c.latent[0]);
    save_npy(file + ".flip.npy", c.latent[1]);
    if (!files[i].crop.empty()) {
      const Converted k = read_fit_latent(files[i].crop, o.patch);
      UVIT_CHECK(k.label == c.label, files[i].crop, ": label ", k.label, " differs from ", c.label,
                 " of its resize version ", f);
      save_npy(file + ".crop.npy", k.latent[0]);
      save_npy(file + ".crop.flip.npy", k.latent[1]);
      ++crops;
    }
    bar.update(long(i + 1));
  }
  bar.finish();
  return crops;
}

}  // namespace

void add_convert_fit_latents(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert-fit-latents",
      "Convert FiTv2's official latent files (safetensors of h w c tokens) to an npy_folder");
  auto o = std::make_shared<Opts>();
  cmd->add_option("IN", o->in,
                  "the official dataset root (from_16_to_256, greater_than_256_resize, ...) or any "
                  "folder of *.safetensors")
      ->required();
  cmd->add_option("OUT", o->out,
                  "the npy_folder to write (LABEL_NAME.npy, LABEL_NAME.flip.npy; with --versions "
                  "both LABEL_NAME.crop.npy, LABEL_NAME.crop.flip.npy)")
      ->required();
  cmd->add_option("--patch", o->patch, "the patch size of the tokens (default 2)")
      ->check(at_least(1));
  CLI::Option* versions =
      cmd->add_option(
             "--versions", o->versions,
             "of an image with a greater_than_L_crop file: resize (default), crop, or both "
             "(LABEL_NAME.crop.npy beside the resize one: npy_folder draws one of the two, "
             "the official random: 'random')")
          ->check(CLI::IsMember({"resize", "crop", "both"}));
  cmd->add_flag("--crop", o->crop, "--versions crop (the official random: 'crop')");
  cmd->add_flag("--quiet,-q", o->quiet, "print only errors");
  cmd->callback([o, versions] {
    take_crop_alias(o->crop, *versions, o->versions);
    // OUT appears whole or not at all: the files are written into OUT.partial, renamed to OUT at
    // the end. A conversion stopped half-way (Ctrl-C) left an npy_folder of fewer items, or items
    // without their stored flip or crop version, that trained without a word; one into a folder
    // of an earlier conversion kept that one's files (its crop versions after --versions resize).
    check_output_dir("OUT", o->out);
    std::error_code ec;
    UVIT_CHECK(!fs::is_directory(o->out, ec) || fs::is_empty(o->out, ec), o->out,
               ": holds files already; convert-fit-latents writes a new folder (give another OUT, "
               "or delete this one)");
    const std::vector<Source> files = fit_latent_files(o->in, o->versions);
    UVIT_CHECK(!files.empty(), o->in, ": no .safetensors latent files found");
    fs::path out = fs::path(o->out).lexically_normal();
    if (!out.has_filename()) out = out.parent_path();  // "lat/"
    const std::string partial = out.string() + ".partial";
    if (fs::exists(partial, ec)) {
      fs::remove_all(partial);
      if (!o->quiet)
        std::fprintf(stderr, "removed %s, left by a conversion that was stopped\n",
                     partial.c_str());
    }
    make_dir(partial);
    size_t crops = 0;
    try {
      crops = convert_into(*o, files, partial);
    } catch (...) {
      fs::remove_all(partial, ec);  // a refusal half-way leaves nothing behind
      throw;
    }
    fs::rename(partial, out);  // onto a missing or empty OUT
    if (!o->quiet)
      std::fprintf(stderr, "converted %zu latent files (%zu with their crop version) into %s\n",
                   files.size(), crops, o->out.c_str());
  });
}

}  // namespace uvit::cli
