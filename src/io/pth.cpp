// PyTorch .pth (torch.save zip format, torch >= 1.6): "<prefix>/data.pkl" is a pickle whose tensors
// are persistent ids ('storage', torch.XStorage, key, location, numel) naming
// "<prefix>/data/<key>". The unpickler below is restricted: it builds plain values and knows a
// handful of globals; it never imports or calls anything else. Training checkpoints also pickle
// optimizer state (plain values) and argparse.Namespace objects: those are kept as inert
// placeholders, since only the tensors are read.
#include <algorithm>
#include <memory>
#include <unordered_map>

#include "io/file.hpp"
#include "io/loaded_weights.hpp"
#include "io/readers.hpp"
#include "io/torch_storages.hpp"
#include "io/zip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

namespace {

struct Obj {
  enum class K {
    None,
    Bool,
    Int,
    Float,
    Str,
    Bytes,
    Tuple,
    List,
    Dict,
    Global,
    Storage,
    Tensor,
    Object
  };
  K k = K::None;
  int64_t i = 0;  // Int, Bool; Storage: numel
  double f = 0;
  std::string s;            // Str, Bytes, Global and Object ("module.name"), Storage key
  std::vector<Obj*> items;  // Tuple, List
  std::vector<std::pair<Obj*, Obj*>> dict;     // Dict, in insertion order
  std::unordered_map<std::string, size_t> at;  // Dict: string key -> index in dict
  DType dtype = DType::F32;                    // Storage, Tensor
  Obj* storage = nullptr;                      // Tensor
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};

const char* kind_name(Obj::K k) {
  switch (k) {
    case Obj::K::None:
      return "None";
    case Obj::K::Bool:
      return "bool";
    case Obj::K::Int:
      return "int";
    case Obj::K::Float:
      return "float";
    case Obj::K::Str:
      return "str";
    case Obj::K::Bytes:
      return "bytes";
    case Obj::K::Tuple:
      return "tuple";
    case Obj::K::List:
      return "list";
    case Obj::K::Dict:
      return "dict";
    case Obj::K::Global:
      return "global";
    case Obj::K::Storage:
      return "storage";
    case Obj::K::Tensor:
      return "tensor";
    case Obj::K::Object:
      return "object";
  }
  return "?";
}

using torch_format::kStorages;

const char* const kFunctions[] = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2",
                                  "torch._utils._rebuild_parameter"};

// Classes whose instances are created empty (NEWOBJ) and given their attributes (BUILD) by the
// pickle; we keep an opaque placeholder and drop the attributes. argparse.Namespace is the "args"
// entry of DiT / Skip-DiT train.py checkpoints.
const char* const kInertClasses[] = {"argparse.Namespace"};

bool is_inert_class(const std::string& name) {
  for (const char* c : kInertClasses)
    if (name == c) return true;
  return false;
}

class Unpickler {
 public:
  // `start`: where the pickle begins in p; `whole_file`: p is the whole file (a legacy torch.save),
  // so a pickle that runs out of bytes is a truncated file.
  Unpickler(const std::vector<uint8_t>& p, const std::string& path, size_t start = 0,
            bool whole_file = false)
      : p_(p), path_(path), pos_(start), whole_file_(whole_file) {}

  size_t pos() const { return pos_; }
  // The storages the pickles named, by key.
  const std::unordered_map<std::string, Obj*>& storages() const { return storages_; }

