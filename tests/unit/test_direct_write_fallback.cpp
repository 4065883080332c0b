// io::DirectWriter's fallback to the page cache in the middle of a file (src/io/direct_write.cpp,
// docs/formats.md "Writing .pth"): an O_DIRECT write that comes back short, or refused with
// EINVAL, sends the rest through the page cache, and the file still holds exactly the bytes given.
// The write(2) is replaced through the writer's test seam: no file system here does either on
// demand.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <random>
#include <vector>

#include "io/direct_write.hpp"
#include "temp_dir.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {

enum class Fault { kShort, kEinval };

// What the replaced write(2) saw: per call, its size and whether the descriptor had O_DIRECT.
std::mutex g_mu;
Fault g_fault = Fault::kShort;
std::vector<std::pair<size_t, bool>> g_calls;

// The second O_DIRECT write fails as g_fault says; every other call is the real write(2).
ssize_t faulty_write(int fd, const void* p, size_t n) {
  const bool direct = (::fcntl(fd, F_GETFL) & O_DIRECT) != 0;
  size_t direct_calls = 0;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_calls.emplace_back(n, direct);
    for (const auto& c : g_calls) direct_calls += c.second;
  }
  if (direct && direct_calls == 2) {
    if (g_fault == Fault::kEinval) {
      errno = EINVAL;
      return -1;
    }
    return ::write(fd, p, n / 2);  // half a buffer: still block-aligned, so O_DIRECT takes it
  }
  return ::write(fd, p, n);
}

// 3 buffers and a tail through a DirectWriter with the faulty write(2); the calls it made.
std::vector<std::pair<size_t, bool>> write_with(Fault fault, const std::string& path,
                                                const std::vector<uint8_t>& data) {
  {
    std::lock_guard<std::mutex> lock(g_mu);
    g_fault = fault;
    g_calls.clear();
  }
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0666);
  EXPECT_GE(fd, 0) << path;
  io::set_write_call_for_test(faulty_write);
  {
    io::DirectWriter d(fd, path);
    EXPECT_TRUE(d.direct());
    d.write(data.data(), data.size());
    d.finish();
  }
  io::set_write_call_for_test(nullptr);
  ::close(fd);
  std::lock_guard<std::mutex> lock(g_mu);
  return g_calls;
}

bool supports_o_direct(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_DIRECT, 0666);
  if (fd >= 0) ::close(fd);
  ::unlink(path.c_str());
  return fd >= 0;
}

}  // namespace

TEST(DirectWriter, ShortOrRefusedWriteMidFileFallsBackToThePageCache) {
  uvit_test::TempDir dir("uvit_direct");
  if (!supports_o_direct(dir / "probe")) GTEST_SKIP() << "no O_DIRECT on " << dir / "";
  std::mt19937 g(4);
  std::vector<uint8_t> data((3u << 20) + 5000);
  for (auto& x : data) x = uint8_t(g());
  for (Fault f : {Fault::kShort, Fault::kEinval}) {
    SCOPED_TRACE(f == Fault::kShort ? "short" : "EINVAL");
    const auto calls = write_with(f, dir / "out.bin", data);
    EXPECT_EQ(read_file(dir / "out.bin"), data);
    // Buffer 1 direct; buffer 2's direct write short (half written) or refused, then its rest
    // (half, or all of it) and everything after it through the page cache.
    ASSERT_GE(calls.size(), 4u);
    EXPECT_EQ(calls[0], std::make_pair(size_t(1) << 20, true));
    EXPECT_EQ(calls[1], std::make_pair(size_t(1) << 20, true));
    EXPECT_EQ(calls[2], std::make_pair(size_t(1) << (f == Fault::kShort ? 19 : 20), false));
    for (size_t i = 3; i < calls.size(); ++i) EXPECT_FALSE(calls[i].second) << i;
  }
}
