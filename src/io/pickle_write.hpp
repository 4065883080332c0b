// A pickle writer for what torch.save's data.pkl holds: protocol 2 opcodes (Python's
// Lib/pickletools.py documents each), only those torch's weights_only unpickler accepts. No memo:
// every value is written where it is used.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace uvit::pickle {

// Opcodes (one byte each).
inline constexpr char kMark = '(', kStop = '.', kTuple = 't', kEmptyTuple = ')', kEmptyDict = '}',
                      kReduce = 'R', kSetItem = 's', kSetItems = 'u', kBinPersId = 'Q',
                      kNewFalse = '\x89', kNewTrue = '\x88';

class Writer {
 public:
  Writer() : b_("\x80\x02", 2) {}  // PROTO 2
  Writer& op(char c) {
    b_ += c;
    return *this;
  }
  Writer& global(const std::string& module, const std::string& name);  // GLOBAL
  Writer& str(const std::string& s);                                   // BINUNICODE
  Writer& integer(int64_t v);                    // BININT1, BININT2, BININT or LONG1: the shortest
  Writer& tuple(const std::vector<int64_t>& v);  // a tuple of ints
  const std::string& bytes() const { return b_; }

 private:
  std::string b_;
};

}  // namespace uvit::pickle