  Obj* run() {
    memo_.clear();  // each pickle of a legacy file has its own memo
    while (true) {
      const size_t op_at = pos_;
      const uint8_t op = byte();
      switch (op) {
        case 0x80: {  // PROTO
          unsigned v = byte();
          if (v > 5) bad("unsupported pickle protocol ", v);
          break;
        }
        case 0x95:
          take(8);
          break;     // FRAME: framing is transparent once the data is in memory
        case '.': {  // STOP
          Obj* r = pop();
          return r;
        }
        case '(':
          marks_.push_back(stack_.size());
          break;  // MARK
        case '0':
          pop();
          break;  // POP
        case '1':
          pop_mark();
          break;  // POP_MARK
        case '2':
          push(top());
          break;  // DUP
        case 'N':
          push(make(Obj::K::None));
          break;
        case 0x88:
          push(make_int(Obj::K::Bool, 1));
          break;  // NEWTRUE
        case 0x89:
          push(make_int(Obj::K::Bool, 0));
          break;  // NEWFALSE
        case 'J':
          push(make_int(Obj::K::Int, int32_t(le(4))));
          break;  // BININT
        case 'K':
          push(make_int(Obj::K::Int, int64_t(le(1))));
          break;  // BININT1
        case 'M':
          push(make_int(Obj::K::Int, int64_t(le(2))));
          break;  // BININT2
        case 0x8a:
          push(make_int(Obj::K::Int, long_int(le(1))));
          break;  // LONG1
        case 0x8b:
          push(make_int(Obj::K::Int, long_int(le(4))));
          break;     // LONG4
        case 'G': {  // BINFLOAT: big-endian double
          const uint8_t* b = take(8);
          uint64_t u = 0;
          for (int j = 0; j < 8; ++j) u = (u << 8) | b[j];
          Obj* o = make(Obj::K::Float);
          std::memcpy(&o->f, &u, 8);
          push(o);
          break;
        }
        case 'X':
          push(make_str(Obj::K::Str, le(4)));
          break;  // BINUNICODE
        case 0x8c:
          push(make_str(Obj::K::Str, le(1)));
          break;  // SHORT_BINUNICODE
        case 0x8d:
          push(make_str(Obj::K::Str, le(8)));
          break;  // BINUNICODE8
        case 'T':
          push(make_str(Obj::K::Str, le(4)));
          break;  // BINSTRING (Python 2 str)
        case 'U':
          push(make_str(Obj::K::Str, le(1)));
          break;  // SHORT_BINSTRING
        case 'B':
          push(make_str(Obj::K::Bytes, le(4)));
          break;  // BINBYTES
        case 'C':
          push(make_str(Obj::K::Bytes, le(1)));
          break;  // SHORT_BINBYTES
        case 0x8e:
          push(make_str(Obj::K::Bytes, le(8)));
          break;  // BINBYTES8
        case 0x96:
          push(make_str(Obj::K::Bytes, le(8)));
          break;  // BYTEARRAY8
        case '}':
          push(make(Obj::K::Dict));
          break;  // EMPTY_DICT
        case ']':
          push(make(Obj::K::List));
          break;  // EMPTY_LIST
        case 0x8f:
          push(make(Obj::K::List));
          break;  // EMPTY_SET (kept as a list)
        case ')':
          push(make(Obj::K::Tuple));
          break;     // EMPTY_TUPLE
        case 'd': {  // DICT
          std::vector<Obj*> xs = pop_mark();
          if (xs.size() % 2) bad("DICT with an odd number of items");
          Obj* d = make(Obj::K::Dict);
          for (size_t j = 0; j < xs.size(); j += 2) set_item(d, xs[j], xs[j + 1]);
          push(d);
          break;
        }
        case 'l':     // LIST
        case 't':     // TUPLE
        case 0x91: {  // FROZENSET
          Obj* o = make(op == 't' ? Obj::K::Tuple : Obj::K::List);
          o->items = pop_mark();
          push(o);
          break;
        }
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          size_t n = op - 0x84u;
          if (stack_.size() - stack_floor() < n) bad("stack underflow");
          Obj* o = make(Obj::K::Tuple);
          o->items.assign(stack_.end() - long(n), stack_.end());
          stack_.resize(stack_.size() - n);
          push(o);
          break;
        }
        case 's': {  // SETITEM
          Obj* v = pop();
          Obj* k = pop();
          set_item(expect_kind(top(), Obj::K::Dict, "SETITEM"), k, v);
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<Obj*> xs = pop_mark();
          if (xs.size() % 2) bad("SETITEMS with an odd number of items");
          Obj* d = expect_kind(top(), Obj::K::Dict, "SETITEMS");
          for (size_t j = 0; j < xs.size(); j += 2) set_item(d, xs[j], xs[j + 1]);
          break;
        }
        case 'a': {  // APPEND
          Obj* v = pop();
          expect_kind(top(), Obj::K::List, "APPEND")->items.push_back(v);
          break;
        }
        case 'e':     // APPENDS
        case 0x90: {  // ADDITEMS
          std::vector<Obj*> xs = pop_mark();
          Obj* l = expect_kind(top(), Obj::K::List, "APPENDS");
          l->items.insert(l->items.end(), xs.begin(), xs.end());
          break;
        }
        case 'q':
          memo_[uint32_t(le(1))] = top();
          break;  // BINPUT
        case 'r':
          memo_[uint32_t(le(4))] = top();
          break;      // LONG_BINPUT
        case 0x94: {  // MEMOIZE
          uint32_t idx = uint32_t(memo_.size());
          memo_[idx] = top();
          break;
        }
        case 'h':
          push(memo_get(uint32_t(le(1))));
          break;  // BINGET
        case 'j':
          push(memo_get(uint32_t(le(4))));
          break;     // LONG_BINGET
        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = line(), name = line();
          push(global(module, name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          Obj* name = expect_kind(pop(), Obj::K::Str, "STACK_GLOBAL");
          Obj* module = expect_kind(pop(), Obj::K::Str, "STACK_GLOBAL");
          push(global(module->s, name->s));
          break;
        }
        case 'R': {  // REDUCE
          Obj* args = expect_kind(pop(), Obj::K::Tuple, "REDUCE");
          Obj* fn = expect_kind(pop(), Obj::K::Global, "REDUCE");
          push(call(fn, args->items));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args)
          expect_kind(pop(), Obj::K::Tuple, "NEWOBJ");
          push(new_object(expect_kind(pop(), Obj::K::Global, "NEWOBJ"), "NEWOBJ"));
          break;
        }
        case 0x92: {  // NEWOBJ_EX: cls.__new__(cls, *args, **kwargs)
          pop();
          pop();
          push(new_object(expect_kind(pop(), Obj::K::Global, "NEWOBJ_EX"), "NEWOBJ_EX"));
          break;
        }
        case 'b': {  // BUILD: the state (state_dict._metadata, a Namespace's fields) is dropped
          pop();
          Obj* o = top();
          if (o->k != Obj::K::Dict && o->k != Obj::K::Tensor && o->k != Obj::K::Object)
            bad("BUILD on a ", kind_name(o->k));
          break;
        }
        case 'Q':
          push(persistent(pop()));
          break;  // BINPERSID
        default:
          fail(path_, ": unsupported pickle opcode 0x", hex(op), " at byte ", op_at,
               " (only state_dicts of tensors are loaded)");
      }
    }
  }

 private:
  template <class... A>
  [[noreturn]] void bad(const A&... a) {
    fail(path_, ": corrupt or unsupported pickle: ", a..., " (at byte ", pos_, ")");
  }
  static std::string hex(unsigned v) {
    const char* d = "0123456789abcdef";
    return std::string{d[(v >> 4) & 15], d[v & 15]};
  }

  void ran_out() {
    if (whole_file_)
      fail(path_, ": truncated: the file ends at byte ", p_.size(),
           " inside its pickle (a legacy torch.save file; the download or copy stopped early)");
  }
  uint8_t byte() {
    if (pos_ >= p_.size()) ran_out(), bad("pickle ends without STOP");
    return p_[pos_++];
  }
  const uint8_t* take(uint64_t n) {
    if (n > p_.size() - pos_) ran_out(), bad("truncated pickle (needs ", n, " more bytes)");
    const uint8_t* r = p_.data() + pos_;
    pos_ += n;
    return r;
  }
  uint64_t le(int n) {
    const uint8_t* b = take(n);
    uint64_t v = 0;
    for (int j = n - 1; j >= 0; --j) v = (v << 8) | b[j];
    return v;
  }
  // LONG1/LONG4: n bytes of little-endian two's complement.
  int64_t long_int(uint64_t n) {
    if (n > 8) bad("integer of ", n, " bytes is too large");
    const uint8_t* b = take(n);
    if (n == 0) return 0;
    uint64_t v = 0;
    for (int j = int(n) - 1; j >= 0; --j) v = (v << 8) | b[j];
    if (n < 8 && (b[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return int64_t(v);
  }
  std::string line() {
    size_t start = pos_;
    while (true) {
      if (byte() == '\n') return std::string(p_.begin() + long(start), p_.begin() + long(pos_ - 1));
    }
  }

  Obj* make(Obj::K k) {
    arena_.push_back(std::make_unique<Obj>());
    arena_.back()->k = k;
    return arena_.back().get();
  }
  Obj* make_int(Obj::K k, int64_t v) {
    Obj* o = make(k);
    o->i = v;
    return o;
  }
  Obj* make_str(Obj::K k, uint64_t n) {
    const uint8_t* b = take(n);
    Obj* o = make(k);
    o->s.assign(reinterpret_cast<const char*>(b), n);
    return o;
  }

  size_t stack_floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void push(Obj* o) { stack_.push_back(o); }
  Obj* top() {
    if (stack_.size() <= stack_floor()) bad("stack underflow");
    return stack_.back();
  }
  Obj* pop() {
    Obj* o = top();
    stack_.pop_back();
    return o;
  }
  std::vector<Obj*> pop_mark() {
    if (marks_.empty()) bad("no MARK on the stack");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Obj*> r(stack_.begin() + long(m), stack_.end());
    stack_.resize(m);
    return r;
  }
  Obj* expect_kind(Obj* o, Obj::K k, const char* what) {
    if (o->k != k) bad(what, " expects a ", kind_name(k), ", got a ", kind_name(o->k));
    return o;
  }
  Obj* memo_get(uint32_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) bad("memo index ", idx, " was never stored");
    return it->second;
  }
  void set_item(Obj* d, Obj* k, Obj* v) {
    if (k->k == Obj::K::Str) {
      auto [it, fresh] = d->at.emplace(k->s, d->dict.size());
      if (!fresh) {
        d->dict[it->second].second = v;  // Python dict semantics: the key keeps its position
        return;
      }
    }
    d->dict.emplace_back(k, v);
  }

  Obj* global(const std::string& module, const std::string& name) {
    std::string full = module + "." + name;
    bool ok = false;
    for (const char* f : kFunctions) ok |= full == f;
    for (auto& [s, d] : kStorages) ok |= full == s;
    ok |= is_inert_class(full);
    if (!ok)
      fail(path_, ": unsupported pickle global '", full,
           "' (only state_dicts of tensors are loaded)");
    Obj* o = make(Obj::K::Global);
    o->s = full;
    return o;
  }

  // An OrderedDict, or a placeholder for an inert class; nothing is called.
  Obj* new_object(Obj* cls, const char* op) {
    if (cls->s == "collections.OrderedDict") return make(Obj::K::Dict);
    if (!is_inert_class(cls->s)) bad(op, " of ", cls->s);
    Obj* o = make(Obj::K::Object);
    o->s = cls->s;
    return o;
  }

  int64_t as_int(Obj* o, const char* what) {
    if (o->k != Obj::K::Int) bad(what, " is a ", kind_name(o->k), ", not an int");
    return o->i;
  }
  std::vector<int64_t> int_tuple(Obj* o, const char* what) {
    if (o->k != Obj::K::Tuple && o->k != Obj::K::List) bad(what, " is not a tuple");
    std::vector<int64_t> r;
    for (Obj* x : o->items) r.push_back(as_int(x, what));
    return r;
  }

  Obj* call(Obj* fn, const std::vector<Obj*>& args) {
    const std::string& f = fn->s;
    if (f == "collections.OrderedDict") {
      Obj* d = make(Obj::K::Dict);
      if (args.empty()) return d;
      // OrderedDict([(k, v), ...])
      if (args.size() != 1 || (args[0]->k != Obj::K::List && args[0]->k != Obj::K::Tuple))
        bad("OrderedDict called with unexpected arguments");
      for (Obj* kv : args[0]->items) {
        if ((kv->k != Obj::K::Tuple && kv->k != Obj::K::List) || kv->items.size() != 2)
          bad("OrderedDict item is not a pair");
        set_item(d, kv->items[0], kv->items[1]);
      }
      return d;
    }
    if (f == "torch._utils._rebuild_tensor_v2") {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.size() < 4) bad("_rebuild_tensor_v2 with ", args.size(), " arguments");
      Obj* st = expect_kind(args[0], Obj::K::Storage, "_rebuild_tensor_v2");
      Obj* t = make(Obj::K::Tensor);
      t->storage = st;
      t->dtype = st->dtype;
      t->offset = as_int(args[1], "storage offset");
      t->size = int_tuple(args[2], "tensor size");
      t->stride = int_tuple(args[3], "tensor stride");
      check_view(t);
      return t;
    }
    if (f == "torch._utils._rebuild_parameter") {
      if (args.empty()) bad("_rebuild_parameter without arguments");
      return expect_kind(args[0], Obj::K::Tensor, "_rebuild_parameter");
    }
    bad("calling ", f, " is not supported");
  }

  // The view must lie inside its storage: offset + sum((size-1)*stride) < numel.
  void check_view(Obj* t) {
    if (t->size.size() != t->stride.size())
      bad("tensor has ", t->size.size(), " sizes but ", t->stride.size(), " strides");
    if (t->offset < 0) bad("negative storage offset");
    int64_t last = t->offset, n = 1;
    for (size_t d = 0; d < t->size.size(); ++d) {
      if (t->size[d] < 0 || t->stride[d] < 0) bad("negative tensor size or stride");
      if (__builtin_mul_overflow(n, t->size[d], &n)) bad("tensor size overflows");
    }
    if (n == 0) return;
    // Stride 0 (an expanded tensor) can make a view far larger than its storage: a few pickle
    // bytes would ask read_all for terabytes. Weights never are such views.
    if (n > t->storage->i)
      bad("tensor view of ", n, " elements (size ", shape_str(t->size), ", stride ",
          shape_str(t->stride), ") is larger than its storage of ", t->storage->i,
          " elements; save it with .contiguous()");
    for (size_t d = 0; d < t->size.size(); ++d) {
      int64_t span;
      if (__builtin_mul_overflow(t->size[d] - 1, t->stride[d], &span) ||
          __builtin_add_overflow(last, span, &last))
        bad("tensor extent overflows");
    }
    if (last >= t->storage->i)
      bad("tensor view (offset ", t->offset, ", size ", shape_str(t->size), ", stride ",
          shape_str(t->stride), ") exceeds its storage of ", t->storage->i, " elements");
  }

  // ('storage', torch.XStorage, key, location, numel)
  Obj* persistent(Obj* pid) {
    if (pid->k != Obj::K::Tuple || pid->items.size() < 5) bad("unexpected persistent id");
    const auto& it = pid->items;
    if (it[0]->k != Obj::K::Str || it[0]->s != "storage") bad("persistent id is not a storage");
    Obj* type = expect_kind(it[1], Obj::K::Global, "storage type");
    Obj* key = expect_kind(it[2], Obj::K::Str, "storage key");
    int64_t numel = as_int(it[4], "storage size");
    if (numel < 0) bad("negative storage size");
    auto [sit, fresh] = storages_.emplace(key->s, nullptr);
    if (!fresh) return sit->second;  // the same storage referenced again
    Obj* st = make(Obj::K::Storage);
    bool known = false;
    for (auto& [s, d] : kStorages)
      if (type->s == s) {
        st->dtype = d;
        known = true;
      }
    if (!known) bad(type->s, " is not a storage type");
    st->s = key->s;
    st->i = numel;
    sit->second = st;
    return st;
  }

  const std::vector<uint8_t>& p_;
  const std::string& path_;
  size_t pos_ = 0;
  bool whole_file_ = false;
  std::vector<std::unique_ptr<Obj>> arena_;  // owns every object; containers hold raw pointers
  std::vector<Obj*> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, Obj*> memo_;
  std::unordered_map<std::string, Obj*> storages_;
};

