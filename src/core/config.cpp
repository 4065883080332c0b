// Network configuration parsing/validation, preset loading and --set overrides.
#include "uvit/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <set>
#include <string_view>
#include <vector>

#include "core/install_dirs.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"
#include "uvit/quote.hpp"

namespace uvit {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Sanity limits: far above every official model, low enough that sizes derived from them
// (tokens, hidden widths, parameter counts) cannot overflow an int.
constexpr int kMaxImg = 16384;
constexpr int kMaxWidth = 65536;  // embed_dim, clip_dim, in_chans, heads
constexpr int kMaxDepth = 4096;
constexpr int kMaxTokens = 1 << 20;
constexpr int kMaxClasses = 1 << 24;

std::string kind(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an invalid value";
  }
}

// One-line rendering of a value for error messages.
std::string show(const json& v) { return clipped(v.dump()); }

bool integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  double d = v.get<double>();
  return std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15;
}

int64_t as_int64(const json& v) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    return u > uint64_t(std::numeric_limits<int64_t>::max()) ? std::numeric_limits<int64_t>::max()
                                                             : int64_t(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  return int64_t(v.get<double>());
}

std::string key_list(const json& obj) {
  std::string s;
  for (auto it = obj.begin(); it != obj.end(); ++it) s += (s.empty() ? "" : ", ") + it.key();
  return s;
}

// Types (and a few ranges) of the non-network fields that the trainer and sampler read. Each is
// checked only when present, so hand-written configs may leave sections out.
enum class Kind { Int, PosInt, NonNegInt, Number, Prob, PosNumber, NonNegNumber, Bool, String };
struct Field {
  const char* section;  // "" = top level
  const char* key;
  Kind kind;
};
constexpr Field kFields[] = {
    {"", "name", Kind::String},
    {"", "seed", Kind::Int},
    {"", "pred", Kind::String},
    {"", "ema_rate", Kind::Prob},
    {"train", "n_steps", Kind::NonNegInt},
    {"train", "batch_size", Kind::PosInt},
    {"train", "mode", Kind::String},
    {"train", "log_interval", Kind::PosInt},
    {"train", "eval_interval", Kind::PosInt},
    {"train", "save_interval", Kind::PosInt},
    {"train", "min_snr_gamma", Kind::PosNumber},  // docs/mdt_diffusion.md
    {"train", "accum", Kind::PosInt},
    {"train", "keep_snapshots", Kind::PosInt},
    {"train", "dp_virtual", Kind::Int},  // the trainer names its range
    {"train", "zero", Kind::NonNegInt},  // 0, 1 or 2: the trainer names them
    // Fine-tuning (docs/cli.md "Fine-tuning"; train.ignore_keys, a list, is checked by the trainer)
    {"train", "init_weights", Kind::String},
    {"train", "init_weights_sha256", Kind::String},
    {"train", "finetune", Kind::String},
    {"optimizer", "name", Kind::String},
    {"optimizer", "lr", Kind::PosNumber},
    {"optimizer", "weight_decay", Kind::Number},
    {"optimizer", "eps", Kind::PosNumber},
    {"optimizer", "max_grad_norm", Kind::NonNegNumber},  // Adan (docs/mdt_diffusion.md)
    {"optimizer", "no_prox", Kind::Bool},
    {"lr_scheduler", "name", Kind::String},
    {"lr_scheduler", "warmup_steps", Kind::NonNegInt},
    {"autoencoder", "pretrained_path", Kind::String},
    {"autoencoder", "scale_factor", Kind::PosNumber},
    {"autoencoder", "config", Kind::String},        // a built-in name or JSON (docs/autoencoder.md)
    {"autoencoder", "latent_stats", Kind::String},  // per-channel mean/std file
    {"dataset", "name", Kind::String},
    {"dataset", "path", Kind::String},
    {"dataset", "random_flip", Kind::Bool},
    {"dataset", "resolution", Kind::PosInt},
    {"dataset", "cfg", Kind::Bool},
    {"dataset", "p_uncond", Kind::Prob},
    {"sample", "sample_steps", Kind::PosInt},
    {"sample", "n_samples", Kind::NonNegInt},
    {"sample", "mini_batch_size", Kind::PosInt},
    {"sample", "algorithm", Kind::String},
    {"sample", "cfg", Kind::Bool},
    {"sample", "scale", Kind::Number},
    {"sample", "path", Kind::String},
    {"sample", "shift", Kind::PosNumber},  // flow presets (docs/flow.md)
    {"sample", "cfg_interval", Kind::Prob},
    {"sample", "zero_init_steps", Kind::NonNegInt},  // SVG's cfg_star (docs/svg.md)
    {"sample", "cfg_power", Kind::NonNegNumber},     // power-cos guidance (docs/mdt_diffusion.md)
    {"sample", "atol", Kind::PosNumber},
    {"sample", "rtol", Kind::PosNumber},
};
constexpr const char* kSections[] = {"train",   "optimizer", "lr_scheduler", "autoencoder",
                                     "dataset", "sample",    "transport"};

