// An .npy file's header as written, for the callers that recognise a file by it before (or
// instead of) reading it as a numeric array: uvit info's feature files (object arrays), fid's
// feature statistics. read_npy_header (uvit/io.hpp) is this plus load_npy's checks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace uvit {

struct NpyHeader {
  std::string descr;  // numpy's dtype descriptor: '<f4', '|O' (pickled objects), ...
  bool fortran_order = false;
  std::vector<int64_t> shape;
  uint64_t data_offset = 0;  // where the array's bytes start
  uint64_t file_bytes = 0;   // the whole file's size
};

// Magic, format version (1.0, 2.0, 3.0), header length and dict; throws uvit::Error naming the
// file for a corrupt or truncated header (the errors load_npy gives), reads no data and checks
// neither the dtype nor the data's size.
NpyHeader peek_npy_header(const std::string& path);
// The same for a whole file's n bytes in memory (an object array's pickle follows the header);
// `what` names it in the errors.
NpyHeader peek_npy_header(const uint8_t* p, size_t n, const std::string& what);

}  // namespace uvit
