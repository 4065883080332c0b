// io::DirectWriter and AtomicWriter's kDirect mode (src/io/direct_write.cpp, docs/formats.md
// "Writing .pth"): the file holds exactly the bytes given, in pieces of every awkward size, whether
// the writes went past the page cache or fell back to it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <vector>

#include "io/direct_write.hpp"
#include "io/file.hpp"
#include "temp_dir.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {

std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = uint8_t(g());
  return b;
}

// Piece sizes around the 4 KiB block and the 1 MiB buffer, then the rest at once.
const size_t kPieces[] = {1,    63,       4095,           4097, 1u << 20, (1u << 20) - 5,
                          4096, 3u << 20, (1u << 20) + 7, 0,    30};

bool supports_o_direct(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0666);
  if (fd >= 0) ::close(fd);
  ::unlink(path.c_str());
  return fd >= 0;
}

}  // namespace

TEST(AtomicWriterDirect, FileHoldsEveryPieceInOrder) {
  uvit_test::TempDir dir("uvit_direct");
  const auto data = random_bytes(9u << 20, 1);
  for (size_t tail : {size_t(0), size_t(1), size_t(4096), size_t(100000)}) {
    SCOPED_TRACE(tail);
    const std::string out = dir / "out.bin";
    io::AtomicWriter w(out, io::AtomicWriter::Cache::kDirect);
    size_t at = 0;
    for (size_t n : kPieces) {
      w.write(data.data() + at, n);
      at += n;
    }
    w.write(data.data() + at, tail);
    at += tail;
    EXPECT_EQ(w.written(), at);
    w.commit();
    const auto back = read_file(out);
    ASSERT_EQ(back.size(), at);
    EXPECT_TRUE(std::equal(back.begin(), back.end(), data.begin()));
  }
}

TEST(DirectWriter, GoesPastThePageCacheWhereTheFileSystemCan) {
  uvit_test::TempDir dir("uvit_direct");
  const std::string path = dir / "d.bin";
  const auto data = random_bytes((2u << 20) + 123, 2);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  ASSERT_GE(fd, 0);
  {
    io::DirectWriter d(fd, path);
    EXPECT_EQ(d.direct(), supports_o_direct(dir / "probe"));
    d.write(data.data(), data.size());
    EXPECT_EQ(d.direct(), supports_o_direct(dir / "probe"));  // two whole buffers went direct
    d.finish();
    EXPECT_FALSE(d.direct());  // the tail went through the page cache
  }
  ::close(fd);
  EXPECT_EQ(read_file(path), data);
}

TEST(DirectWriter, FileAlreadyWrittenToFallsBackToThePageCache) {
  uvit_test::TempDir dir("uvit_direct");
  const std::string path = dir / "f.bin";
  const auto data = random_bytes((1u << 20) + 4099, 3);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, data.data(), 3), 3);  // the offset is no longer block-aligned
  {
    io::DirectWriter d(fd, path);
    EXPECT_FALSE(d.direct());
    d.write(data.data() + 3, 5000);
    d.write(data.data() + 5003, data.size() - 5003);
    d.finish();
  }
  ::close(fd);
  EXPECT_EQ(read_file(path), data);
}
