// parse_feature_record (src/data/feature_npy.cpp) reads its .npy header with peek_npy_header: the
// npy readers' errors for a damaged header, and the dtype and shape of a file that is not an
// object array.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/feature_npy.hpp"
#include "error_of.hpp"
#include "temp_dir.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

std::string parse_error(const std::string& bytes) {
  return error_of([&] {
    data::parse_feature_record(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                               "x.npy");
  });
}

}  // namespace

TEST(FeatureNpy, HeaderErrorsAreTheNpyReaders) {
  // np.save of the moments alone (a numeric array, as save_npy writes it: header v1.0, 128 bytes).
  uvit_test::TempDir d("uvit_feature_npy");
  save_npy(d / "m.npy", Array(DType::F32, {8, 2, 2}));
  const std::vector<uint8_t> f = read_file(d / "m.npy");
  const std::string npy(f.begin(), f.end());
  ASSERT_EQ(npy.size(), 128u + 128u);
  // It is named by its dtype and shape.
  EXPECT_EQ(parse_error(npy),
            "x.npy: expected a pickled object array (moments, label), got dtype '<f4' shape "
            "[8, 2, 2]");
  EXPECT_EQ(parse_error("not an npy file at all"), "x.npy: not an .npy file (bad magic)");
  std::string v4 = npy;
  v4[6] = 4;
  EXPECT_EQ(parse_error(v4), "x.npy: unsupported .npy format version 4.0");
  // The header's length is past the end of the file.
  EXPECT_EQ(parse_error(npy.substr(0, 40)),
            "x.npy: truncated: header says 118 bytes of header, file has 30");
}
