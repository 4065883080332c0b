// .npy (format versions 1.0, 2.0, 3.0) and .npz (a zip of .npy members).
// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
#include "io/npy.hpp"

#include <algorithm>
#include <unordered_set>

#include "io/file.hpp"
#include "io/zip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

namespace {

const char kMagic[] = "\x93NUMPY";

struct Descr {
  const char* name;
  DType dtype;
};
// Little-endian (or byte-order-free) descriptors only.
constexpr Descr kDescrs[] = {{"<f4", DType::F32}, {"<f8", DType::F64}, {"<f2", DType::F16},
                             {"<i8", DType::I64}, {"<i4", DType::I32}, {"<i2", DType::I16},
                             {"|i1", DType::I8},  {"|u1", DType::U8},  {"|b1", DType::Bool}};

// A just-enough parser for the header dict (strings, True/False, tuples of integers).
class HeaderParser {
 public:
  HeaderParser(const std::string& s, const std::string& what) : s_(s), what_(what) {}

  void parse(std::string* descr, bool* fortran, std::vector<int64_t>* shape) {
    bool have_d = false, have_f = false, have_s = false;
    expect('{');
    while (true) {
      ws();
      if (peek() == '}') break;
      std::string key = str();
      expect(':');
      if (key == "descr") {
        ws();
        if (peek() != '\'' && peek() != '"')
          fail(what_, ": unsupported npy dtype descriptor (structured or non-string descr)");
        *descr = str();
        have_d = true;
      } else if (key == "fortran_order") {
        *fortran = boolean();
        have_f = true;
      } else if (key == "shape") {
        *shape = tuple();
        have_s = true;
      } else {
        fail(what_, ": npy header has unexpected key '", key, "'");
      }
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') bad("expected ',' or '}'");
    }
    ++i_;
    ws();
    if (i_ != s_.size()) bad("trailing characters after the dict");
    if (!have_d || !have_f || !have_s)
      fail(what_, ": npy header lacks one of 'descr', 'fortran_order', 'shape'");
  }

 private:
  [[noreturn]] void bad(const char* why) {
    fail(what_, ": bad npy header (", why, " at column ", i_, ")");
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_;
  }
  void expect(char c) {
    ws();
    if (peek() != c) bad((std::string("expected '") + c + "'").c_str());
    ++i_;
  }
  std::string str() {
    ws();
    char q = peek();
    if (q != '\'' && q != '"') bad("expected a string");
    size_t end = s_.find(q, ++i_);
    if (end == std::string::npos) bad("unterminated string");
    std::string r = s_.substr(i_, end - i_);
    i_ = end + 1;
    return r;
  }
  bool boolean() {
    ws();
    if (s_.compare(i_, 4, "True") == 0) {
      i_ += 4;
      return true;
    }
    if (s_.compare(i_, 5, "False") == 0) {
      i_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::vector<int64_t> tuple() {
    std::vector<int64_t> r;
    expect('(');
    while (true) {
      ws();
      if (peek() == ')') break;
      if (peek() < '0' || peek() > '9') bad("expected a non-negative integer");
      int64_t v = 0;
      while (peek() >= '0' && peek() <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, peek() - '0', &v))
          bad("dimension overflows");
        ++i_;
      }
      if (peek() == 'L') ++i_;  // Python 2 long suffix
      r.push_back(v);
      ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != ')') bad("expected ',' or ')'");
    }
    ++i_;
    return r;
  }

  const std::string& s_;
  const std::string& what_;
  size_t i_ = 0;
};