void check_field(const json& v, const std::string& name, Kind k) {
  switch (k) {
    case Kind::Int:
      json_int(v, name);
      break;
    case Kind::PosInt:
      UVIT_CHECK(json_int(v, name) > 0, name, " must be positive, got ", show(v));
      break;
    case Kind::NonNegInt:
      UVIT_CHECK(json_int(v, name) >= 0, name, " must be non-negative, got ", show(v));
      break;
    case Kind::Number:
      UVIT_CHECK(std::isfinite(json_number(v, name)), name, " must be finite");
      break;
    case Kind::Prob: {
      double x = json_number(v, name);
      UVIT_CHECK(x >= 0 && x <= 1, name, " must be in [0, 1], got ", show(v));
      break;
    }
    case Kind::PosNumber: {
      double x = json_number(v, name);
      UVIT_CHECK(std::isfinite(x) && x > 0, name, " must be positive, got ", show(v));
      break;
    }
    case Kind::NonNegNumber: {
      double x = json_number(v, name);
      UVIT_CHECK(std::isfinite(x) && x >= 0, name, " must be a finite number >= 0, got ", show(v));
      break;
    }
    case Kind::Bool:
      json_bool(v, name);
      break;
    case Kind::String:
      json_string(v, name);
      break;
  }
}

