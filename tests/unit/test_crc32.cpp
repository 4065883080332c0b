// zip's CRC-32 (src/io/crc32.cpp, docs/formats.md "Writing .pth", CRC-32): every implementation
// this CPU runs, the zlib fallback forced included, equal to zlib's crc32_z for every length
// 0..1024 at every alignment 0..63, for large sizes, and when the data comes in pieces split
// anywhere.
#include <gtest/gtest.h>
#include <zlib.h>

#include <random>
#include <vector>

#include "io/crc32.hpp"
#include "uvit/error.hpp"

using namespace uvit;
using zip::Crc32Impl;

namespace {

const Crc32Impl kImpls[] = {Crc32Impl::kAuto, Crc32Impl::kZlib, Crc32Impl::kPclmul,
                            Crc32Impl::kVpclmul};

std::vector<uint8_t> random_bytes(size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<uint8_t> b(n);
  for (auto& x : b) x = uint8_t(g());
  return b;
}

uint32_t zlib_crc(uint32_t crc, const uint8_t* p, size_t n) {
  return n == 0 ? crc : uint32_t(crc32_z(crc, p, n));
}

}  // namespace

TEST(Crc32, KnownVectorsWithEveryImpl) {
  const std::string check = "123456789";
  // 1000 bytes of 'a' reach the folding code of both vector widths.
  const std::string a1000(1000, 'a');
  for (Crc32Impl impl : kImpls) {
    if (!zip::crc32_supported(impl)) continue;
    SCOPED_TRACE(int(impl));
    EXPECT_EQ(zip::crc32(0, check.data(), check.size(), impl), 0xCBF43926u);
    EXPECT_EQ(zip::crc32(0, a1000.data(), a1000.size(), impl),
              zlib_crc(0, reinterpret_cast<const uint8_t*>(a1000.data()), a1000.size()));
    EXPECT_EQ(zip::crc32(0x1234u, nullptr, 0, impl), 0x1234u);
  }
}

TEST(Crc32, ThisMachineRunsTheFastCode) {
  // The zlib fallback is always there; on x86-64 with PCLMULQDQ (every x86-64 CPU since 2010)
  // the folding code is chosen.
  EXPECT_TRUE(zip::crc32_supported(Crc32Impl::kZlib));
  EXPECT_TRUE(zip::crc32_supported(Crc32Impl::kAuto));
  const std::string name = zip::crc32_impl_name();
#if defined(__x86_64__)
  if (__builtin_cpu_supports("pclmul")) {
    EXPECT_NE(name, "zlib");
  }
#endif
  if (!zip::crc32_supported(Crc32Impl::kVpclmul)) {
    const uint8_t b[256] = {};
    EXPECT_THROW(zip::crc32(0, b, sizeof b, Crc32Impl::kVpclmul), Error);
  }
}

TEST(Crc32, EqualsZlibForEveryLengthAndAlignment) {
  const auto buf = random_bytes(1024 + 64, 1);
  for (Crc32Impl impl : kImpls) {
    if (!zip::crc32_supported(impl)) continue;
    SCOPED_TRACE(int(impl));
    int bad = 0;
    for (size_t align = 0; align < 64; ++align)
      for (size_t n = 0; n <= 1024; ++n) {
        const uint8_t* p = buf.data() + align;
        const uint32_t init = uint32_t(n * 2654435761u);  // a different register each time
        if (zip::crc32(init, p, n, impl) != zlib_crc(init, p, n) && bad++ < 5)
          ADD_FAILURE() << "length " << n << ", alignment " << align;
      }
    EXPECT_EQ(bad, 0);
  }
}

TEST(Crc32, EqualsZlibForLargeSizes) {
  const auto buf = random_bytes((16u << 20) + 300, 2);
  for (size_t n : {size_t(4096), size_t(65536) + 1, size_t(1u << 20) - 17, size_t(16u << 20) + 255,
                   buf.size()})
    for (Crc32Impl impl : kImpls) {
      if (!zip::crc32_supported(impl)) continue;
      EXPECT_EQ(zip::crc32(0, buf.data(), n, impl), zlib_crc(0, buf.data(), n))
          << "size " << n << ", impl " << int(impl);
      EXPECT_EQ(zip::crc32(0, buf.data() + 3, n - 3, impl), zlib_crc(0, buf.data() + 3, n - 3))
          << "size " << n - 3 << " at an odd address, impl " << int(impl);
    }
}

TEST(Crc32, StreamingUpdatesSplitAnywhere) {
  const auto buf = random_bytes(1500, 3);
  const uint32_t whole = zlib_crc(0, buf.data(), buf.size());
  for (Crc32Impl impl : kImpls) {
    if (!zip::crc32_supported(impl)) continue;
    SCOPED_TRACE(int(impl));
    for (size_t k = 0; k <= buf.size(); ++k) {
      const uint32_t head = zip::crc32(0, buf.data(), k, impl);
      ASSERT_EQ(zip::crc32(head, buf.data() + k, buf.size() - k, impl), whole) << "split at " << k;
      // The fallback continues what the fast code started, and the other way round.
      ASSERT_EQ(zip::crc32(head, buf.data() + k, buf.size() - k, Crc32Impl::kZlib), whole);
      const uint32_t zhead = zip::crc32(0, buf.data(), k, Crc32Impl::kZlib);
      ASSERT_EQ(zip::crc32(zhead, buf.data() + k, buf.size() - k, impl), whole);
    }
  }
}
