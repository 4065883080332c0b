// The official ImageNet feature file: np.save((moments, label)) of a 2-element object array, i.e.
// a .npy with descr '|O' whose payload is a protocol-3 pickle. We emit the exact opcode stream
// numpy writes, so the files are byte-identical to the official extractor's (checked against numpy
// in tests/e2e/latent_pipeline.sh).
#include <cstring>

#include "uvit/autoencoder.hpp"
#include "uvit/error.hpp"

namespace uvit {

namespace {

struct Pickle {
  std::vector<uint8_t> b;
  void op(uint8_t c) { b.push_back(c); }
  void raw(const std::string& s) { b.insert(b.end(), s.begin(), s.end()); }
  void put(uint8_t memo) { op('q'), op(memo); }  // BINPUT
  void get(uint8_t memo) { op('h'), op(memo); }  // BINGET
  void global(const std::string& mod, const std::string& name) {
    op('c');
    raw(mod + "\n" + name + "\n");
  }
  void small_int(int64_t v) {  // BININT1 / BININT2 / BININT, as pickle chooses
    if (v >= 0 && v < 256) {
      op('K'), op(uint8_t(v));
    } else if (v >= 0 && v < 65536) {
      op('M'), op(uint8_t(v)), op(uint8_t(v >> 8));
    } else {
      const int32_t x = int32_t(v);
      op('J');
      for (int i = 0; i < 4; ++i) op(uint8_t(uint32_t(x) >> (8 * i)));
    }
  }
  void unicode(const std::string& s) {  // BINUNICODE
    op('X');
    const uint32_t n = uint32_t(s.size());
    for (int i = 0; i < 4; ++i) op(uint8_t(n >> (8 * i)));
    raw(s);
  }
  void bytes(const uint8_t* p, size_t n) {  // SHORT_BINBYTES below 256 bytes, else BINBYTES
    if (n < 256) {
      op('C'), op(uint8_t(n));
    } else {
      op('B');
      for (int i = 0; i < 4; ++i) op(uint8_t(uint32_t(n) >> (8 * i)));
    }
    b.insert(b.end(), p, p + n);
  }
  // dtype state tuple (3, byteorder, None, None, None, -1, -1, flags) then BUILD.
  void dtype_state(bool new_byteorder, uint8_t order_memo, const char* order, int flags) {
    op('(');
    small_int(3);
    if (new_byteorder) {
      unicode(order);
      put(order_memo);
    } else {
      get(order_memo);
    }
    op('N'), op('N'), op('N');
    small_int(-1), small_int(-1), small_int(flags);
    op('t');
  }
};

}  // namespace

std::vector<uint8_t> encode_feature_record(const Array& moments, int64_t label) {
  UVIT_CHECK(moments.dtype == DType::F32 && moments.shape.size() == 3,
             "feature record: moments must be float32 [C, h, w], got ", dtype_name(moments.dtype),
             " ", shape_str(moments.shape));
  Pickle p;
  p.op(0x80), p.op(3);  // PROTO 3 (np.save pickles with protocol 3)
  p.global("numpy.core.multiarray", "_reconstruct");
  p.put(0);
  p.global("numpy", "ndarray");
  p.put(1);
  p.small_int(0), p.op(0x85), p.put(2);     // (0,)
  p.op('C'), p.op(1), p.op('b'), p.put(3);  // b'b'
  p.op(0x87), p.put(4), p.op('R'), p.put(5);
  // Object array state: (1, (2,), dtype('O'), False, [moments, label]).
  p.op('(');
  p.small_int(1), p.small_int(2), p.op(0x85), p.put(6);
  p.global("numpy", "dtype");
  p.put(7);
  p.unicode("O8"), p.put(8), p.op(0x89), p.op(0x88), p.op(0x87), p.put(9), p.op('R'), p.put(10);
  p.dtype_state(true, 11, "|", 63);
  p.put(12), p.op('b');
  p.op(0x89);
  p.op(']'), p.put(13), p.op('(');
  // Element 0: the float32 array.
  p.get(0), p.get(1), p.small_int(0), p.op(0x85), p.put(14), p.get(3), p.op(0x87), p.put(15);
  p.op('R'), p.put(16);
  p.op('('), p.small_int(1);
  for (int64_t d : moments.shape) p.small_int(d);
  p.op(0x87), p.put(17);  // TUPLE3
  p.get(7), p.unicode("f4"), p.put(18), p.op(0x89), p.op(0x88), p.op(0x87), p.put(19);
  p.op('R'), p.put(20);
  p.dtype_state(true, 21, "<", 0);
  p.put(22), p.op('b');
  p.op(0x89);
  p.bytes(moments.data.data(), moments.data.size());
  p.put(23), p.op('t'), p.put(24), p.op('b');
  // Element 1: numpy.int64 scalar.
  p.global("numpy.core.multiarray", "scalar");
  p.put(25);
  p.get(7), p.unicode("i8"), p.put(26), p.op(0x89), p.op(0x88), p.op(0x87), p.put(27);
  p.op('R'), p.put(28);
  p.dtype_state(false, 21, "<", 0);
  p.put(29), p.op('b');
  uint8_t lb[8];
  for (int i = 0; i < 8; ++i) lb[i] = uint8_t(uint64_t(label) >> (8 * i));
  p.bytes(lb, 8);
  p.put(30), p.op(0x86), p.put(31), p.op('R'), p.put(32);
  p.op('e');
  p.op('t'), p.put(33), p.op('b'), p.op('.');

  // npy v1.0 header, padded with spaces to a multiple of 64 bytes including the newline.
  std::string h = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }";
  const size_t total = ((10 + h.size() + 1 + 63) / 64) * 64;
  h.append(total - 10 - h.size() - 1, ' ');
  h.push_back('\n');
  const uint8_t magic[10] = {
      0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, uint8_t(h.size() & 0xff), uint8_t(h.size() >> 8)};
  std::vector<uint8_t> out(sizeof magic + h.size() + p.b.size());
  std::memcpy(out.data(), magic, sizeof magic);
  std::memcpy(out.data() + sizeof magic, h.data(), h.size());
  std::memcpy(out.data() + sizeof magic + h.size(), p.b.data(), p.b.size());
  return out;
}

}  // namespace uvit