// The header at p as written (n bytes of it available; the whole file is `total` bytes): magic,
// version, length and dict; the dtype and sizes are not checked.
NpyHeader parse_header_dict(const uint8_t* p, size_t n, uint64_t total, const std::string& what) {
  if (n < 10 || std::memcmp(p, kMagic, 6) != 0) fail(what, ": not an .npy file (bad magic)");
  const unsigned major = p[6], minor = p[7];
  if (minor != 0 || major < 1 || major > 3)
    fail(what, ": unsupported .npy format version ", major, ".", minor);
  size_t pre = major == 1 ? 10 : 12;
  if (n < pre) fail(what, ": truncated .npy header");
  uint64_t hlen = major == 1 ? uint64_t(p[8] | (p[9] << 8))
                             : uint64_t(p[8]) | uint64_t(p[9]) << 8 | uint64_t(p[10]) << 16 |
                                   uint64_t(p[11]) << 24;
  if (hlen > total - pre)
    fail(what, ": truncated: header says ", hlen, " bytes of header, file has ", total - pre);
  if (hlen > n - pre) fail(what, ": truncated .npy header");  // (read_npy_header reads it all)
  std::string header(reinterpret_cast<const char*>(p + pre), hlen);
  NpyHeader h;
  HeaderParser(header, what).parse(&h.descr, &h.fortran_order, &h.shape);
  h.data_offset = pre + hlen;
  h.file_bytes = total;
  return h;
}

// A header as load_npy reads it: C order, a supported dtype, the data exactly the file's rest.
NpyInfo checked_npy_header(NpyHeader h, const std::string& what) {
  if (h.fortran_order)
    fail(what, ": fortran_order=True .npy files are not supported (save a C-contiguous array)");
  const Descr* d = nullptr;
  for (const Descr& c : kDescrs)
    if (h.descr == c.name) d = &c;
  // numpy also writes a '=' or no prefix for byte-order-free types.
  if (!d && h.descr.size() == 2)
    for (const Descr& c : kDescrs)
      if (c.name[0] == '|' && h.descr == c.name + 1) d = &c;
  if (!d) {
    if (!h.descr.empty() && h.descr[0] == '>')
      fail(what, ": big-endian .npy data ('", h.descr, "') is not supported");
    fail(what, ": unsupported .npy dtype '", h.descr, "'");
  }
  uint64_t numel = 1;
  for (int64_t s : h.shape)
    if (__builtin_mul_overflow(numel, uint64_t(s), &numel))
      fail(what, ": shape ", shape_str(h.shape), " overflows");
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(d->dtype)), &nbytes))
    fail(what, ": shape ", shape_str(h.shape), " overflows");
  const uint64_t have = h.file_bytes - h.data_offset;
  if (have < nbytes)
    fail(what, ": truncated: header says ", nbytes, " bytes of data, file has ", have);
  if (have > nbytes) fail(what, ": ", have - nbytes, " unexpected bytes after the array data");
  return {d->dtype, std::move(h.shape), h.data_offset};
}

NpyInfo parse_npy_header(const uint8_t* p, size_t n, uint64_t total, const std::string& what) {
  return checked_npy_header(parse_header_dict(p, n, total, what), what);
}

Array parse_npy(const uint8_t* p, size_t n, const std::string& what) {
  const NpyInfo h = parse_npy_header(p, n, n, what);
  Array a(h.dtype, h.shape);
  if (!a.data.empty()) std::memcpy(a.data.data(), p + h.data_offset, a.data.size());
  return a;
}

// Magic, version and header padded so the data starts 64-byte aligned (numpy's convention).
std::string npy_header(const Array& a, const std::string& what) {
  const char* descr = nullptr;
  for (const Descr& c : kDescrs)
    if (c.dtype == a.dtype) descr = c.name;
  if (!descr)
    fail(what, ": ", dtype_name(a.dtype), " has no .npy dtype (convert the array to F32 first)");
  UVIT_CHECK(uint64_t(a.numel()) * dtype_size(a.dtype) == a.data.size(), what, ": array holds ",
             a.data.size(), " bytes, shape ", shape_str(a.shape), " needs ",
             uint64_t(a.numel()) * dtype_size(a.dtype));
  std::string dict = cat("{'descr': '", descr, "', 'fortran_order': False, 'shape': (");
  for (size_t i = 0; i < a.shape.size(); ++i) dict += cat(i ? ", " : "", a.shape[i]);
  dict += a.shape.size() == 1 ? ",), }" : "), }";
  // Version 1.0 holds a 16-bit header length; longer headers (huge ranks) need 2.0.
  bool v2 = dict.size() + 11 + 64 > 0xFFFF;
  size_t pre = v2 ? 12 : 10;
  size_t total = (pre + dict.size() + 1 + 63) / 64 * 64;
  dict.append(total - pre - dict.size() - 1, ' ');
  dict += '\n';
  std::string h(kMagic, 6);
  h += char(v2 ? 2 : 1);
  h += char(0);
  uint32_t len = uint32_t(dict.size());
  h += char(len & 0xFF);
  h += char((len >> 8) & 0xFF);
  if (v2) {
    h += char((len >> 16) & 0xFF);
    h += char((len >> 24) & 0xFF);
  }
  return h + dict;
}

}  // namespace

