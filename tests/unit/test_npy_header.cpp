// peek_npy_header (src/io/npy.hpp) on hand-written headers: what uvit info and fid recognise files
// by, and read_npy_header's checks on top of it.
#include <gtest/gtest.h>

#include <fstream>

#include "error_of.hpp"
#include "io/npy.hpp"
#include "temp_dir.hpp"
#include "uvit/error.hpp"
#include "uvit/fid.hpp"
#include "uvit/io.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

// An .npy file: magic, version `major`.0, the header length (2 bytes for 1.0, 4 for 2.0), the
// dict as given (no padding) and `data` bytes.
std::string npy_bytes(int major, const std::string& dict, size_t data) {
  std::string s("\x93NUMPY", 6);
  s += char(major);
  s += char(0);
  const size_t len = dict.size();
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) s += char((len >> (8 * i)) & 0xFF);
  return s + dict + std::string(data, '\0');
}

std::string write(const uvit_test::TempDir& d, const std::string& name, const std::string& bytes) {
  const std::string path = d / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

}  // namespace

TEST(NpyPeek, Version1And2) {
  uvit_test::TempDir d("npy_header");
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2048), }\n";
  const std::string v1 = write(d, "v1.npy", npy_bytes(1, dict, 3 * 2048 * 4));
  NpyHeader h = peek_npy_header(v1);
  EXPECT_EQ(h.descr, "<f4");
  EXPECT_FALSE(h.fortran_order);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{3, 2048}));
  EXPECT_EQ(h.data_offset, 10 + dict.size());
  EXPECT_EQ(h.file_bytes, 10 + dict.size() + 3 * 2048 * 4);
  EXPECT_TRUE(is_feature_npy(v1));
  EXPECT_EQ(read_npy_header(v1).data_offset, h.data_offset);

  const std::string dict2 = "{'descr': '<f8', 'fortran_order': True, 'shape': (5,), }";
  const std::string v2 = write(d, "v2.npy", npy_bytes(2, dict2, 5 * 8));
  h = peek_npy_header(v2);
  EXPECT_EQ(h.descr, "<f8");
  EXPECT_TRUE(h.fortran_order);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{5}));
  EXPECT_EQ(h.data_offset, 12 + dict2.size());
  EXPECT_FALSE(is_feature_npy(v2));  // one dimension
  // The header is read; load_npy's checks come on top.
  EXPECT_NE(error_of([&] { read_npy_header(v2); }).find("fortran_order=True"), std::string::npos);
}

TEST(NpyPeek, ObjectArrayIsPeekedNotRead) {
  uvit_test::TempDir d("npy_header");
  const std::string o = write(
      d, "o.npy", npy_bytes(1, "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 40));
  EXPECT_EQ(peek_npy_header(o).descr, "|O");
  EXPECT_EQ(error_of([&] { read_npy_header(o); }), o + ": unsupported .npy dtype '|O'");
  EXPECT_FALSE(is_feature_npy(o));
}

TEST(NpyPeek, CorruptHeadersGiveLoadNpysErrors) {
  uvit_test::TempDir d("npy_header");
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2048), }";
  // The length says 200 bytes of header; the file ends after the dict.
  std::string cut = npy_bytes(1, dict, 0);
  cut[8] = char(200);
  const std::string t = write(d, "t.npy", cut);
  const std::string want =
      t + ": truncated: header says 200 bytes of header, file has " + std::to_string(dict.size());
  EXPECT_EQ(error_of([&] { peek_npy_header(t); }), want);
  EXPECT_EQ(error_of([&] { load_npy(t); }), want);
  EXPECT_FALSE(is_feature_npy(t));  // not a feature file: fid reads it as samples (and says why)

  const std::string m = write(d, "m.npy", "\x93NUMPZ" + npy_bytes(1, dict, 0).substr(6));
  EXPECT_EQ(error_of([&] { peek_npy_header(m); }), m + ": not an .npy file (bad magic)");
  const std::string v = write(d, "v.npy", npy_bytes(4, dict, 0));
  EXPECT_EQ(error_of([&] { peek_npy_header(v); }), v + ": unsupported .npy format version 4.0");
  const std::string b = write(d, "b.npy", npy_bytes(1, "{'descr': '<f4', 'shape': (3 2), }", 0));
  EXPECT_EQ(error_of([&] { peek_npy_header(b); }),
            b + ": bad npy header (expected ',' or ')' at column 29)");
  EXPECT_EQ(error_of([&] { peek_npy_header(b); }), error_of([&] { load_npy(b); }));
}