// Whole-document checks beyond the network: field types, our added fields, and that the latent
// shape agrees with the network input.
void check_preset(const json& doc, const NetSpec& net) {
  for (const char* s : kSections)
    if (doc.contains(s))
      UVIT_CHECK(doc[s].is_object(), s, ": expected an object, got ", kind(doc[s]));
  for (const Field& f : kFields) {
    const json* parent = &doc;
    std::string name = f.key;
    if (*f.section) {
      if (!doc.contains(f.section)) continue;
      parent = &doc[f.section];
      name = cat(f.section, ".", f.key);
    }
    if (parent->contains(f.key)) check_field((*parent)[f.key], name, f.kind);
  }
  if (doc.contains("schedule")) {
    std::string s = json_string(doc["schedule"], "schedule");
    UVIT_CHECK(s == "continuous_vp" || s == "discrete_sd" || s == "adm" || s == "flow",
               "schedule \"", clipped(s),
               "\" is not \"continuous_vp\", \"discrete_sd\", \"adm\" or \"flow\"");
  }
  if (doc.contains("train") && doc["train"].contains("mode")) {
    std::string m = doc["train"]["mode"];
    UVIT_CHECK(m == "uncond" || m == "cond", "train.mode \"", clipped(m),
               "\" is not \"uncond\" or \"cond\"");
  }
  if (doc.contains("optimizer") && doc["optimizer"].contains("name")) {
    const std::string o = doc["optimizer"]["name"];
    UVIT_CHECK(o == "adamw" || o == "adan", "optimizer.name \"", clipped(o),
               "\" is not \"adamw\" or \"adan\"");
  }
  if (doc.contains("optimizer") && doc["optimizer"].contains("betas")) {
    const json& b = doc["optimizer"]["betas"];
    // Two (AdamW) or three (Adan): the count is matched to optimizer.name when training starts,
    // so that --set can switch the two one key at a time.
    bool ok = b.is_array() && (b.size() == 2 || b.size() == 3);
    for (size_t i = 0; ok && i < b.size(); ++i) ok = b[i].is_number();
    UVIT_CHECK(ok,
               "optimizer.betas: expected an array of two numbers (adamw) or three (adan), got ",
               show(b));
    for (const json& x : b)
      UVIT_CHECK(x.get<double>() >= 0 && x.get<double>() < 1, "optimizer.betas ", show(b),
                 " must lie in [0, 1)");
  }
  if (doc.contains("z_shape")) {
    const json& z = doc["z_shape"];
    bool ok = z.is_array() && z.size() == 3;
    for (size_t i = 0; ok && i < 3; ++i) ok = integral(z[i]);
    UVIT_CHECK(ok, "z_shape: expected an array of three integers, got ", show(z));
    UVIT_CHECK(as_int64(z[0]) == net.in_chans && as_int64(z[1]) == net.img_size &&
                   as_int64(z[2]) == net.width(),
               "z_shape ", show(z), " does not match nnet (in_chans ", net.in_chans, ", img_size ",
               net.img_size, net.square() ? std::string() : cat(" x ", net.width()), ")");
  }
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  UVIT_CHECK(f, p.string(), ": cannot open: ", std::strerror(errno));
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  UVIT_CHECK(!f.bad(), p.string(), ": read error");
  return s;
}

// nlohmann's message starts with "[json.exception.parse_error.101] parse error at line L,
// column C: "; keep the part after it and make it one line.
std::string parse_detail(const char* what) {
  std::string s = what;
  size_t pos = s.find(": ");
  if (s.rfind("[json.exception", 0) == 0 && pos != std::string::npos) s = s.substr(pos + 2);
  for (char& ch : s)
    if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
  return s;
}

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

// The places of the built-in presets, in order: copies of one set, each of the build that put it
// there (an install, the source tree), so the first that holds any is the set this program takes.
std::vector<fs::path> builtin_dirs() {
  std::vector<fs::path> dirs;
  // An installed uvit's own presets before the source tree it was built from, which may have
  // changed since, or be gone, or be unreadable to the user who runs it.
  for (const fs::path& d : installed_data_dirs()) dirs.push_back(d / "configs");
#ifdef UVIT_SOURCE_CONFIG_DIR
  dirs.emplace_back(UVIT_SOURCE_CONFIG_DIR);
#endif
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(exe.parent_path() / "configs");
  dirs.push_back(configured_data_dir() / "configs");  // a static-linked program's last resort
  return dirs;
}

const char* config_dir_env() {
  const char* env = std::getenv("UVIT_CONFIG_DIR");
  return env && *env ? env : nullptr;
}

// Every place looked in, for the message when none holds a preset.
std::vector<fs::path> search_dirs() {
  std::vector<fs::path> dirs = builtin_dirs();
  if (const char* env = config_dir_env()) dirs.insert(dirs.begin(), env);
  return dirs;
}

// The folders presets come from, for their list and a lookup alike: UVIT_CONFIG_DIR (the user's
// own, added to the built-in ones and first), then the first place of builtin_dirs() holding a
// preset. Names only a later place holds (an older install's) are neither listed nor found.
std::vector<fs::path> preset_dirs() {
  std::vector<fs::path> dirs;
  if (const char* env = config_dir_env()) dirs.emplace_back(env);
  for (const fs::path& d : builtin_dirs()) {
    std::error_code ec;
    for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".json" && is_file(it->path())) {
        dirs.push_back(d);
        return dirs;
      }
  }
  return dirs;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Re-derives c.net from c.json and checks the whole document; errors get the config's name.
