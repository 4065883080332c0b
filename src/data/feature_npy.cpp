// A restricted unpickler for numpy object arrays saved with np.save(..., allow_pickle=True):
// protocol 2-4 opcodes, an allow-list of numpy globals, bounds-checked everywhere.
#include "data/feature_npy.hpp"

#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "io/npy.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit::data {
namespace {

struct PV;
using PVP = std::shared_ptr<PV>;

// A pickle value: only the kinds numpy's object-array pickles produce.
struct PV {
  enum Kind {
    None,
    Bool,
    Int,
    Float,
    Bytes,
    Str,
    Tuple,
    List,
    Global,
    NDArray,
    DType,
    Scalar,
    Mark
  };
  Kind k = None;
  int64_t i = 0;
  double f = 0;
  std::string s;           // bytes, str, global "module name", dtype descr (e.g. "f4")
  char byteorder = '=';    // dtype
  std::vector<PVP> items;  // tuple, list, object-array elements
  std::vector<int64_t> shape;
  PVP dtype;  // ndarray, scalar
  bool fortran = false;
  std::vector<uint8_t> data;  // ndarray raw data, scalar bytes
};

PVP mk(PV::Kind k) {
  auto v = std::make_shared<PV>();
  v->k = k;
  return v;
}

class Unpickler {
 public:
  Unpickler(const uint8_t* p, size_t n, const std::string& path) : p_(p), n_(n), path_(path) {}

  PVP run() {
    while (true) {
      uint8_t op = u8();
      switch (op) {
        case 0x80:
          u8();
          break;  // PROTO
        case 0x95:
          take(8);
          break;     // FRAME
        case 'c': {  // GLOBAL
          std::string mod = line(), name = line();
          push_global(mod, name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PVP name = pop(), mod = pop();
          UVIT_CHECK(name->k == PV::Str && mod->k == PV::Str, path_, ": bad STACK_GLOBAL operands");
          push_global(mod->s, name->s);
          break;
        }
        case 'q':
          memo_[u8()] = top();
          break;
        case 'r':
          memo_[u32()] = top();
          break;
        case 0x94:
          memo_[memo_.size()] = top();
          break;  // MEMOIZE
        case 'h':
          push(get_memo(u8()));
          break;
        case 'j':
          push(get_memo(u32()));
          break;
        case 'K':
          push_int(u8());
          break;
        case 'M':
          push_int(u8() | (uint32_t(u8()) << 8));
          break;
        case 'J':
          push_int(int32_t(u32()));
          break;
        case 0x8a: {  // LONG1
          size_t m = u8();
          UVIT_CHECK(m <= 8, path_, ": pickle integer too large");
          const uint8_t* b = take(m);
          uint64_t v = 0;
          for (size_t j = 0; j < m; ++j) v |= uint64_t(b[j]) << (8 * j);
          if (m && m < 8 && (b[m - 1] & 0x80)) v |= ~uint64_t(0) << (8 * m);
          push_int(int64_t(v));
          break;
        }
        case 'G': {  // BINFLOAT, big endian
          const uint8_t* b = take(8);
          uint64_t v = 0;
          for (int j = 0; j < 8; ++j) v = v << 8 | b[j];
          auto x = mk(PV::Float);
          std::memcpy(&x->f, &v, 8);
          push(x);
          break;
        }
        case 'N':
          push(mk(PV::None));
          break;
        case 0x88:
        case 0x89: {
          auto x = mk(PV::Bool);
          x->i = op == 0x88;
          push(x);
          break;
        }
        case ')':
          push(mk(PV::Tuple));
          break;
        case ']':
          push(mk(PV::List));
          break;
        case '(':
          push(mk(PV::Mark));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          auto t = mk(PV::Tuple);
          t->items.resize(op - 0x84);
          for (size_t j = t->items.size(); j-- > 0;) t->items[j] = pop();
          push(t);
          break;
        }
        case 't':
        case 'l': {
          auto t = mk(op == 't' ? PV::Tuple : PV::List);
          t->items = pop_to_mark();
          push(t);
          break;
        }
        case 'a': {
          PVP v = pop();
          list_top()->items.push_back(v);
          break;
        }
        case 'e': {
          auto vs = pop_to_mark();
          PVP l = list_top();
          l->items.insert(l->items.end(), vs.begin(), vs.end());
          break;
        }
        case 'C':
          push_bytes(PV::Bytes, u8());
          break;
        case 'B':
          push_bytes(PV::Bytes, u32());
          break;
        case 0x8e:
          push_bytes(PV::Bytes, u64());
          break;
        case 'X':
          push_bytes(PV::Str, u32());
          break;
        case 0x8c:
          push_bytes(PV::Str, u8());
          break;
        case 'U':
          push_bytes(PV::Str, u8());
          break;  // SHORT_BINSTRING (protocol 2 str)
        case 'R': {
          PVP args = pop(), fn = pop();
          push(reduce(fn, args));
          break;
        }
        case 'b': {
          PVP state = pop();
          build(top(), state);
          break;
        }
        case '.': {
          UVIT_CHECK(stack_.size() == 1, path_, ": malformed pickle (stack has ", stack_.size(),
                     " items at STOP)");
          return stack_.back();
        }
        default:
          fail(path_, ": unsupported pickle opcode 0x", std::hex, int(op), " at byte ", std::dec,
               pos_ - 1);
      }
    }
  }

