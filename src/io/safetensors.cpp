// safetensors: u64 little-endian header length, JSON header, then one contiguous data buffer that
// the tensors' data_offsets cover exactly (no holes, no overlaps).
#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "io/file.hpp"
#include "io/loaded_weights.hpp"
#include "io/readers.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/json_parse.hpp"

namespace uvit {

namespace {

using ojson = nlohmann::ordered_json;

// safetensors' reference implementation refuses headers above 100 MB; so do we.
constexpr uint64_t kMaxHeader = 100u << 20;

bool parse_dtype(const std::string& s, DType* t) {
  static const std::pair<const char*, DType> kNames[] = {
      {"F32", DType::F32}, {"F16", DType::F16},  {"BF16", DType::BF16}, {"F64", DType::F64},
      {"I64", DType::I64}, {"I32", DType::I32},  {"I16", DType::I16},   {"I8", DType::I8},
      {"U8", DType::U8},   {"BOOL", DType::Bool}};
  for (auto& [n, d] : kNames)
    if (s == n) {
      *t = d;
      return true;
    }
  return false;
}

struct Spec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// What a file that is not safetensors holds, from its first bytes, for the refusal ("" when
// nothing is recognised): the usual wrong downloads and renamed checkpoints (a zip, torch.save's
// format, is told apart before: open_weights).
std::string what_it_is(const io::InFile& f) {
  char b[32] = {};
  const size_t n = size_t(std::min<uint64_t>(f.size(), sizeof b));
  f.read(0, b, n, "start");
  const std::string s(b, n);
  if (s.rfind("version https://git-lfs", 0) == 0)
    return "; it is a Git LFS pointer, not the file: fetch the file itself (git lfs pull)";
  const size_t k = s.find_first_not_of(" \t\r\n");
  if (k + 1 < n && s[k] == '<' && (s[k + 1] == '!' || s[k + 1] == '?' || std::isalpha(s[k + 1])))
    return "; it is an HTML or XML page (a download that saved a web page?)";
  if (n > 1 && uint8_t(s[0]) == 0x80 && s[1] >= 2 && s[1] <= 5)  // PROTO 2..5
    return "; it is a pickle (torch.save before torch 1.6): load and save it again with torch >= "
           "1.6 as .pth";
  return "";
}

// Reads and validates the JSON header; *hlen_out receives its length in bytes.
ojson read_header(io::InFile& f, const std::string& path, uint64_t* hlen_out) {
  if (f.size() < 8) fail(path, ": not a safetensors file (", f.size(), " bytes)");
  uint8_t lenb[8];
  f.read(0, lenb, 8, "header length");
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | lenb[i];
  if (hlen > kMaxHeader || hlen < 2 || hlen > f.size() - 8) {
    // A length no header has, or one past the end: another kind of file, or a cut one.
    const std::string other = what_it_is(f);
    if (hlen > kMaxHeader || hlen < 2 || !other.empty())
      fail(path, ": not a safetensors file (its first 8 bytes, the header length, read ", hlen,
           hlen > kMaxHeader ? "; a header has at most 100 MiB)" : ")", other);
    fail(path, ": truncated: header says ", hlen, " bytes of JSON, file has ", f.size() - 8);
  }
  std::string text(hlen, '\0');
  f.read(8, text.data(), hlen, "header");
  if (text[0] != '{') fail(path, ": not a safetensors file (its header is not a JSON object)");
  ojson h;
  try {
    h = parse_json<ojson>(text, path);
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": bad safetensors JSON header: ", e.what());
  }
  if (!h.is_object()) fail(path, ": safetensors header is not a JSON object");
  *hlen_out = hlen;
  return h;
}

void read_metadata(const ojson& v, const std::string& path,
                   std::map<std::string, std::string>* metadata) {
  if (!v.is_object()) fail(path, ": __metadata__ is not an object");
  for (auto m = v.begin(); m != v.end(); ++m) {
    if (!m.value().is_string()) fail(path, ": __metadata__[\"", m.key(), "\"] is not a string");
    if (metadata) (*metadata)[m.key()] = m.value().get<std::string>();
  }
}

}  // namespace

