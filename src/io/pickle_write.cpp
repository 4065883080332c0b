// Protocol 2 pickle opcodes, as Python's Lib/pickletools.py documents them.
#include "io/pickle_write.hpp"

#include "uvit/error.hpp"

namespace uvit {

namespace pickle {

Writer& Writer::global(const std::string& module, const std::string& name) {
  b_ += 'c' + module + '\n' + name + '\n';
  return *this;
}

Writer& Writer::str(const std::string& s) {
  UVIT_CHECK(s.size() <= 0xFFFFFFFFu, "pickle: string of ", s.size(), " bytes");
  b_ += 'X';
  for (int i = 0; i < 4; ++i) b_ += char((uint64_t(s.size()) >> (8 * i)) & 0xFF);
  b_ += s;
  return *this;
}

Writer& Writer::integer(int64_t v) {
  auto le = [&](uint64_t x, int n) {
    for (int i = 0; i < n; ++i) b_ += char((x >> (8 * i)) & 0xFF);
  };
  if (v >= 0 && v < 0x100) {
    b_ += 'K';  // BININT1
    le(uint64_t(v), 1);
  } else if (v >= 0 && v < 0x10000) {
    b_ += 'M';  // BININT2
    le(uint64_t(v), 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    b_ += 'J';  // BININT, signed
    le(uint64_t(v), 4);
  } else {
    b_ += "\x8a\x08";  // LONG1 of 8 bytes, two's complement
    le(uint64_t(v), 8);
  }
  return *this;
}

Writer& Writer::tuple(const std::vector<int64_t>& v) {
  if (v.empty()) return op(kEmptyTuple);
  op(kMark);
  for (int64_t x : v) integer(x);
  return op(kTuple);
}

}  // namespace pickle

}  // namespace uvit