void finish(Config& c, const std::string& context = "") {
  try {
    UVIT_CHECK(c.json.contains("nnet"), "no \"nnet\" section");
    const json& nnet = c.json["nnet"];
    UVIT_CHECK(nnet.is_object(), "nnet: expected an object, got ", kind(nnet));
    const std::string name =
        nnet.contains("name") ? json_string(nnet["name"], "nnet.name") : "uvit";
    c.spec = network_family(name).spec(c.json);
    c.net = c.is_uvit() ? net_config_from_json(nnet) : NetConfig{};
    check_preset(c.json, c.spec);
  } catch (const Error& e) {
    fail("config ", c.config_name, ": ", e.what(), context);
  }
}

}  // namespace

int json_int(const json& v, const std::string& field) {
  UVIT_CHECK(integral(v), field, ": expected an integer, got ", kind(v), " ", show(v));
  int64_t x = as_int64(v);
  UVIT_CHECK(x >= std::numeric_limits<int>::min() && x <= std::numeric_limits<int>::max(), field,
             ": ", show(v), " is out of range");
  return int(x);
}

double json_number(const json& v, const std::string& field) {
  UVIT_CHECK(v.is_number(), field, ": expected a number, got ", kind(v), " ", show(v));
  return v.get<double>();
}

bool json_bool(const json& v, const std::string& field) {
  UVIT_CHECK(v.is_boolean(), field, ": expected true or false, got ", kind(v), " ", show(v));
  return v.get<bool>();
}

std::string json_string(const json& v, const std::string& field) {
  UVIT_CHECK(v.is_string(), field, ": expected a string, got ", kind(v), " ", show(v));
  return v.get<std::string>();
}

void check_net_range(const std::string& field, long v, long lo, long hi) {
  UVIT_CHECK(v >= lo, "nnet.", field, " must be ", lo == 0 ? "non-negative" : "positive", ", got ",
             v);
  UVIT_CHECK(v <= hi, "nnet.", field, " ", v, " exceeds the limit ", hi);
}

float NetConfig::attn_scale() const {
  return float(qk_scale > 0 ? qk_scale : 1.0 / std::sqrt(double(head_dim())));
}

const std::vector<std::string>& NetConfig::variant_values(const std::string& field) {
  static const std::vector<std::string> skip = {"concat_linear", "add", "add_linear", "linear_add"},
                                        pos = {"learned_1d", "sincos_2d", "none"},
                                        conv = {"after_linear", "before_linear"},
                                        time = {"token", "adaln"}, patch = {"linear", "conv_stack"},
                                        none;
  return field == "skip_mode"       ? skip
         : field == "pos_embed"     ? pos
         : field == "conv_position" ? conv
         : field == "time_cond"     ? time
         : field == "patch_embed"   ? patch
                                    : none;
}

int NetConfig::stem_convs() const {
  int k = 0;
  while ((1 << k) < patch_size) ++k;
  return k;
}

namespace {
void check_variant(const std::string& field, const std::string& v) {
  const auto& ok = NetConfig::variant_values(field);
  if (std::find(ok.begin(), ok.end(), v) != ok.end()) return;
  std::string list;
  for (const auto& o : ok) list += (list.empty() ? "" : ", ") + o;
  fail("nnet.", field, " \"", clipped(v), "\" is not one of: ", list);
}
}  // namespace