std::map<std::string, std::string> read_safetensors_metadata(const std::string& path) {
  io::InFile f(path);
  uint64_t hlen = 0;
  ojson h = read_header(f, path, &hlen);
  std::map<std::string, std::string> m;
  if (h.contains("__metadata__")) read_metadata(h["__metadata__"], path, &m);
  return m;
}

namespace {

// The header's tensors, validated (dtype, shape, offsets covering the buffer exactly), in offset
// order; the data buffer starts at *data_at.
std::vector<Spec> read_specs(io::InFile& f, const std::string& path,
                             std::map<std::string, std::string>* metadata, uint64_t* data_at) {
  uint64_t hlen = 0;
  ojson h = read_header(f, path, &hlen);
  const uint64_t data_size = f.size() - 8 - hlen;
  *data_at = 8 + hlen;

  std::vector<Spec> specs;
  uint64_t cut_end = 0;  // the furthest end of a tensor past the data (a truncated file)
  std::string cut_name;
  for (auto it = h.begin(); it != h.end(); ++it) {
    const std::string& name = it.key();
    const ojson& v = it.value();
    if (name == "__metadata__") {
      read_metadata(v, path, metadata);
      continue;
    }
    Spec s;
    s.name = name;
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") ||
        !v.contains("data_offsets"))
      fail(path, ": tensor '", name, "' needs dtype, shape and data_offsets");
    const ojson &dt = v["dtype"], &sh = v["shape"], &off = v["data_offsets"];
    if (!dt.is_string() || !parse_dtype(dt.get<std::string>(), &s.dtype))
      fail(path, ": tensor '", name, "' has unsupported dtype ", dt.dump());
    if (!sh.is_array()) fail(path, ": tensor '", name, "' shape is not a list");
    uint64_t numel = 1;
    for (const ojson& d : sh) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > uint64_t(INT64_MAX))
        fail(path, ": tensor '", name, "' has a bad shape ", sh.dump());
      uint64_t dv = d.get<uint64_t>();
      if (__builtin_mul_overflow(numel, dv, &numel))
        fail(path, ": tensor '", name, "' shape ", sh.dump(), " overflows");
      s.shape.push_back(int64_t(dv));
    }
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned())
      fail(path, ": tensor '", name, "' has bad data_offsets ", off.dump());
    s.begin = off[0].get<uint64_t>();
    s.end = off[1].get<uint64_t>();
    uint64_t nbytes;
    if (__builtin_mul_overflow(numel, uint64_t(dtype_size(s.dtype)), &nbytes))
      fail(path, ": tensor '", name, "' is too large");
    // A tensor of the right size past the end of the data: the file's copy stopped early (said
    // once every tensor is read, naming the one that ends last: how much is missing).
    if (s.begin <= s.end && s.end - s.begin == nbytes && s.end > data_size) {
      if (s.end > cut_end) cut_end = s.end, cut_name = name;
      continue;
    }
    if (s.begin > s.end || s.end > data_size)
      fail(path, ": tensor '", name, "' data_offsets [", s.begin, ", ", s.end,
           "] outside the data buffer of ", data_size, " bytes");
    if (s.end - s.begin != nbytes)
      fail(path, ": tensor '", name, "' has ", s.end - s.begin, " bytes, shape ",
           shape_str(s.shape), " ", dtype_name(s.dtype), " needs ", nbytes);
    specs.push_back(std::move(s));
  }
  if (cut_end > 0)
    fail(path, ": truncated: tensor '", cut_name, "' ends at byte ", cut_end,
         " of the data, the file holds ", data_size, " (", cut_end - data_size, " bytes missing)");
  // The buffer must be covered exactly, in offset order.
  std::stable_sort(specs.begin(), specs.end(),
                   [](const Spec& a, const Spec& b) { return a.begin < b.begin; });
  uint64_t at = 0;
  for (const Spec& s : specs) {
    if (s.begin != at)
      fail(path, ": tensor '", s.name, "' starts at ", s.begin, ", expected ", at,
           s.begin < at ? " (overlap)" : " (hole)");
    at = s.end;
  }
  if (at != data_size)
    fail(path, ": data buffer has ", data_size, " bytes but the tensors cover ", at);
  return specs;
}

