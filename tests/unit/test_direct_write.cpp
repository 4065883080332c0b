// io::DirectWriter and AtomicWriter's kDirect mode (src/io/direct_write.cpp, docs/formats.md
// "Writing .pth"): the file holds exactly the bytes given, in pieces of every awkward size, whether
// the writes went past the page cache or fell back to it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <stdexcept>
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

// Writes `data` to a new file: its first `head` bytes with a plain write(), the rest through a
// DirectWriter in two pieces. Whether those went past the page cache.
bool write_through_direct_writer(const std::string& path, const std::vector<uint8_t>& data,
                                 size_t head) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  if (fd < 0 || ::write(fd, data.data(), head) != ssize_t(head)) throw std::runtime_error(path);
  bool direct = false;
  {
    io::DirectWriter d(fd, path);
    d.write(data.data() + head, 5000);
    d.write(data.data() + head + 5000, data.size() - head - 5000);
    direct = d.direct();
    d.finish();
    EXPECT_FALSE(d.direct());  // the last partial block goes through the page cache
  }
  ::close(fd);
  return direct;
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
  const auto data = random_bytes((2u << 20) + 123, 2);
  // Two whole buffers went direct before finish() wrote the tail through the page cache.
  EXPECT_EQ(write_through_direct_writer(dir / "d.bin", data, 0), supports_o_direct(dir / "probe"));
  EXPECT_EQ(read_file(dir / "d.bin"), data);
}

TEST(DirectWriter, FileAlreadyWrittenToFallsBackToThePageCache) {
  uvit_test::TempDir dir("uvit_direct");
  const auto data = random_bytes((1u << 20) + 4099, 3);
  // 3 bytes written first: the offset is no longer block-aligned.
  EXPECT_FALSE(write_through_direct_writer(dir / "f.bin", data, 3));
  EXPECT_EQ(read_file(dir / "f.bin"), data);
}