void NetConfig::validate() const {
  UVIT_CHECK(name == "uvit" || name == "uvit_t2i", "nnet.name \"", clipped(name),
             "\" is not \"uvit\" or \"uvit_t2i\"");
  check_net_range("img_size", img_size, 1, kMaxImg);
  check_net_range("patch_size", patch_size, 1, kMaxImg);
  check_net_range("in_chans", in_chans, 1, kMaxWidth);
  check_net_range("embed_dim", embed_dim, 1, kMaxWidth);
  check_net_range("depth", depth, 0, kMaxDepth);
  check_net_range("num_heads", num_heads, 1, kMaxWidth);
  UVIT_CHECK(img_size % patch_size == 0, "nnet.img_size ", img_size,
             " is not divisible by nnet.patch_size ", patch_size);
  UVIT_CHECK(embed_dim % num_heads == 0, "nnet.embed_dim ", embed_dim,
             " is not divisible by nnet.num_heads ", num_heads);
  UVIT_CHECK(std::isfinite(mlp_ratio) && mlp_ratio > 0, "nnet.mlp_ratio must be positive, got ",
             mlp_ratio);
  UVIT_CHECK(embed_dim * mlp_ratio < double(kMaxTokens) * 16, "nnet.mlp_ratio ", mlp_ratio,
             " gives an MLP wider than the limit ", kMaxTokens * 16);
  UVIT_CHECK(mlp_hidden() >= 1, "nnet.mlp_ratio ", mlp_ratio, " gives an empty MLP for embed_dim ",
             embed_dim);
  // 0 stands for the official None (1/sqrt(head_dim)); a negative scale has no meaning.
  UVIT_CHECK(std::isfinite(qk_scale) && qk_scale >= 0,
             "nnet.qk_scale must be positive or null, got ", qk_scale);
  if (t2i()) {
    check_net_range("clip_dim", clip_dim, 1, kMaxWidth);
    check_net_range("num_clip_token", num_clip_token, 1, kMaxTokens);
  } else {
    // Like the official code: num_classes > 0 adds label_emb, anything else means unconditional.
    UVIT_CHECK(num_classes <= kMaxClasses, "nnet.num_classes ", num_classes, " exceeds the limit ",
               kMaxClasses);
  }
  check_variant("skip_mode", skip_mode);
  check_variant("pos_embed", pos_embed);
  check_variant("conv_position", conv_position);
  check_variant("time_cond", time_cond);
  check_variant("patch_embed", patch_embed);
  if (patch_embed == "conv_stack") {
    // One stride-2 3x3 conv per halving; the first has D / 2^(k-1) channels.
    UVIT_CHECK(patch_size >= 2 && (patch_size & (patch_size - 1)) == 0, "nnet.patch_size ",
               patch_size, " must be a power of two >= 2 for nnet.patch_embed \"conv_stack\"");
    UVIT_CHECK(embed_dim % (1 << (stem_convs() - 1)) == 0, "nnet.embed_dim ", embed_dim,
               " must be a multiple of ", 1 << (stem_convs() - 1),
               " for nnet.patch_embed \"conv_stack\" with patch_size ", patch_size);
  }
  // The 2-D sin-cos table splits D into four sin/cos quarters.
  UVIT_CHECK(pos_embed != "sincos_2d" || embed_dim % 4 == 0, "nnet.embed_dim ", embed_dim,
             " must be a multiple of 4 for nnet.pos_embed \"sincos_2d\"");
  UVIT_CHECK(int64_t(extras()) + int64_t(num_patches()) <= kMaxTokens,
             "nnet: ", int64_t(extras()) + int64_t(num_patches()), " tokens (img_size ", img_size,
             ", patch_size ", patch_size, ") exceed the limit ", kMaxTokens);
}

nlohmann::json NetConfig::to_json() const {
  json j = {{"name", name},
            {"img_size", img_size},
            {"patch_size", patch_size},
            {"in_chans", in_chans},
            {"embed_dim", embed_dim},
            {"depth", depth},
            {"num_heads", num_heads},
            {"mlp_ratio", mlp_ratio},
            {"qkv_bias", qkv_bias},
            {"qk_scale", qk_scale > 0 ? json(qk_scale) : json(nullptr)},
            {"mlp_time_embed", mlp_time_embed},
            {"use_checkpoint", use_checkpoint},
            {"conv", conv},
            {"skip", skip}};
  if (t2i()) {
    j["clip_dim"] = clip_dim;
    j["num_clip_token"] = num_clip_token;
  } else {
    j["num_classes"] = num_classes;
  }
  // Official choices stay implicit, so official configs and run folders read as before.
  for (const auto& [k, v] : {std::pair<const char*, const std::string*>{"skip_mode", &skip_mode},
                             {"pos_embed", &pos_embed},
                             {"conv_position", &conv_position},
                             {"time_cond", &time_cond},
                             {"patch_embed", &patch_embed}})
    if (*v != variant_values(k).front()) j[k] = *v;
  return j;
}