bool is_contiguous(const Obj* t) {
  int64_t expect = 1;
  for (size_t d = t->size.size(); d-- > 0;) {
    if (t->size[d] != 1 && t->stride[d] != expect) return false;
    expect *= t->size[d];
  }
  return true;
}

// Copies a strided view out of its storage into a row-major array.
void gather(const uint8_t* src, const Obj* t, uint8_t* dst) {
  const size_t es = dtype_size(t->dtype);
  const size_t nd = t->size.size();
  if (nd == 0) {
    std::memcpy(dst, src + t->offset * es, es);
    return;
  }
  const int64_t inner = t->size[nd - 1], istride = t->stride[nd - 1];
  std::vector<int64_t> idx(nd - 1, 0);
  int64_t rows = 1;
  for (size_t d = 0; d + 1 < nd; ++d) rows *= t->size[d];
  if (inner == 0) return;
  for (int64_t r = 0; r < rows; ++r) {
    int64_t base = t->offset;
    for (size_t d = 0; d + 1 < nd; ++d) base += idx[d] * t->stride[d];
    const uint8_t* s = src + base * es;
    if (istride == 1) {
      std::memcpy(dst, s, inner * es);
    } else {
      for (int64_t j = 0; j < inner; ++j) std::memcpy(dst + j * es, s + j * istride * es, es);
    }
    dst += inner * es;
    for (size_t d = nd - 1; d-- > 0;) {
      if (++idx[d] < t->size[d]) break;
      idx[d] = 0;
    }
  }
}