 private:
  const uint8_t* take(uint64_t m) {
    UVIT_CHECK(m <= n_ - pos_, path_, ": truncated pickle (needs ", m, " bytes at ", pos_, ")");
    const uint8_t* r = p_ + pos_;
    pos_ += m;
    return r;
  }
  uint8_t u8() { return *take(1); }
  uint32_t u32() {
    const uint8_t* b = take(4);
    return uint32_t(b[0]) | uint32_t(b[1]) << 8 | uint32_t(b[2]) << 16 | uint32_t(b[3]) << 24;
  }
  uint64_t u64() {
    uint64_t lo = u32();
    return lo | uint64_t(u32()) << 32;
  }
  std::string line() {
    const uint8_t* b = p_ + pos_;
    const void* nl = std::memchr(b, '\n', n_ - pos_);
    UVIT_CHECK(nl, path_, ": truncated pickle (GLOBAL without newline)");
    size_t m = static_cast<const uint8_t*>(nl) - b;
    take(m + 1);
    return std::string(reinterpret_cast<const char*>(b), m);
  }
  void push(PVP v) {
    UVIT_CHECK(stack_.size() < 100000, path_, ": pickle stack too deep");
    stack_.push_back(std::move(v));
  }
  PVP pop() {
    UVIT_CHECK(!stack_.empty() && stack_.back()->k != PV::Mark, path_,
               ": malformed pickle (stack underflow)");
    PVP v = stack_.back();
    stack_.pop_back();
    return v;
  }
  PVP top() {
    UVIT_CHECK(!stack_.empty(), path_, ": malformed pickle (empty stack)");
    return stack_.back();
  }
  PVP list_top() {
    PVP l = top();
    UVIT_CHECK(l->k == PV::List, path_, ": malformed pickle (append to a non-list)");
    return l;
  }
  std::vector<PVP> pop_to_mark() {
    size_t m = stack_.size();
    while (m > 0 && stack_[m - 1]->k != PV::Mark) --m;
    UVIT_CHECK(m > 0, path_, ": malformed pickle (no MARK)");
    std::vector<PVP> r(stack_.begin() + m, stack_.end());
    stack_.resize(m - 1);
    return r;
  }
  PVP get_memo(uint64_t k) {
    auto it = memo_.find(k);
    UVIT_CHECK(it != memo_.end(), path_, ": malformed pickle (memo ", k, " unset)");
    return it->second;
  }
  void push_int(int64_t v) {
    auto x = mk(PV::Int);
    x->i = v;
    push(x);
  }
  void push_bytes(PV::Kind k, uint64_t m) {
    auto x = mk(k);
    const uint8_t* b = take(m);
    x->s.assign(reinterpret_cast<const char*>(b), m);
    push(x);
  }
  void push_global(const std::string& mod, const std::string& name) {
    bool ok = ((mod == "numpy.core.multiarray" || mod == "numpy._core.multiarray") &&
               (name == "_reconstruct" || name == "scalar")) ||
              (mod == "numpy" && (name == "ndarray" || name == "dtype"));
    UVIT_CHECK(ok, path_, ": pickle refers to ", mod, ".", name,
               ", which a feature file never needs (refused)");
    auto g = mk(PV::Global);
    g->s = name;
    push(g);
  }
  PVP reduce(const PVP& fn, const PVP& args) {
    UVIT_CHECK(fn->k == PV::Global && args->k == PV::Tuple, path_, ": malformed pickle REDUCE");
    const auto& a = args->items;
    if (fn->s == "_reconstruct" || fn->s == "ndarray") return mk(PV::NDArray);  // filled by BUILD
    if (fn->s == "dtype") {
      UVIT_CHECK(!a.empty() && a[0]->k == PV::Str, path_, ": malformed numpy dtype in pickle");
      auto d = mk(PV::DType);
      d->s = a[0]->s;
      return d;
    }
    // scalar(dtype, bytes)
    UVIT_CHECK(a.size() == 2 && a[0]->k == PV::DType && a[1]->k == PV::Bytes, path_,
               ": malformed numpy scalar in pickle");
    auto s = mk(PV::Scalar);
    s->dtype = a[0];
    s->data.assign(a[1]->s.begin(), a[1]->s.end());
    return s;
  }
  void build(const PVP& obj, const PVP& st) {
    if (obj->k == PV::DType) {  // (version, byteorder, ...)
      UVIT_CHECK(st->k == PV::Tuple && st->items.size() >= 2 && st->items[1]->k == PV::Str &&
                     st->items[1]->s.size() == 1,
                 path_, ": malformed numpy dtype state in pickle");
      obj->byteorder = st->items[1]->s[0];
      return;
    }
    UVIT_CHECK(obj->k == PV::NDArray, path_, ": pickle BUILD on an unsupported object");
    // (version, shape, dtype, is_fortran, data)
    const auto& s = st->items;
    UVIT_CHECK(st->k == PV::Tuple && s.size() == 5 && s[1]->k == PV::Tuple &&
                   s[2]->k == PV::DType && s[3]->k == PV::Bool,
               path_, ": malformed numpy array state in pickle");
    for (const PVP& d : s[1]->items) {
      UVIT_CHECK(d->k == PV::Int && d->i >= 0, path_, ": bad array dimension in pickle");
      obj->shape.push_back(d->i);
    }
    obj->dtype = s[2];
    obj->fortran = s[3]->i != 0;
    if (s[4]->k == PV::List)
      obj->items = s[4]->items;  // object array
    else if (s[4]->k == PV::Bytes)
      obj->data.assign(s[4]->s.begin(), s[4]->s.end());
    else
      fail(path_, ": unsupported numpy array payload in pickle");
  }