// Positional reads of one tensor at a time: the bytes go straight from the file to the caller.
class SafetensorsReader : public TensorReader {
 public:
  explicit SafetensorsReader(const std::string& path) : f_(path) {
    path_ = path;
    specs_ = read_specs(f_, path, &metadata_, &data_at_);
    for (const Spec& s : specs_) tensors_.push_back({s.name, s.dtype, s.shape});
    io::note_loaded(path, f_.id());
  }
  void read(size_t i, void* dst) override {
    const Spec& s = specs_.at(i);
    f_.read(data_at_ + s.begin, dst, s.end - s.begin, s.name.c_str());
  }
  void read_part(size_t i, uint64_t offset, size_t n, void* dst) override {
    const Spec& s = specs_.at(i);
    UVIT_CHECK(offset <= s.end - s.begin && n <= s.end - s.begin - offset, path_, ": bytes [",
               offset, ", ", offset + n, ") lie outside tensor '", s.name, "' (", s.end - s.begin,
               " bytes)");
    f_.read(data_at_ + s.begin + offset, dst, n, s.name.c_str());
  }

 private:
  io::InFile f_;
  std::vector<Spec> specs_;
  uint64_t data_at_ = 0;
};

}  // namespace

std::unique_ptr<TensorReader> open_safetensors_reader(const std::string& path) {
  return std::make_unique<SafetensorsReader>(path);
}

NamedArrays load_safetensors(const std::string& path,
                             std::map<std::string, std::string>* metadata) {
  SafetensorsReader r(path);
  if (metadata) *metadata = r.metadata();
  return read_all(r);
}

void save_safetensors(const std::string& path, const std::vector<TensorInfo>& tensors,
                      const std::function<void(size_t i, const ByteSink& sink)>& write,
                      const std::map<std::string, std::string>& metadata) {
  ojson h = ojson::object();
  if (!metadata.empty()) {
    ojson m = ojson::object();
    for (auto& [k, v] : metadata) m[k] = v;
    h["__metadata__"] = std::move(m);
  }
  uint64_t at = 0;
  std::unordered_set<std::string> names;
  for (const TensorInfo& t : tensors) {
    UVIT_CHECK(t.name != "__metadata__", path, ": a tensor cannot be named __metadata__");
    UVIT_CHECK(names.insert(t.name).second, path, ": duplicate tensor name '", t.name, "'");
    h[t.name] = {{"dtype", dtype_name(t.dtype)},
                 {"shape", t.shape},
                 {"data_offsets", {at, at + t.nbytes()}}};
    at += t.nbytes();
  }
  std::string text;
  try {
    text = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": cannot encode safetensors header: ", e.what());
  }
  // Pad with spaces so the data buffer starts 8-byte aligned.
  text.append((8 - text.size() % 8) % 8, ' ');
  uint8_t lenb[8];
  for (int i = 0; i < 8; ++i) lenb[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  io::AtomicWriter w(path, io::AtomicWriter::Cache::kDirect);  // a checkpoint is written once
  w.write(lenb, 8);
  w.write(text.data(), text.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t start = w.written();
    write(i, [&](const void* data, size_t n) { w.write(data, n); });
    UVIT_CHECK(w.written() - start == tensors[i].nbytes(), path, ": tensor '", tensors[i].name,
               "' wrote ", w.written() - start, " bytes, shape ", shape_str(tensors[i].shape),
               " needs ", tensors[i].nbytes());
  }
  w.commit();
}

void save_safetensors(const std::string& path, const NamedArrays& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<TensorInfo> infos;
  infos.reserve(tensors.size());
  for (auto& [name, a] : tensors) {
    UVIT_CHECK(uint64_t(a.numel()) * dtype_size(a.dtype) == a.data.size(), path, ": tensor '", name,
               "' holds ", a.data.size(), " bytes, shape ", shape_str(a.shape), " needs ",
               uint64_t(a.numel()) * dtype_size(a.dtype));
    infos.push_back({name, a.dtype, a.shape});
  }
  save_safetensors(
      path, infos,
      [&](size_t i, const ByteSink& sink) {
        sink(tensors[i].second.data.data(), tensors[i].second.data.size());
      },
      metadata);
}

}  // namespace uvit
