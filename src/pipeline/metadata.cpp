// A1111-style `parameters` text and the `uvit-params` JSON record (docs/serve.md "PNG metadata").
#include "uvit/metadata.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>

#include "io/file.hpp"
#include "io/loaded_weights.hpp"
#include "uvit/error.hpp"

namespace uvit {
namespace {

// At most 6 significant digits ("1.4", "2", "0.25"; w - 1 = 0.3999999999999999 prints as 0.4),
// the shortest that reads back as the same double when there is one.
std::string num(double v) {
  char b[32];
  for (int prec = 1; prec <= 6; ++prec) {
    std::snprintf(b, sizeof b, "%.*g", prec, v);
    if (std::strtod(b, nullptr) == v) break;
  }
  return b;
}

}  // namespace

std::string a1111_quote(const std::string& v) {
  if (v.find_first_of(",:\n") == std::string::npos) return v;
  return nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string a1111_parameters(const ImageParams& p) {
  std::string s;
  if (!p.prompt.empty()) s += p.prompt + "\n";
  if (!p.negative_prompt.empty()) s += "Negative prompt: " + p.negative_prompt + "\n";
  std::vector<std::pair<std::string, std::string>> kv = {
      {"Steps", std::to_string(p.steps)},
      {"Sampler", p.sampler},
      {"CFG scale", num(p.guidance_w)},
      {"UViT scale", num(p.guidance_w - 1)},
      {"Seed", std::to_string(p.seed)},
      {"Index", std::to_string(p.index)},
      {"Size", std::to_string(p.width) + "x" + std::to_string(p.height)},
  };
  if (!p.weights_sha256.empty()) kv.push_back({"Model hash", p.weights_sha256.substr(0, 10)});
  kv.push_back({"Model", p.model});
  if (!p.weights.empty()) kv.push_back({"Weights", p.weights});
  if (!p.autoencoder.empty()) kv.push_back({"VAE", p.autoencoder});
  if (!p.autoencoder_sha256.empty()) kv.push_back({"VAE hash", p.autoencoder_sha256.substr(0, 10)});
  if (p.class_id >= 0) kv.push_back({"Class", std::to_string(p.class_id)});
  if (p.batch_size > 0) kv.push_back({"Batch size", std::to_string(p.batch_size)});
  if (!p.schedule.empty()) kv.push_back({"Schedule type", p.schedule});
  for (const auto& [k, v] : p.extra) kv.push_back({k, v});
  kv.push_back({"RNG", "philox"});
  kv.push_back({"Version", std::string("uvit.cpp ") + version_string() + " " + commit_string()});
  std::string line;
  for (const auto& [k, v] : kv) line += (line.empty() ? "" : ", ") + k + ": " + a1111_quote(v);
  return s + line;
}

std::string params_record(const ImageParams& p) {
  nlohmann::json j = {
      {"schema", "uvit.image.params/v1"},
      {"generator",
       {{"name", "uvit.cpp"}, {"version", version_string()}, {"commit", commit_string()}}},
      {"config", p.model},
      {"weights", {{"name", p.weights}, {"sha256", p.weights_sha256}}},
      {"seed", p.seed},
      {"index", p.index},
      {"sampler", {{"name", p.sampler}, {"steps", p.steps}}},
      {"guidance", {{"w", p.guidance_w}, {"s", p.guidance_w - 1}}},
      {"size", {p.width, p.height}},
      {"rng", "philox"},
  };
  if (p.class_id >= 0) j["class"] = p.class_id;
  if (!p.prompt.empty()) j[p.class_id >= 0 ? "class_name" : "prompt"] = p.prompt;
  if (!p.negative_prompt.empty()) j["negative_prompt"] = p.negative_prompt;
  if (!p.autoencoder.empty())
    j["autoencoder"] = {{"name", p.autoencoder}, {"sha256", p.autoencoder_sha256}};
  if (!p.schedule.empty()) j["schedule"] = p.schedule;
  if (p.batch_size > 0) j["batch_size"] = p.batch_size;
  if (!p.precision.empty()) j["precision"] = p.precision;
  if (p.mini_batch > 0) j["mini_batch"] = p.mini_batch;
  for (const auto& [k, v] : p.extra) j["sampler"][k] = v;
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::map<std::string, std::string> png_metadata(const ImageParams& p) {
  return {{"parameters", a1111_parameters(p)}, {"uvit-params", params_record(p)}};
}

std::map<std::string, std::string> grid_metadata(ImageParams first, int n) {
  first.batch_size = n;
  return png_metadata(first);
}

std::vector<std::pair<std::string, std::string>> parse_a1111_parameters(const std::string& text) {
  // The key/value pattern of infotext_utils.py (re_param_code), and "WxH" for sizes.
  static const std::regex re_param(R"(\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$))");
  static const std::regex re_size(R"(^(\d+)x(\d+)$)");
  std::string t = text;
  const auto b = t.find_first_not_of(" \t\r\n"), e = t.find_last_not_of(" \t\r\n");
  t = b == std::string::npos ? "" : t.substr(b, e - b + 1);
  std::vector<std::string> lines;
  std::istringstream in(t);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  if (lines.empty()) lines.push_back("");
  std::string last = lines.back();
  lines.pop_back();
  const auto matches = [&](const std::string& s) {
    return std::distance(std::sregex_iterator(s.begin(), s.end(), re_param),
                         std::sregex_iterator());
  };
  // libstdc++'s regex recurses once per character: a pathological line (a PNG from anywhere)
  // must not exhaust the stack, and ours are a few hundred characters.
  constexpr size_t kMaxParamsLine = 8192;
  if (last.size() > kMaxParamsLine || matches(last) < 3) {
    lines.push_back(last);
    last.clear();
  }
  std::string prompt, negative;
  bool negative_part = false;
  for (std::string l : lines) {
    const auto lb = l.find_first_not_of(" \t\r"), le = l.find_last_not_of(" \t\r");
    l = lb == std::string::npos ? "" : l.substr(lb, le - lb + 1);
    if (l.rfind("Negative prompt:", 0) == 0) {
      negative_part = true;
      l = l.substr(16);
      const auto s = l.find_first_not_of(" \t");
      l = s == std::string::npos ? "" : l.substr(s);
    }
    std::string& dst = negative_part ? negative : prompt;
    dst += (dst.empty() ? "" : "\n") + l;
  }
  std::vector<std::pair<std::string, std::string>> out = {{"Prompt", prompt},
                                                          {"Negative prompt", negative}};
  for (auto it = std::sregex_iterator(last.begin(), last.end(), re_param);
       it != std::sregex_iterator(); ++it) {
    const std::string k = (*it)[1];
    std::string v = (*it)[2];
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
      try {
        v = nlohmann::json::parse(v).get<std::string>();
      } catch (const std::exception&) {  // A1111 keeps the raw text when unquoting fails
      }
    }
    std::smatch m;
    if (std::regex_match(v, m, re_size)) {
      out.push_back({k + "-1", m[1]});
      out.push_back({k + "-2", m[2]});
    } else {
      out.push_back({k, v});
    }
  }
  return out;
}

// The bytes hashed are those a reader of this process loaded from `path` (io/loaded_weights.hpp):
// the file open here must be the one the load opened (device, inode, size, modification time),
// before and after the hash, else the path names other weights by now and the hash is refused.
// One open and one read, as before; the identity costs two fstat calls.
std::string file_sha256(const std::string& path) {
  // UVIT_TEST_HASH_PAUSE=FILE: the process's first hash waits while FILE exists, so that
  // tests/e2e/hash_once.sh can replace the weights between their load and their hash.
  io::pause_for_test("UVIT_TEST_HASH_PAUSE");
  const std::optional<io::FileId> loaded = io::loaded_as(path);
  const auto changed = [&] {
    fail(path, " changed while it was read (a training run saving it?); run again");
  };
  std::optional<io::InFile> f;
  try {
    f.emplace(path);
  } catch (const Error&) {
    if (loaded) changed();  // loaded, then removed (a snapshot pruned) or made unreadable
    throw;
  }
  if (loaded && f->id() != *loaded) changed();
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  UVIT_CHECK(ctx && EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) == 1,
             "sha256: OpenSSL failed to initialise");
  std::vector<char> buf(1 << 20);
  for (uint64_t at = 0; at < f->size(); at += buf.size()) {
    const size_t n = size_t(std::min<uint64_t>(buf.size(), f->size() - at));
    f->read(at, buf.data(), n, "data");
    EVP_DigestUpdate(ctx.get(), buf.data(), n);
  }
  if (f->id_now() != f->id()) changed();  // written in place while hashed
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  char b[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", md[i]);
    hex += b;
  }
  return hex;
}

std::string base_name(const std::string& path) {
  const auto s = path.find_last_of('/');
  return s == std::string::npos ? path : path.substr(s + 1);
}

}  // namespace uvit