// The dict of tensors in a checkpoint: the top level when it holds tensors, else the first of its
// "state_dict", "ema", "model" entries (in that order, up to 4 levels down) that leads to one.
// "ema" before "model" is what DiT's download.py:find_model does with a train.py checkpoint
// {"model", "ema", "opt", "args"}; U-ViT files are plain state_dicts or {"state_dict": ...}.
// *entry receives the keys followed, joined by '.' ("ema", "state_dict.model").
const Obj* find_state_dict(const Obj* d, int depth, std::string* entry) {
  for (auto& [k, v] : d->dict)
    if (v->k == Obj::K::Tensor) return d;
  if (depth >= 4) return nullptr;
  for (const char* key : {"state_dict", "ema", "model"}) {
    auto it = d->at.find(key);
    if (it == d->at.end() || d->dict[it->second].second->k != Obj::K::Dict) continue;
    std::string below;
    if (const Obj* r = find_state_dict(d->dict[it->second].second, depth + 1, &below)) {
      *entry = below.empty() ? key : std::string(key) + "." + below;
      return r;
    }
  }
  return nullptr;
}

// A legacy (pre-1.6) torch.save file is five pickles (the magic number, the protocol version,
// sys_info, the object, the sorted storage keys) and then each storage as an int64 element count
// and its bytes (torch/serialization.py:_legacy_save). Such files are not loaded, but a truncated
// one is said to be truncated: the pickles are parsed (the first 64 MiB; a state_dict's pickle is
// far smaller) and the storages' sizes walked to the end of the file.
void check_legacy_length(const io::InFile& f, const std::string& path) {
  // Pickle 1: PROTO 2, LONG1 of 10 bytes (the magic number 0x1950a86a20f9469cfc6c), STOP.
  const size_t magic_len = 15;
  std::vector<uint8_t> p(size_t(std::min<uint64_t>(f.size(), uint64_t(64) << 20)));
  f.read(0, p.data(), p.size(), "pickle");
  if (p.size() < magic_len || p[2] != 0x8a || p[3] != 10) return;
  const bool whole = p.size() == f.size();
  if (p.size() == magic_len && whole)
    fail(path, ": truncated: the file ends after the magic number (a legacy torch.save file)");
  try {
    Unpickler u(p, path, magic_len, whole);
    for (int k = 0; k < 3; ++k) u.run();  // the protocol version, sys_info, the object
    const Obj* keys = u.run();
    if (keys->k != Obj::K::List) return;
    uint64_t at = u.pos();
    for (const Obj* key : keys->items) {
      auto it = key->k == Obj::K::Str ? u.storages().find(key->s) : u.storages().end();
      if (it == u.storages().end()) return;
      const uint64_t need = 8 + uint64_t(it->second->i) * dtype_size(it->second->dtype);
      if (at + need > f.size())
        fail(path, ": truncated: storage ", key->s, " needs ", need, " bytes at ", at,
             ", the file has ", f.size(), " (a legacy torch.save file)");
      at += need;
    }
  } catch (const Error& e) {
    if (std::string(e.what()).find(": truncated: ") != std::string::npos) throw;
    // Anything else (an unknown global, a corrupt pickle): the legacy message says enough.
  }
}