NetConfig net_config_from_json(const nlohmann::json& j) {
  UVIT_CHECK(j.is_object(), "nnet: expected an object, got ", kind(j));
  NetConfig c;
  if (j.contains("name")) {
    c.name = json_string(j["name"], "nnet.name");
    UVIT_CHECK(c.name == "uvit" || c.name == "uvit_t2i", "nnet.name \"", clipped(c.name),
               "\" is not \"uvit\" or \"uvit_t2i\"");
  }
  const bool t2i = c.t2i();
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    const std::string f = "nnet." + k;
    if (k == "name")
      continue;
    else if (k == "img_size")
      c.img_size = json_int(v, f);
    else if (k == "patch_size")
      c.patch_size = json_int(v, f);
    else if (k == "in_chans")
      c.in_chans = json_int(v, f);
    else if (k == "embed_dim")
      c.embed_dim = json_int(v, f);
    else if (k == "depth")
      c.depth = json_int(v, f);
    else if (k == "num_heads")
      c.num_heads = json_int(v, f);
    else if (k == "mlp_ratio")
      c.mlp_ratio = json_number(v, f);
    else if (k == "qkv_bias")
      c.qkv_bias = json_bool(v, f);
    else if (k == "qk_scale")
      c.qk_scale = v.is_null() ? 0.0 : json_number(v, f);
    else if (k == "mlp_time_embed")
      c.mlp_time_embed = json_bool(v, f);
    else if (k == "use_checkpoint")
      c.use_checkpoint = json_bool(v, f);
    else if (k == "conv")
      c.conv = json_bool(v, f);
    else if (k == "skip")
      c.skip = json_bool(v, f);
    else if (k == "skip_mode")
      c.skip_mode = json_string(v, f);
    else if (k == "pos_embed")
      c.pos_embed = json_string(v, f);
    else if (k == "conv_position")
      c.conv_position = json_string(v, f);
    else if (k == "time_cond")
      c.time_cond = json_string(v, f);
    else if (k == "patch_embed")
      c.patch_embed = json_string(v, f);
    else if (k == "num_classes" && !t2i)
      c.num_classes = json_int(v, f);
    else if (k == "clip_dim" && t2i)
      c.clip_dim = json_int(v, f);
    else if (k == "num_clip_token" && t2i)
      c.num_clip_token = json_int(v, f);
    else
      fail(f, ": unknown key (not an argument of ", c.name, ")");
  }
  if (j.contains("qk_scale") && !j["qk_scale"].is_null())
    UVIT_CHECK(c.qk_scale > 0, "nnet.qk_scale must be positive or null, got ", show(j["qk_scale"]));
  c.validate();
  return c;
}

std::vector<std::string> preset_names() {
  std::set<std::string> names;
  for (const fs::path& d : preset_dirs()) {
    std::error_code ec;
    for (fs::directory_iterator it(d, ec), end; !ec && it != end; it.increment(ec))
      if (it->path().extension() == ".json" && is_file(it->path()))
        names.insert(it->path().stem().string());
  }
  return {names.begin(), names.end()};
}

