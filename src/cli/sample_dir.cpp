#include "cli/sample_dir.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/output_paths.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::cli {

namespace {
using nlohmann::json;

// How the record's keys are set on the command line ("sampler.steps" -> "--steps").
std::string setting_name(const std::string& key) {
  if (key == "config") return "--config";
  if (key == "seed") return "--seed";
  if (key == "sampler.name") return "--sampler";
  if (key == "sampler.steps") return "--steps";
  if (key == "guidance.w") return "--guidance";
  if (key == "guidance.s") return "--cfg-scale";
  if (key == "weights.name") return "--weights (file name)";
  if (key == "weights.sha256") return "--weights (contents)";
  if (key == "autoencoder.name") return "--autoencoder (file name)";
  if (key == "autoencoder.sha256") return "--autoencoder (contents)";
  if (key == "class" || key == "class_name") return "class (--class/--classes)";
  if (key == "prompt") return "prompt (--prompt/--prompts)";
  if (key == "negative_prompt") return "--negative-prompt";
  if (key == "size") return "image size";
  if (key == "index") return "index";
  if (key == "precision") return "--precision";
  if (key == "mini_batch") return "--batch";
  if (key.rfind("sampler.", 0) == 0) {  // the flow and guidance options: --shift, --cfg-interval
    std::string flag = "--" + key.substr(8);
    for (char& ch : flag)
      if (ch == '_') ch = '-';
    return flag;
  }
  return key;
}

std::string shown(const std::string& key, const json* v) {
  if (!v) return "none";
  if (v->is_string()) {
    const std::string s = v->get<std::string>();
    // A hash as the A1111 "Model hash": its first 10 hex digits.
    return key.size() >= 6 && key.compare(key.size() - 6, 6, "sha256") == 0 ? s.substr(0, 10) : s;
  }
  return v->dump();
}

// Keys the records of uvit before them lack (written by the binary of stop 48): absent from a
// folder's old record, they are not a difference, so that its folders stay resumable.
bool added_later(const std::string& key) {
  return key == "precision" || key == "mini_batch" || key == "sampler.skip_cache";
}

// The first key (in sorted order, depth first) whose values differ, "" when none; `a` is the
// folder's record (`old`: one without the keys added_later), `b` this run's. The mini-batch is
// left out: it changes only the last bits (scan_sample_dir notes it).
std::string first_difference(const json& a, const json& b, const std::string& prefix, bool old) {
  json keys = json::object();
  for (const auto& [k, v] : a.items()) keys[k] = true;
  for (const auto& [k, v] : b.items()) keys[k] = true;
  for (const auto& [k, unused] : keys.items()) {
    const std::string key = prefix.empty() ? k : prefix + "." + k;
    if (key == "generator" || key == "mini_batch") continue;  // a rebuilt uvit draws the same
    const json* x = a.contains(k) ? &a.at(k) : nullptr;
    const json* y = b.contains(k) ? &b.at(k) : nullptr;
    if (!x && old && added_later(key)) continue;
    if (x && y && x->is_object() && y->is_object()) {
      const std::string d = first_difference(*x, *y, key, old);
      if (!d.empty()) return d;
    } else if (!x || !y || *x != *y) {
      return setting_name(key) + " " + shown(key, x) + " there, " + shown(key, y) + " in this run";
    }
  }
  return "";
}
}  // namespace

DirContents scan_sample_dir(const std::string& dir, long n,
                            const std::function<std::string(long)>& record, bool seed_drawn) {
  DirContents c;
  c.done.assign(size_t(n), 0);
  std::error_code ec;
  for (long i = 0; i < n; ++i) {
    const std::string path = dir + "/" + sample_file_name(uint64_t(i));
    if (!std::filesystem::exists(path, ec)) continue;
    std::map<std::string, std::string> text;
    try {
      // Up to the image data, which is skipped by its length: a cut file fails (docs/cli.md).
      text = read_png_text_head(path);
    } catch (const Error& e) {
      if (c.broken++ == 0) c.broken_why = e.what();
      continue;
    }
    const auto it = text.find("uvit-params");
    UVIT_CHECK(it != text.end(), path,
               ": a PNG without uvit sample's metadata (uvit-params) where --dir keeps sample ", i,
               ": move it away or give another --dir (nothing was drawn or overwritten)");
    json there;
    try {
      there = json::parse(it->second);
    } catch (const json::exception&) {
      fail(path, ": its uvit-params metadata is not JSON: move it away or give another --dir ",
           "(nothing was drawn or overwritten)");
    }
    const json here = json::parse(record(i));
    const std::string diff = first_difference(there, here, "", !there.contains("precision"));
    UVIT_CHECK(diff.empty(), path, " was drawn with other settings (", diff,
               "): drawing the rest would mix two runs in one folder; give its settings",
               seed_drawn && diff.rfind("--seed ", 0) == 0
                   ? " (--seed -1 drew a new seed: give the one the folder was drawn with)"
                   : "",
               ", or another --dir (nothing was drawn or overwritten)");
    const json mb = there.value("mini_batch", json());
    if (c.other_batch == 0 && mb.is_number_integer() && mb != here.value("mini_batch", json()))
      c.other_batch = mb.get<long>(), c.other_batch_file = path;
    c.done[size_t(i)] = 1;
    ++c.count;
  }
  return c;
}

Image read_sample_png(const std::string& path, int w, int h, int c) {
  Image im = read_image(path, c);
  UVIT_CHECK(im.w == w && im.h == h, path, ": ", im.w, "x", im.h, " pixels, expected ", w, "x", h);
  return im;
}

}  // namespace uvit::cli