// The file, open, once its magic says it is a zip (torch.save's format): the archive's reader
// takes it over, so a load opens the file once.
io::InFile open_checked(const std::string& path) {
  io::InFile f(path);
  uint8_t m[4] = {0, 0, 0, 0};
  if (f.size() < 4) fail(path, ": not a PyTorch file (", f.size(), " bytes)");
  f.read(0, m, 4, "magic");
  if (std::memcmp(m, "PK\x03\x04", 4) == 0) return f;
  // The legacy format starts with a pickled magic number (protocol 2 pickle: 0x80 0x02).
  if (m[0] == 0x80 && m[1] <= 5) {
    check_legacy_length(f, path);
    fail(path,
         ": legacy (pre-1.6) torch serialization is not supported; re-save with "
         "torch.save(..., _use_new_zipfile_serialization=True)");
  }
  fail(path, ": not a PyTorch zip archive (bad magic bytes)");
}

// The archive parsed up to the storages (checked for size); each tensor is read on demand.
class PthReader : public TensorReader {
 public:
  explicit PthReader(const std::string& path) : z_(open_checked(path)) {
    path_ = path;
    io::note_loaded(path, z_.file().id());
    // The archive's single top folder holds data.pkl; its name varies ("archive", the file stem).
    for (const zip::Entry& e : z_.entries()) {
      size_t slash = e.name.find('/');
      if (slash != std::string::npos &&
          e.name.compare(slash, std::string::npos, "/data.pkl") == 0) {
        prefix_ = e.name.substr(0, slash + 1);
        break;
      }
    }
    if (prefix_.empty()) fail(path, ": not a torch.save archive (no <folder>/data.pkl entry)");
    // torch >= 2.1 records the byte order of the storages; ours is little-endian.
    if (const zip::Entry* bo = z_.find(prefix_ + "byteorder")) {
      std::vector<uint8_t> b = z_.read(*bo);
      if (std::string(b.begin(), b.end()) != "little")
        fail(path, ": storages are not little-endian (byteorder '",
             std::string(b.begin(), b.begin() + long(std::min<size_t>(b.size(), 16))), "')");
    }
    pkl_ = z_.read(*z_.find(prefix_ + "data.pkl"));
    u_ = std::make_unique<Unpickler>(pkl_, path);
    const Obj* top = u_->run();

    if (top->k != Obj::K::Dict)
      fail(path, ": the pickle holds ",
           top->k == Obj::K::Object ? "an " + top->s + " object"
           : top->k == Obj::K::Int  ? std::string("an int")
                                    : std::string("a ") + kind_name(top->k),
           ", not a dict of tensors");
    std::string entry;
    if (const Obj* sd = find_state_dict(top, 0, &entry)) {
      if (sd != top) {
        std::string all;
        for (auto& [k, v] : top->dict)
          if (k->k == Obj::K::Str) all += (all.empty() ? "" : ", ") + k->s;
        metadata_[kEntryKey] = entry;
        metadata_[kEntriesKey] = all;
      }
      top = sd;
    }
    for (auto& [k, v] : top->dict) {
      if (v->k != Obj::K::Tensor) continue;  // e.g. an epoch counter next to the weights
      if (k->k != Obj::K::Str)
        fail(path, ": a tensor is stored under a ", kind_name(k->k), " key, not a string");
      objs_.push_back(v);
      tensors_.push_back({k->s, v->dtype, v->size});
    }
    if (objs_.empty()) fail(path, ": no tensors found in the pickle");

    // Storages: check sizes, count uses so a storage read for several views is read once and
    // freed after its last use, while a storage with one dense tensor is read straight into it.
    for (size_t i = 0; i < objs_.size(); ++i) {
      const Obj* t = objs_[i];
      Store& s = stores_[t->storage];
      if (s.uses++ == 0) {
        const std::string key = prefix_ + "data/" + t->storage->s;
        s.entry = z_.find(key);
        if (!s.entry)
          fail(path, ": missing storage entry ", key, " for tensor '", tensors_[i].name, "'");
        const uint64_t want = uint64_t(t->storage->i) * dtype_size(t->storage->dtype);
        if (uint64_t(t->storage->i) > (uint64_t(1) << 60) || s.entry->size != want)
          fail(path, ": storage ", key, " has ", s.entry->size, " bytes, expected ", want, " (",
               t->storage->i, " x ", dtype_name(t->storage->dtype), ")");
      }
    }
  }

