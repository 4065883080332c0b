// `uvit info --config C`: architecture, parameter count, forward GFLOPs per image; `uvit info
// --presets`: the preset names; `uvit info IMAGE.png [--json]`: an image's generation parameters
// (another file: what it holds);
// `uvit info --config C --classes`: the class table (each also as one line of JSON).
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/commands.hpp"
#include "cli/fit_latent_root.hpp"
#include "cli/json_text.hpp"
#include "data/feature_npy.hpp"
#include "io/npy.hpp"
#include "io/readers.hpp"
#include "uvit/ascii.hpp"
#include "uvit/class_names.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/image.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"
#include "uvit/metadata.hpp"
#include "uvit/network.hpp"
#include "uvit/pipeline.hpp"
#include "uvit/quant.hpp"

namespace fs = std::filesystem;

namespace uvit::cli {
namespace {

// `uvit info IMAGE.png [--json]`: the metadata chunks as written, or one JSON line with the
// parsed A1111 fields and the uvit-params record.
void print_image_info(const std::string& path, bool as_json) {
  const auto text = read_png_text(path);
  const auto p = text.find("parameters"), r = text.find("uvit-params");
  UVIT_CHECK(p != text.end() || r != text.end(), path,
             ": no generation parameters (no 'parameters' or 'uvit-params' text chunk)");
  if (!as_json) {
    if (p != text.end()) std::printf("%s\n", p->second.c_str());
    if (r != text.end())
      std::printf("%suvit-params: %s\n", p != text.end() ? "\n" : "", r->second.c_str());
    return;
  }
  nlohmann::json j = {{"file", base_name(path)}};
  if (p != text.end()) {
    j["parameters"] = p->second;
    nlohmann::json fields = nlohmann::json::object();
    for (const auto& [k, v] : parse_a1111_parameters(p->second)) fields[k] = v;
    j["fields"] = fields;
  }
  if (r != text.end()) {
    try {
      j["uvit-params"] = parse_json(r->second, path);
    } catch (const nlohmann::json::exception&) {
      fail(path, ": the uvit-params chunk is not JSON");
    }
  }
  std::printf("%s\n", json_text(j).c_str());
}

// An .npy holding a pickled object array: a feature file (moments, label) as extract-features and
// the official encoders write, which read_npy_header refuses (it reads numeric arrays).
bool is_object_npy(const std::string& path) {
  try {  // a corrupt header: not a feature file (read_npy_header then names what is wrong)
    return peek_npy_header(path).descr == "|O";
  } catch (const Error&) {
    return false;
  }
}

// A feature file's one-line description, filling j.
std::string describe_feature_file(const std::string& path, nlohmann::json& j) {
  const data::FeatureRecord r = data::load_feature_record(path);
  j.update({{"kind", "features"},
            {"dtype", dtype_name(r.moments.dtype)},  // as the text line: a script sees it too
            {"moments", r.moments.shape},
            {"label", r.label}});
  return cat("features      moments ", dtype_name(r.moments.dtype), " ",
             nlohmann::json(r.moments.shape).dump(), ", label ", r.label,
             ": one item of a features folder (uvit extract-features writes them; the *_features "
             "datasets read them, docs/data.md)");
}

// A folder: what it holds and the command that takes it, or the refusal naming what would.
void describe_folder(const std::string& path, nlohmann::json& j, std::string& line) {
  const fs::path p(path);
  if (fs::exists(p / "config.json"))
    fail(path, ": a training run, not a PNG file; uvit info --config RUN describes its network");
  if (fs::exists(p / "manifest.json")) {  // uvit eval's chunks (OUT.parts or --work)
    const nlohmann::json m = read_json_file((p / "manifest.json").string());
    size_t done = 0;
    for (const auto& e : fs::directory_iterator(p))
      done +=
          e.path().filename().string().rfind("chunk_", 0) == 0 && e.path().extension() == ".npz";
    const long n = m.value("n", 0L), chunk = std::max(1L, m.value("chunk", 1L));
    j.update({{"kind", "eval_chunks"}, {"chunks", done}, {"manifest", m}});
    line = cat("eval_chunks   uvit eval's finished chunks (", done, " of ", (n + chunk - 1) / chunk,
               ") for config ", m.value("config", std::string("?")), ", ", n, " samples (",
               m.value("sampler", std::string("?")), ", ", m.value("steps", 0), " steps, seed ",
               m.value("seed", nlohmann::json()).dump(),
               "): the same uvit eval command resumes from them (docs/evaluation.md)");
    return;
  }
  if (!fit_latent_length(path).empty()) {  // (the rule convert-fit-latents follows)
    std::map<std::string, size_t> files;
    for (const auto& d : fs::directory_iterator(p))
      if (d.is_directory())
        for (const auto& f : fs::directory_iterator(d.path()))
          files[d.path().filename().string()] += f.path().extension() == ".safetensors";
    std::string list;
    for (const auto& [d, n] : files)
      list += list.empty() ? cat(d, ": ", n, n == 1 ? " file" : " files") : cat(", ", d, ": ", n);
    j.update({{"kind", "fit_latents"}, {"folders", files}});
    line = cat("fit_latents   FiT's latent folders (", list, "): uvit convert-fit-latents ", path,
               " OUT makes a training folder of them (docs/fit.md)");
    return;
  }
  size_t arrays = 0, flips = 0;
  std::string first;
  for (const auto& e : fs::recursive_directory_iterator(p))
    if (e.is_regular_file() && e.path().extension() == ".npy") {
      ++arrays;
      flips += e.path().stem().extension() == ".flip";
      if (first.empty() || e.path().string() < first) first = e.path().string();
    }
  if (arrays == 0)
    fail(path,
         ": a folder, not a PNG file; give a PNG, weights (.safetensors, .pth), .npy or .npz");
  if (is_object_npy(first)) {
    const data::FeatureRecord r = data::load_feature_record(first);
    j.update({{"kind", "features_folder"},
              {"files", arrays},
              {"dtype", dtype_name(r.moments.dtype)},
              {"moments", r.moments.shape}});
    line = cat("features      ", arrays, " feature files (moments ", dtype_name(r.moments.dtype),
               " ", nlohmann::json(r.moments.shape).dump(),
               " and a label each): train on them with --set dataset.path=", path,
               " and a *_features dataset (docs/data.md)");
    return;
  }
  const NpyInfo a = read_npy_header(first);
  j.update({{"kind", "npy_folder"},
            {"arrays", arrays},
            {"flips", flips},
            {"dtype", dtype_name(a.dtype)},
            {"first", a.shape}});
  line = cat("npy_folder    ", arrays, " .npy arrays",
             flips ? cat(" (", flips, " of them stored flips, .flip.npy)") : "", ", the first ",
             dtype_name(a.dtype), " ", nlohmann::json(a.shape).dump(),
             ": train on it with --set dataset.name=npy_folder --set dataset.path=", path,
             " (docs/data.md)");
}

// A JSON file: a config is described by --config; uvit eval's --json by its result line.
void describe_json(const std::string& path, nlohmann::json& j, std::string& line) {
  const nlohmann::json f = read_json_file(path);
  if (f.is_object() && f.contains("nnet"))
    fail(path, ": a config, not a PNG file; uvit info --config ", path, " describes it");
  if (f.is_object() && f.contains("ddconfig"))
    fail(path,
         ": an autoencoder config (ddconfig), not a PNG file; give it to --autoencoder-config");
  // eval's manifest (an older uvit's lacks weights_sha256: docs/formats.md "Across versions")
  if (f.is_object() && f.contains("weights") && f.contains("chunk") && f.contains("sampler")) {
    const fs::path d = fs::path(path).parent_path();
    return describe_folder(d.empty() ? "." : d.string(), j, line);
  }
  const bool eval = f.is_object() && f.contains("config") && f.contains("n") &&
                    f.contains("sampler") && f.contains("chunks");
  if (!eval)
    fail(path,
         ": a JSON file that is neither a config (no nnet section) nor uvit eval's --json; uvit "
         "info takes a PNG, weights, an .npy or .npz, a config (--config C)");
  std::string metrics;
  for (const char* k : {"fid", "sfid", "inception_score", "precision", "recall", "clip_score"})
    if (f.contains(k) && f[k].is_number())
      metrics += cat(metrics.empty() ? "" : ", ", k, " ", f[k].dump());
  j.update({{"kind", "eval"}, {"eval", f}});
  line = cat("eval          config ", f["config"].get<std::string>(), ", ", f["n"].dump(),
             " samples (", f["sampler"].get<std::string>(), ", ", f.value("steps", 0),
             " steps, seed ", f.value("seed", nlohmann::json()).dump(), ")",
             metrics.empty() ? std::string(": no metrics") : ": " + metrics);
}

// A training run's log.jsonl (docs/cli.md "log.jsonl"): its rows, the last step and loss.
std::string describe_log(const std::string& path, nlohmann::json& j) {
  std::ifstream in(path);
  UVIT_CHECK(in, path, ": cannot open");
  size_t rows = 0, line = 0, cut = 0;
  nlohmann::json last_train, init;
  for (std::string l; std::getline(in, l);) {
    ++line;
    if (l.empty()) continue;
    nlohmann::json r;
    try {
      r = parse_json(l, path);
    } catch (const nlohmann::json::parse_error&) {
      // A row whose append stopped part-way (a power cut, a full disk): the rows around it stand.
      if (l.front() == '{' && l.back() != '}') {
        ++cut;
        continue;
      }
      // A line another writer put there.
      fail(path, ": line ", line, " is not JSON ('", l.substr(0, 40), l.size() > 40 ? "...'" : "'",
           "): not a training run's log.jsonl, or text was written into it");
    }
    // uvit before 2026-12-05 logged training rows alone, without "event" (docs/formats.md,
    // "Across versions").
    const bool old_train_row =
        r.is_object() && !r.contains("event") && r.contains("step") && r.contains("loss");
    UVIT_CHECK(r.is_object() && (r.contains("event") || old_train_row), path, ": row ", rows + 1,
               " has no \"event\": not a training run's log.jsonl");
    ++rows;
    if (old_train_row || r["event"] == "train") last_train = r;
    if (r["event"] == "init") init = r;
  }
  j.update({{"kind", "log"}, {"rows", rows}});
  std::string what = cat(rows, " rows");
  if (cut) {
    j["rows_cut_short"] = cut;
    what += cat(" and ", cut, cut == 1 ? " row" : " rows",
                " cut short (an append stopped part-way: a power cut or a full disk; skipped)");
  }
  if (!last_train.is_null()) {
    j.update({{"step", last_train["step"]}, {"loss", last_train["loss"]}});
    what += cat(", the last train row at step ", last_train["step"].dump(), ", loss ",
                last_train["loss"].dump());
  }
  if (!init.is_null()) what += cat(", started from ", init.value("path", std::string("?")));
  return cat("log           a training run's log (", what,
             "): uvit info --config RUN describes the run (docs/cli.md \"log.jsonl\")");
}

// The step a train_state's metadata holds as text, as a number (as log.jsonl's rows); text that is
// not an integer stays text.
nlohmann::json step_number(const std::string& v) {
  char* end = nullptr;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  return v.empty() || *end ? nlohmann::json(v) : nlohmann::json(n);
}

// A .safetensors that is not a network's weights: a run's optimizer state, or one of FiT's
// latent files. "" for weights.
std::string not_weights(const TensorReader& r, const std::string& path, nlohmann::json& j) {
  const auto& meta = r.metadata();
  // uvit of 2026-11 wrote no "optimizer" (AdamW's state then; docs/formats.md).
  if (meta.count("num_params") && (meta.count("optimizer") || meta.count("loader_seed"))) {
    const std::string optimizer = meta.count("optimizer") ? meta.at("optimizer") : "adamw";
    j.update({{"kind", "train_state"},
              {"optimizer", optimizer},
              {"step", meta.count("step") ? step_number(meta.at("step")) : nlohmann::json()},
              {"config", meta.count("config") ? meta.at("config") : ""}});
    return cat("train_state   a training run's optimizer state (", optimizer, ", ",
               meta.at("num_params"), " parameters",
               meta.count("step") ? ", step " + meta.at("step") : "",
               meta.count("config") ? ", config " + meta.at("config") : "",
               "), not weights: the run's weights are ",
               (fs::path(path).parent_path() / "nnet_ema.safetensors").string(),
               "; uvit train --resume takes the run");
  }
  std::map<std::string, std::vector<int64_t>> t;
  for (const TensorInfo& i : r.tensors()) t[i.name] = i.shape;
  if (t.size() == 4 && t.count("feature") && t.count("grid") && t.count("size") &&
      t.count("label")) {
    j.update({{"kind", "fit_latent"}, {"feature", t["feature"]}});
    return cat("fit_latent    one of FiT's latent files (feature ",
               nlohmann::json(t["feature"]).dump(),
               "): uvit convert-fit-latents ROOT OUT converts their folders (docs/fit.md)");
  }
  return "";
}

// `uvit info FILE` for what is not a PNG: what the file holds and which command takes it (a
// weights file: its tensors and the preset it matches; an array: its dtype and shape; a folder of
// arrays or of FiT's latents; uvit eval's --json).
void print_file_info(const std::string& path, bool as_json) {
  const fs::path p(path);
  const std::string ext = ascii_lower(p.extension().string());
  nlohmann::json j = {{"file", base_name(path)}};
  std::string line;  // the kinds described in one line
  if (fs::is_directory(p)) {
    describe_folder(path, j, line);
  } else if (ext == ".json") {
    describe_json(path, j, line);
  } else if (ext == ".jsonl") {
    line = describe_log(path, j);
  } else if (ext == ".npy" && is_object_npy(path)) {
    line = describe_feature_file(path, j);
  } else if (ext == ".npy") {
    const NpyInfo a = read_npy_header(path);
    j.update({{"kind", "npy"}, {"dtype", dtype_name(a.dtype)}, {"shape", a.shape}});
  } else if (ext == ".npz") {
    j.update({{"kind", "npz"}, {"arrays", npz_names(path)}});
  } else if (ext == ".safetensors" || ext == ".pth" || ext == ".pt" || ext == ".bin" ||
             ext == ".ckpt") {
    const auto r = open_weights(path);
    line = not_weights(*r, path, j);
    if (line.empty()) {
      size_t values = 0;
      std::map<std::string, size_t> dtypes;
      for (const TensorInfo& t : r->tensors()) {
        values += size_t(t.numel());
        ++dtypes[dtype_name(t.dtype)];
      }
      QuantFormat q;
      const bool quantised = quant_format_of(r->metadata(), path, &q);
      j.update({{"kind", "weights"},
                {"tensors", r->tensors().size()},
                {"values", values},
                {"dtypes", dtypes}});
      if (quantised) j["quantised"] = q.name();
      const auto& meta = r->metadata();
      if (meta.count(kEntryKey)) j["entry"] = meta.at(kEntryKey);  // a checkpoint's "ema", ...
      if (meta.count(kEntriesKey)) j["entries"] = meta.at(kEntriesKey);
      // A quantised file holds scales beside the weights: no preset's table lists them, so the
      // config convert --quantize recorded names it (files quantised before: none).
      if (quantised && meta.count("config")) j["config"] = meta.at("config");
      j["preset"] = weights_preset(r->tensors(), meta);
    }
  } else {
    fail(path,
         ": not a PNG file; uvit info takes a PNG (its generation parameters), weights "
         "(.safetensors, .pth), an .npy or .npz, or --config C");
  }
  if (as_json) {
    std::printf("%s\n", json_text(j).c_str());
    return;
  }
  std::printf("file          %s\n", one_line(path).c_str());
  if (!line.empty()) {
    std::printf("%s\n", one_line(line).c_str());  // it quotes names (paths, a config's)
  } else if (j["kind"] == "npy") {
    std::printf("array         %s %s\n", j["dtype"].get<std::string>().c_str(),
                j["shape"].dump().c_str());
  } else if (j["kind"] == "npz") {
    std::string names;
    for (const auto& n : j["arrays"]) names += (names.empty() ? "" : ", ") + n.get<std::string>();
    std::printf("arrays        %s\n", one_line(names).c_str());
  } else {
    std::string kinds;
    for (const auto& [d, n] : j["dtypes"].items())
      kinds += cat(kinds.empty() ? "" : ", ", n, " ", d);
    std::printf("weights       %zu tensors, %zu values (%s)%s\n", j["tensors"].get<size_t>(),
                j["values"].get<size_t>(), kinds.c_str(),
                j.contains("quantised")
                    ? cat(", quantised ", j["quantised"].get<std::string>()).c_str()
                    : "");
    if (j.contains("entry"))
      std::printf("entry         %s (the file holds %s)\n",
                  one_line(j["entry"].get<std::string>()).c_str(),
                  one_line(j["entries"].get<std::string>()).c_str());
    const std::string preset = one_line(j["preset"]);  // a preset file's name (UVIT_CONFIG_DIR)
    if (!preset.empty())
      std::printf(
          "preset        %s (%s): uvit sample --config %s --weights %s\n", preset.c_str(),
          j.contains("quantised") ? "recorded when quantised" : "every tensor's name and shape",
          preset.c_str(), one_line(path).c_str());
    else
      std::printf("preset        none of uvit info --presets has exactly these tensors%s\n",
                  !j.contains("quantised") ? ""
                  : j.contains("config")
                      ? cat(" (quantised for config ", one_line(j["config"].get<std::string>()),
                            ": give that --config)")
                            .c_str()
                      : " (quantised: give --config C)");
  }
}

// One line per class (id, WordNet id, names, tab-separated), or with --json one line
// [{"id", "wnid", "names"}] ("" where the dataset has no names).
void print_classes(const Config& c, bool as_json) {
  const int k = real_classes(c);
  UVIT_CHECK(k > 0, "config ", c.config_name, " is not class-conditional");
  const auto& t = class_table_of(c);
  nlohmann::json j = nlohmann::json::array();
  for (int id = 0; id < k; ++id) {
    const auto it =
        std::find_if(t.begin(), t.end(), [id](const ClassName& e) { return e.id == id; });
    const std::string wnid = it == t.end() ? "" : it->wnid, names = it == t.end() ? "" : it->names;
    if (as_json)
      j.push_back({{"id", id}, {"wnid", wnid}, {"names", names}});
    else
      std::printf("%d\t%s\t%s\n", id, wnid.c_str(), names.c_str());
  }
  if (as_json) std::printf("%s\n", json_text(j).c_str());
}

}  // namespace

void add_info(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "info",
      "Print a config's architecture, parameter count and FLOPs, a PNG's generation parameters, "
      "or what a weights or array file holds");
  auto config = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false), presets = std::make_shared<bool>(false);
  cmd->add_option("--config,-c", *config, "preset name, JSON file or training run folder");
  cmd->add_flag("--json", *json,
                "print as JSON (one line): the parameter table, with IMAGE its parameters, with "
                "--presets the names, with --classes [{id, wnid, names}]");
  cmd->add_flag("--presets", *presets, "list the preset names (for --config) and exit");
  auto image = std::make_shared<std::string>();
  auto classes = std::make_shared<bool>(false);
  cmd->add_option("IMAGE", *image,
                  "a PNG: print its generation parameters (A1111 `parameters` and `uvit-params`); "
                  "weights (.safetensors, .pth): their tensors and the preset they match; an .npy "
                  "or .npz: its arrays; a run's train_state or log.jsonl, an npy_folder, "
                  "features, FiT's latents, uvit eval's --json or chunks: what it is and the "
                  "command that takes it");
  cmd->add_flag("--classes", *classes,
                "print the class table of the config's dataset: id, WordNet id, names");
  cmd->callback([config, json, presets, image, classes] {
    // Each mode prints one thing: an option of another would be silently dropped.
    UVIT_CHECK(!*presets || (config->empty() && image->empty() && !*classes),
               "--presets takes no --config, --classes or IMAGE (it lists the preset names)");
    UVIT_CHECK(image->empty() || !*classes, "--classes takes no IMAGE (give --config C)");
    if (*presets) {
      const std::vector<std::string> names = preset_names();
      if (*json)
        std::printf("%s\n", json_text(nlohmann::json(names)).c_str());
      else
        for (const std::string& n : names) std::printf("%s\n", one_line(n).c_str());
      return;
    }
    if (!image->empty()) {
      UVIT_CHECK(config->empty(), "'", *image,
                 "' is not expected with --config (uvit info IMAGE.png prints an image's "
                 "generation parameters)");
      // A folder or another kind of file is described (a file that is not there: the PNG's error).
      if (fs::is_directory(*image) || (fs::exists(*image) && !is_png_file(*image)))
        return print_file_info(*image, *json);
      return print_image_info(*image, *json);
    }
    if (*classes) {
      UVIT_CHECK(!config->empty(), "--classes: give --config C (its dataset's classes)");
      return print_classes(load_config(*config), *json);
    }
    UVIT_CHECK(!config->empty(), "give --config C (a preset: uvit info --presets lists them)");
    Config c = load_config(*config);
    const NetConfig& n = c.net;
    ParamTable t = network_param_table(c);
    const double flops = network_forward_flops(c);
    if (*json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& e : t.entries()) j.push_back({{"name", e.name}, {"shape", e.shape}});
      std::printf("%s\n", json_text(j).c_str());
      return;
    }
    std::printf("config        %s\n", one_line(c.config_name).c_str());
    if (!c.is_uvit()) {
      const nlohmann::json full = network_family(c.spec.name).full_config(c.json["nnet"]);
      std::printf("network       %s %s\n", c.spec.name.c_str(), full.dump().c_str());
      std::printf("input         %d channels, %dx%d; output %d channels%s\n", c.spec.in_chans,
                  c.spec.img_size, c.spec.width(), c.spec.out_chans,
                  c.spec.learned_sigma() ? " (eps and a learned variance)" : "");
    } else {
      std::printf(
          "network       %s  img %d  patch %d  in_chans %d  (tokens %d = %d extra + %d patches)\n",
          n.name.c_str(), n.img_size, n.patch_size, n.in_chans, n.tokens(), n.extras(),
          n.num_patches());
      std::printf("width         embed_dim %d  heads %d x %d  mlp %d\n", n.embed_dim, n.num_heads,
                  n.head_dim(), n.mlp_hidden());
      std::printf("blocks        %d in + 1 mid + %d out = %d  (depth %d)  skip %s  conv %s\n",
                  n.blocks_per_side(), n.blocks_per_side(), 2 * n.blocks_per_side() + 1, n.depth,
                  n.skip ? "yes" : "no", n.conv ? "yes" : "no");
      std::printf("options       qkv_bias %s  mlp_time_embed %s  use_checkpoint %s\n",
                  n.qkv_bias ? "yes" : "no", n.mlp_time_embed ? "yes" : "no",
                  n.use_checkpoint ? "yes" : "no");
      // The paper's ablation fields that differ from the official choice (to_json omits the rest).
      const nlohmann::json nj = n.to_json();
      std::string variants;
      for (const char* k : {"skip_mode", "pos_embed", "conv_position", "time_cond", "patch_embed"})
        if (nj.contains(k))
          variants += cat(variants.empty() ? "" : "  ", k, " ", nj[k].get<std::string>());
      if (!variants.empty()) std::printf("variants      %s\n", variants.c_str());
    }
    const NetSpec& s = c.spec;
    if (s.text_conditional())
      std::printf("condition     text: %d tokens x %d\n", s.context_tokens, s.context_dim);
    else if (s.class_conditional())
      std::printf("condition     class: %d classes%s\n", s.num_classes,
                  s.null_class >= 0 ? " (the last one the null class)" : "");
    else
      std::printf("condition     none\n");
    std::printf("parameters    %zu in %zu tensors\n", t.total(), t.entries().size());
    std::printf("forward       %.3f GFLOP per image (training step ~%.3f)\n", flops / 1e9,
                3 * flops / 1e9);
  });
}

}  // namespace uvit::cli
