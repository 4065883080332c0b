// Loading weights into uninitialised arrays (docs/formats.md, "Loading weights"): no pass over the
// memory before the read, the same bytes as the file, and a read that fails drops the array.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "error_of.hpp"
#include "io/pth_write.hpp"
#include "io/readers.hpp"
#include "io/zip.hpp"
#include "temp_dir.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_wload") {}
};

// Resident bytes of this process (/proc/self/statm's second field, in pages).
size_t resident_bytes() {
  std::ifstream f("/proc/self/statm");
  size_t total = 0, resident = 0;
  f >> total >> resident;
  return resident * size_t(::sysconf(_SC_PAGESIZE));
}

// Every dtype, odd sizes, random bytes (NaN payloads and denormals included): loads must return
// them bit for bit.
NamedArrays random_state(uint32_t seed) {
  std::mt19937 rng(seed);
  NamedArrays sd;
  const DType ds[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I8};
  for (size_t k = 0; k < 12; ++k) {
    Array a(ds[k % 6], {int64_t(1 + k), int64_t(3 + 2 * k)});
    for (uint8_t& b : a.data) b = uint8_t(rng());
    sd.emplace_back("t" + std::to_string(k), std::move(a));
  }
  return sd;
}

}  // namespace

// The uninitialised allocation touches no page: 256 MiB of it leave the resident size as it was,
// while the zero-filled constructor makes all of it resident (the measure works).
TEST(WeightsLoadArray, UninitialisedTouchesNoPage) {
  constexpr int64_t kFloats = int64_t(64) << 20;
  const size_t before = resident_bytes();
  Array u = Array::uninitialised(DType::F32, {2, kFloats / 2});
  const size_t after_u = resident_bytes();
  EXPECT_EQ(u.data.size(), size_t(kFloats) * 4);
  EXPECT_EQ(u.numel(), kFloats);
  EXPECT_EQ(u.dtype, DType::F32);
  EXPECT_LT(after_u, before + (size_t(16) << 20)) << "the uninitialised array was written";
  u = Array();
  const size_t base = resident_bytes();
  Array z(DType::F32, {kFloats});
  EXPECT_GT(resident_bytes(), base + (size_t(200) << 20)) << "the zero-filled one was not";
  EXPECT_EQ(z.as<float>()[kFloats - 1], 0.f);
}

TEST(WeightsLoadArray, UninitialisedRefusesWhatTheConstructorRefuses) {
  for (const std::vector<int64_t>& s :
       {std::vector<int64_t>{int64_t(1) << 62, 8}, {3, -1}, {int64_t(1) << 61, 4}})
    EXPECT_EQ(error_of([&] { Array::uninitialised(DType::F32, s); }),
              error_of([&] { Array(DType::F32, s); }))
        << shape_str(s);
  EXPECT_TRUE(Array::uninitialised(DType::BF16, {0, 5}).data.empty());
}

// .safetensors and .pth: every tensor bit-equal to what was saved (the arrays are filled only by
// the read), the DDP prefix handled as before.
TEST(WeightsLoad, EveryTensorBitEqual) {
  TempDir t;
  const NamedArrays sd = random_state(7);
  save_safetensors(t / "w.safetensors", sd);
  save_pth(t / "w.pth", sd);
  NamedArrays ddp;
  for (const auto& [k, a] : sd) ddp.emplace_back("module." + k, a);
  save_pth(t / "ddp.pth", ddp);
  for (const std::string f : {"w.safetensors", "w.pth", "ddp.pth"}) {
    const NamedArrays got = load_weights(t / f);
    ASSERT_EQ(got.size(), sd.size()) << f;
    for (size_t i = 0; i < sd.size(); ++i) {
      EXPECT_EQ(got[i].first, sd[i].first) << f;
      EXPECT_EQ(got[i].second.dtype, sd[i].second.dtype) << f;
      EXPECT_EQ(got[i].second.shape, sd[i].second.shape) << f;
      EXPECT_EQ(got[i].second.data, sd[i].second.data) << f << " " << sd[i].first;
    }
  }
}

// A file cut after it was opened (its header promised more): the read throws, with the message a
// zero-filled array's read gave, and no array comes back.
TEST(WeightsLoad, FileCutAfterOpenIsRefused) {
  TempDir t;
  const NamedArrays sd = random_state(8);
  save_safetensors(t / "w.safetensors", sd);
  save_pth(t / "w.pth", sd);
  {
    auto r = open_weights(t / "w.safetensors");
    std::filesystem::resize_file(t / "w.safetensors",
                                 std::filesystem::file_size(t / "w.safetensors") - 5);
    const std::string last = r->tensors().back().name;
    EXPECT_EQ(error_of([&] { read_all(*r); }),
              t / "w.safetensors" + ": truncated while reading " + last + " (file changed?)");
  }
  {
    auto r = open_weights(t / "w.pth");
    std::filesystem::resize_file(t / "w.pth", 4096);  // the data, the central directory
    const std::string e = error_of([&] { read_all(*r); });
    EXPECT_EQ(e.rfind(t / "w.pth" + ": truncated", 0), 0u) << e;
  }
}

// The .pth reader opens its file once: the magic check's descriptor is the archive's.
TEST(WeightsLoad, ZipReaderTakesTheOpenFile) {
  TempDir t;
  save_pth(t / "w.pth", random_state(9));
  io::InFile f(t / "w.pth");
  const uint64_t size = f.size();
  zip::Reader z(std::move(f));
  EXPECT_EQ(z.path(), t / "w.pth");
  ASSERT_NE(z.find("archive/data.pkl"), nullptr);
  EXPECT_FALSE(z.read(*z.find("archive/data.pkl")).empty());
  EXPECT_GT(size, 0u);
}