  void read(size_t i, void* dst) override {
    const Obj* t = objs_.at(i);
    Store& s = stores_[t->storage];
    UVIT_CHECK(s.uses > 0, path_, ": tensor '", tensors_[i].name, "' read twice");
    const int64_t n = tensors_[i].numel();
    const bool whole = t->offset == 0 && is_contiguous(t) && n == t->storage->i;
    auto* out = static_cast<uint8_t*>(dst);
    if (s.uses == 1 && s.bytes.empty() && whole) {
      z_.read_into(*s.entry, out);
    } else {
      if (s.bytes.empty() && s.entry->size > 0) s.bytes = z_.read(*s.entry);
      if (n > 0) gather(s.bytes.data(), t, out);
    }
    if (--s.uses == 0) std::vector<uint8_t>().swap(s.bytes);
  }

 private:
  struct Store {
    const zip::Entry* entry = nullptr;
    int uses = 0;
    std::vector<uint8_t> bytes;
  };
  zip::Reader z_;
  std::string prefix_;
  std::vector<uint8_t> pkl_;
  std::unique_ptr<Unpickler> u_;  // owns the objects objs_ points into
  std::vector<const Obj*> objs_;
  std::unordered_map<const Obj*, Store> stores_;
};

}  // namespace

std::unique_ptr<TensorReader> open_pth_reader(const std::string& path) {
  return std::make_unique<PthReader>(path);
}

NamedArrays load_pth(const std::string& path) { return read_all(*open_pth_reader(path)); }

}  // namespace uvit