Array load_npy(const std::string& path) {
  std::vector<uint8_t> bytes = read_file(path);
  return parse_npy(bytes.data(), bytes.size(), path);
}

NpyHeader peek_npy_header(const std::string& path) {
  io::InFile f(path);
  // One read covers numpy's usual header (padded to 64 or 128 bytes); a longer one is read whole.
  std::vector<uint8_t> head(size_t(std::min<uint64_t>(f.size(), 256)));
  f.read(0, head.data(), head.size(), "npy header");
  if (head.size() >= 12 && std::memcmp(head.data(), kMagic, 6) == 0 && head[7] == 0 &&
      head[6] >= 1 && head[6] <= 3) {
    const size_t pre = head[6] == 1 ? 10 : 12;
    uint64_t hlen = 0;
    for (size_t i = 8; i < pre; ++i) hlen |= uint64_t(head[i]) << (8 * (i - 8));
    if (pre + hlen > head.size() && hlen <= f.size() - pre) {
      const size_t have = head.size();
      head.resize(pre + size_t(hlen));
      f.read(have, head.data() + have, head.size() - have, "npy header");
    }
  }
  return parse_header_dict(head.data(), head.size(), f.size(), path);
}

NpyHeader peek_npy_header(const uint8_t* p, size_t n, const std::string& what) {
  return parse_header_dict(p, n, n, what);
}

NpyInfo read_npy_header(const std::string& path) {
  return checked_npy_header(peek_npy_header(path), path);
}

void save_npy(const std::string& path, const Array& a) {
  std::string h = npy_header(a, path);
  io::AtomicWriter w(path);
  w.write(h.data(), h.size());
  w.write(a.data.data(), a.data.size());
  w.commit();
}

namespace {
// Only .npy members are arrays; np.savez writes nothing else.
bool is_npy_member(const zip::Entry& e) {
  return e.name.size() >= 4 && e.name.compare(e.name.size() - 4, 4, ".npy") == 0;
}

NamedArrays read_npz(const std::string& path, const std::vector<std::string>* names) {
  zip::Reader z(path);
  NamedArrays out;
  for (const zip::Entry& e : z.entries()) {
    if (!is_npy_member(e)) continue;
    if (names && std::find(names->begin(), names->end(), e.name.substr(0, e.name.size() - 4)) ==
                     names->end())
      continue;
    std::vector<uint8_t> bytes = z.read(e);
    out.emplace_back(e.name.substr(0, e.name.size() - 4),
                     parse_npy(bytes.data(), bytes.size(), cat(path, ": ", e.name)));
  }
  return out;
}
}  // namespace

NamedArrays load_npz(const std::string& path) { return read_npz(path, nullptr); }

NamedArrays load_npz(const std::string& path, const std::vector<std::string>& names) {
  return read_npz(path, &names);
}

std::vector<std::string> npz_names(const std::string& path) {
  zip::Reader z(path);
  std::vector<std::string> out;
  for (const zip::Entry& e : z.entries())
    if (is_npy_member(e)) out.push_back(e.name.substr(0, e.name.size() - 4));
  return out;
}

void save_npz(const std::string& path, const NamedArrays& arrays) {
  std::unordered_set<std::string> names;
  std::vector<std::string> headers;
  for (auto& [name, a] : arrays) {
    UVIT_CHECK(names.insert(name).second, path, ": duplicate array name '", name, "'");
    headers.push_back(npy_header(a, cat(path, ": ", name)));
  }
  io::AtomicWriter w(path);
  zip::Writer z([&w](const void* p, size_t n) { w.write(p, n); });
  for (size_t i = 0; i < arrays.size(); ++i)
    z.add(arrays[i].first + ".npy", {{headers[i].data(), headers[i].size()},
                                     {arrays[i].second.data.data(), arrays[i].second.data.size()}});
  z.finish();
  w.commit();
}

}  // namespace uvit