namespace {
fs::path find_preset(const std::string& name) {
  for (const fs::path& d : preset_dirs())
    if (fs::path p = d / (name + ".json"); is_file(p)) return p;
  return {};
}

// The preset a training run's checkpoints record ("" when `dir` holds none). nnet is read last:
// a run whose first save was cut between its moves holds only it until --resume finishes the save
// (src/train/save_commit.hpp), and its config is loaded before.
std::string recorded_config_name(const fs::path& dir) {
  for (const char* f : {"train_state.safetensors", "nnet_ema.safetensors", "nnet.safetensors"}) {
    std::error_code ec;
    if (!fs::exists(dir / f, ec)) continue;
    try {
      auto meta = read_safetensors_metadata((dir / f).string());
      if (meta.count("config") && !meta["config"].empty()) return meta["config"];
    } catch (const Error&) {
    }
  }
  return "";
}
// A training run's folder is named in its config by the preset its checkpoints record.
std::string run_config_name(const fs::path& dir) {
  const std::string n = recorded_config_name(dir);
  return n.empty() ? dir.lexically_normal().filename().string() : n;
}
}  // namespace

Config load_config(const std::string& name_or_path) {
  UVIT_CHECK(!name_or_path.empty(), "config: empty name");
  fs::path path;
  Config c;
  // A bare name is a preset, also with .json unless a file of that name is here.
  const bool is_json = ends_with(name_or_path, ".json");
  const std::string preset =
      is_json ? name_or_path.substr(0, name_or_path.size() - 5) : name_or_path;
  const bool bare = name_or_path.find('/') == std::string::npos;
  std::error_code ec;
  if (bare && !(is_json && is_file(name_or_path)) && !(path = find_preset(preset)).empty()) {
    c.config_name = preset;
  } else if (is_file(name_or_path)) {
    path = name_or_path;
    c.config_name = path.stem().string();
    // RUN/config.json is the run's config, named as RUN is (not "config").
    if (path.filename() == "config.json") {
      const std::string run =
          recorded_config_name(path.parent_path().empty() ? "." : path.parent_path());
      if (!run.empty()) c.config_name = run;
    }
  } else if (fs::is_directory(name_or_path, ec)) {
    path = fs::path(name_or_path) / "config.json";
    UVIT_CHECK(is_file(path), "config ", name_or_path,
               ": a folder without config.json (not a training run's folder)");
    c.config_name = run_config_name(name_or_path);
  } else {
    std::string list, searched;
    for (const std::string& n : preset_names()) list += (list.empty() ? "" : ", ") + n;
    for (const fs::path& d : search_dirs()) searched += (searched.empty() ? "" : ", ") + d.string();
    fail("config '", name_or_path, "' not found: not a file, a run folder or a preset (presets: ",
         list.empty() ? "none in " + searched + "; set UVIT_CONFIG_DIR" : list, ")");
  }
  std::string text = read_text(path);
  json doc;
  try {
    doc = parse_json(text, path.string());
  } catch (const json::parse_error& e) {
    fail(path.string(), ": invalid JSON at byte ", e.byte, ": ", parse_detail(e.what()));
  }
  UVIT_CHECK(doc.is_object(), path.string(), ": expected a JSON object at the top level, got ",
             kind(doc));
  if (!doc.contains("nnet")) {
    // A bare object of constructor arguments is a network-only config.
    bool net_only = false;
    std::string names;
    for (const std::string& n : network_names()) {
      net_only = net_only || (doc.contains("name") && doc["name"] == n);
      names += (names.empty() ? "\"" : ", \"") + n + "\"";
    }
    UVIT_CHECK(net_only, path.string(),
               ": no \"nnet\" section (a network-only config needs \"name\": one of ", names, ")");
    doc = json{{"nnet", std::move(doc)}};
  }
  c.json = std::move(doc);
  finish(c);
  return c;
}