  const uint8_t* p_;
  size_t n_, pos_ = 0;
  const std::string& path_;
  std::vector<PVP> stack_;
  std::unordered_map<uint64_t, PVP> memo_;
};

DType dtype_of(const PV& d, const std::string& path) {
  UVIT_CHECK(d.byteorder != '>', path, ": big-endian arrays are not supported");
  const std::string& s = d.s;
  if (s == "f4") return DType::F32;
  if (s == "f2") return DType::F16;
  if (s == "f8") return DType::F64;
  if (s == "i8") return DType::I64;
  if (s == "i4") return DType::I32;
  if (s == "i2") return DType::I16;
  if (s == "i1") return DType::I8;
  if (s == "u1") return DType::U8;
  fail(path, ": unsupported numpy dtype '", s, "' in pickle");
}

Array to_array(const PV& a, const std::string& path) {
  UVIT_CHECK(a.k == PV::NDArray && a.dtype, path, ": expected a numpy array");
  UVIT_CHECK(!a.fortran, path, ": Fortran-ordered arrays are not supported");
  Array out(dtype_of(*a.dtype, path), a.shape);
  UVIT_CHECK(out.nbytes() == a.data.size(), path, ": array ", shape_str(a.shape), " needs ",
             out.nbytes(), " bytes, pickle holds ", a.data.size());
  std::memcpy(out.data.data(), a.data.data(), a.data.size());
  return out;
}

int64_t to_int(const PV& v, const std::string& path) {
  if (v.k == PV::Int) return v.i;
  if (v.k == PV::Scalar) {
    Array a = to_array(
        [&] {
          PV t;
          t.k = PV::NDArray;
          t.dtype = v.dtype;
          t.data = v.data;
          return t;
        }(),
        path);
    auto i = a.to_i64();
    UVIT_CHECK(i.size() == 1, path, ": bad label scalar");
    return i[0];
  }
  if (v.k == PV::NDArray && v.shape.empty()) return to_array(v, path).to_i64().at(0);
  fail(path, ": the label is not an integer");
}

}  // namespace

FeatureRecord parse_feature_record(const uint8_t* p, size_t n, const std::string& path) {
  const NpyHeader h = peek_npy_header(p, n, path);
  UVIT_CHECK(h.descr == "|O", path,
             ": expected a pickled object array (moments, label), got dtype '", h.descr, "' shape ",
             shape_str(h.shape));
  Unpickler up(p + h.data_offset, n - h.data_offset, path);
  PVP root = up.run();
  UVIT_CHECK(root->k == PV::NDArray && root->items.size() == 2, path,
             ": expected a 2-element object array (moments, label)");
  FeatureRecord r;
  r.moments = to_array(*root->items[0], path);
  r.label = to_int(*root->items[1], path);
  return r;
}

FeatureRecord load_feature_record(const std::string& path) {
  std::vector<uint8_t> f = read_file(path);
  return parse_feature_record(f.data(), f.size(), path);
}

}  // namespace uvit::data
