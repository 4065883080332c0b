// A samples batch above 4 GiB (50 000 ImageNet-256 samples are 9.8 GB): the zip writer's zip64
// records, read back by our reader and by Python's zipfile + numpy the way the ADM evaluator
// streams arr_0. The payload is zeros written as a hole (a sparse file), so the test stays cheap
// on disk; only its CRC runs over all 4.3 GB.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "io/zip.hpp"
#include "temp_dir.hpp"
#include "uvit/error.hpp"

namespace {

// numpy format 1.0 header of a C-order uint8 array, padded to 64 bytes as numpy pads it.
std::string npy_header_u8(const std::string& shape) {
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': " + shape + ", }";
  const size_t total = 10 + dict.size() + 1;
  dict += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::string h = "\x93NUMPY";
  h += char(1), h += char(0), h += char(dict.size() & 0xFF), h += char(dict.size() >> 8);
  return h + dict;
}

}  // namespace

TEST(NpzZip64, SamplesBatchAbove4GiBReadsAsTheEvaluatorReadsIt) {
  uvit_test::TempDir dir("uvit_zip64");
  const std::string path = dir / "samples.npz";
  const long n = 22000, per = 256L * 256 * 3;  // 4.33e9 bytes of uint8 images
  const std::string header = npy_header_u8("(22000, 256, 256, 3)");
  std::vector<uint8_t> zeros(64u << 20, 0);
  std::vector<std::pair<const void*, size_t>> pieces = {{header.data(), header.size()}};
  for (long left = n * per; left > 0; left -= long(zeros.size()))
    pieces.emplace_back(zeros.data(), size_t(std::min<long>(left, long(zeros.size()))));
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  uvit::zip::Writer w([&](const void* p, size_t k) {
    if (p == zeros.data()) {  // a hole instead of zeros
      ASSERT_GE(::lseek(fd, off_t(k), SEEK_CUR), 0);
      return;
    }
    ASSERT_EQ(::write(fd, p, k), ssize_t(k));
  });
  w.add("arr_0.npy", pieces);
  w.finish();
  ASSERT_EQ(::close(fd), 0);

  const uvit::zip::Reader r(path);
  ASSERT_EQ(r.entries().size(), 1u);
  EXPECT_EQ(r.entries()[0].size, uint64_t(header.size() + n * per));
  const std::string py =
      "/usr/bin/python3 -c \""
      "import sys, zipfile, numpy as np\n"
      "f = open(sys.argv[1], 'rb'); z = zipfile.ZipFile(f)\n"
      "i = z.getinfo('arr_0.npy'); assert i.file_size == " +
      std::to_string(header.size() + n * per) +
      ", i.file_size\n"
      "a = z.open('arr_0.npy')\n"
      "assert np.lib.format.read_magic(a) == (1, 0)\n"
      "shape, fortran, dtype = np.lib.format.read_array_header_1_0(a)\n"
      "assert shape == (22000, 256, 256, 3) and not fortran and dtype == np.uint8\n"
      "assert not np.frombuffer(a.read(1 << 20), np.uint8).any()\n"
      "\" " +
      path;
  EXPECT_EQ(std::system(py.c_str()), 0) << py;
}