void apply_override(Config& c, const std::string& assignment) {
  size_t eq = assignment.find('=');
  const std::string where = eq == std::string::npos
                                ? cat("override '", clipped(assignment), "'")
                                : cat("override '", clipped(assignment.substr(0, eq)), "=",
                                      clipped(assignment.substr(eq + 1)), "'");
  UVIT_CHECK(eq != std::string::npos, where, ": expected section.key=value");
  std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front()))) key.erase(0, 1);

  std::vector<std::string> parts;
  for (size_t start = 0;;) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot - start));
    UVIT_CHECK(!parts.back().empty(), where, ": malformed key '", clipped(key), "'");
    if (dot == std::string::npos) break;
    start = dot + 1;
  }

  // Value: JSON when it parses, else the raw text as a string.
  json value = json::parse(text, nullptr, false);
  if (value.is_discarded()) value = text;

  json doc = c.json;  // edit a copy so a rejected override leaves c untouched
  json* node = &doc;
  std::string path;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    std::string next = path.empty() ? parts[i] : path + "." + parts[i];
    UVIT_CHECK(node->contains(parts[i]) && (*node)[parts[i]].is_object(), where,
               ": unknown section ", clipped(next), " (",
               path.empty() ? std::string("config") : path, " has: ", key_list(*node), ")");
    node = &(*node)[parts[i]];
    path = next;
  }
  const std::string& leaf = parts.back();
  const bool in_nnet = path == "nnet";
  // Integer keys a preset may leave out (data parallelism, docs/distributed.md), MDT's options
  // (docs/mdt_diffusion.md), fine-tuning's (docs/cli.md "Fine-tuning") and the flip of a dataset
  // swapped in by --set (docs/fit.md); typed by the field table (train.ignore_keys: by the
  // trainer) when the document is re-checked.
  const bool optional_int = key == "train.dp_virtual" || key == "train.zero";
  const bool optional = optional_int || key == "train.min_snr_gamma" || key == "sample.cfg_power" ||
                        key == "optimizer.max_grad_norm" || key == "optimizer.no_prox" ||
                        key == "train.init_weights" || key == "train.ignore_keys" ||
                        key == "train.finetune" || key == "train.overlap" ||
                        key == "dataset.random_flip";
  if (!node->contains(leaf)) {
    // Network keys are checked by name when nnet is re-parsed; elsewhere only existing keys may
    // be set, which catches typos such as optimizer.lrr.
    UVIT_CHECK(in_nnet || optional, where, ": unknown key ", clipped(key), " (",
               path.empty() ? std::string("config") : path, " has: ", key_list(*node), ")");
    UVIT_CHECK(!optional_int || integral(value), where, ": ", key, " expects an integer, got ",
               show(value));
    (*node)[leaf] = optional_int ? json(as_int64(value)) : value;
  } else {
    json& old = (*node)[leaf];
    if (in_nnet) {
      old = value;  // typed by net_config_from_json
    } else if (old.is_object()) {
      fail(where, ": ", key, " is a section; set its keys one by one");
    } else if (old.is_string()) {
      old = value.is_string() ? value : json(text);  // e.g. dataset.path=123 stays a path
    } else if (old.is_boolean()) {
      UVIT_CHECK(value.is_boolean(), where, ": ", key, " expects true or false, got ", show(value));
      old = value;
    } else if (old.is_number_integer()) {
      UVIT_CHECK(integral(value), where, ": ", key, " expects an integer, got ", show(value));
      old = as_int64(value);
    } else if (old.is_number_float()) {
      UVIT_CHECK(value.is_number(), where, ": ", key, " expects a number, got ", show(value));
      old = value.get<double>();
    } else if (old.is_array()) {
      UVIT_CHECK(value.is_array(), where, ": ", key, " expects an array, got ", show(value));
      old = value;
    } else {
      old = value;  // null: anything goes
    }
  }
  // z_shape is the network input; keep it in step so nnet.img_size=64 works on its own.
  if (in_nnet && doc.contains("z_shape") &&
      doc["z_shape"] == json{c.spec.in_chans, c.spec.img_size, c.spec.width()}) {
    try {
      json probe = doc;
      probe.erase("z_shape");
      const std::string name = probe["nnet"].value("name", std::string("uvit"));
      NetSpec n = network_family(name).spec(probe);
      doc["z_shape"] = json{n.in_chans, n.img_size, n.width()};
    } catch (const Error&) {
      // finish() reports the bad network value below
    }
  }
  Config next{c.config_name, std::move(doc), {}, {}};
  finish(next, cat(" (after ", where, ")"));
  c = std::move(next);
}

}  // namespace uvit
