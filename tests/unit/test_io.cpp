// File formats: fp16/bf16 conversion, safetensors, npy/npz, zip, torch .pth, atomic writes.
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "error_of.hpp"
#include "io/zip.hpp"
#include "temp_dir.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

// Temporary directories named after this suite.
struct TempDir : uvit_test::TempDir {
  TempDir() : uvit_test::TempDir("uvit_io") {}
};

std::vector<uint8_t> slurp(const std::string& p) { return read_file(p); }
void spit(const std::string& p, const std::vector<uint8_t>& b) {
  // Unlink first: rewriting a truncated file makes ext4 flush it (slow in the fuzz loops).
  ::unlink(p.c_str());
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}
void spit(const std::string& p, const std::string& s) {
  spit(p, std::vector<uint8_t>(s.begin(), s.end()));
}

uint32_t fbits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// One array of each dtype with distinctive values (negative, fractional, extremes).
NamedArrays all_dtypes() {
  NamedArrays r;
  {
    Array a(DType::F32, {2, 3});
    float v[] = {-1.5f, 0.f, 3.25f, 1e-30f, -7e30f, 0.1f};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("f32", a);
  }
  {
    Array a(DType::F16, {3});
    uint16_t v[] = {0x3C00, 0xC100, 0x0001};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("f16", a);
  }
  {
    Array a(DType::BF16, {2, 1});
    uint16_t v[] = {0x3F80, 0xC0A0};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("bf16", a);
  }
  {
    Array a(DType::F64, {2});
    double v[] = {-2.0000000001, 1e300};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("f64", a);
  }
  {
    Array a(DType::I64, {2});
    int64_t v[] = {-(int64_t(1) << 62), 123456789012345};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("i64", a);
  }
  {
    Array a(DType::I32, {1, 2});
    int32_t v[] = {-2147483647, 77};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("i32", a);
  }
  {
    Array a(DType::I16, {2});
    int16_t v[] = {-32768, 300};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("i16", a);
  }
  {
    Array a(DType::I8, {3});
    int8_t v[] = {-128, 5, 127};
    std::memcpy(a.data.data(), v, sizeof v);
    r.emplace_back("i8", a);
  }
  {
    Array a(DType::U8, {2});
    a.data = {0, 255};
    r.emplace_back("u8", a);
  }
  {
    Array a(DType::Bool, {3});
    a.data = {1, 0, 1};
    r.emplace_back("bool", a);
  }
  r.emplace_back("scalar", Array::from_f32({}, std::vector<float>{4.5f}.data()));
  r.emplace_back("empty", Array(DType::F32, {0, 4}));
  return r;
}

void expect_same(const NamedArrays& a, const NamedArrays& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_EQ(a[i].second.dtype, b[i].second.dtype) << a[i].first;
    EXPECT_EQ(a[i].second.shape, b[i].second.shape) << a[i].first;
    EXPECT_EQ(a[i].second.data, b[i].second.data) << a[i].first;
  }
}

// Runs fn on a damaged copy: it must either succeed or throw uvit::Error; anything else (another
// exception type, a crash) fails the test. Returns true when it threw uvit::Error.
bool threw_uvit_error(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    return true;
  }
  return false;
}

// Truncation at every length (up to `max_lengths` evenly spread) must throw uvit::Error.
void check_truncations(const std::string& good, const std::string& bad,
                       const std::function<void(const std::string&)>& load,
                       size_t max_lengths = 100000) {
  std::vector<uint8_t> bytes = slurp(good);
  size_t step = std::max<size_t>(1, bytes.size() / max_lengths);
  for (size_t n = 0; n < bytes.size(); n += step) {
    spit(bad, std::vector<uint8_t>(bytes.begin(), bytes.begin() + long(n)));
    EXPECT_TRUE(threw_uvit_error([&] { load(bad); })) << "truncated to " << n << " bytes";
  }
}

// 200 random single-byte corruptions with a fixed seed: never a crash or a foreign exception.
int check_flips(const std::string& good, const std::string& bad,
                const std::function<void(const std::string&)>& load, int count = 200) {
  std::vector<uint8_t> bytes = slurp(good);
  std::mt19937 rng(1234);
  int errors = 0;
  for (int k = 0; k < count; ++k) {
    std::vector<uint8_t> m = bytes;
    size_t at = rng() % m.size();
    uint8_t x = uint8_t(1 + rng() % 255);  // nonzero: the byte really changes
    m[at] ^= x;
    spit(bad, m);
    errors += threw_uvit_error([&] { load(bad); });
  }
  return errors;
}

using uvit_test::error_of;

const char* kPython = "/usr/bin/python3";

bool have_python_module(const char* module) {
  std::string cmd = cat(kPython, " -c 'import ", module, "' >/dev/null 2>&1");
  return std::system(cmd.c_str()) == 0;
}

int run_python(const std::string& code) {
  std::string cmd = cat(kPython, " -c \"", code, "\"");
  return std::system(cmd.c_str());
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// fp16 / bf16

TEST(IOHalf, HandCheckedValues) {
  EXPECT_EQ(half_to_float(0x3C00), 1.f);
  EXPECT_EQ(half_to_float(0xC000), -2.f);
  EXPECT_EQ(half_to_float(0x7BFF), 65504.f);
  EXPECT_EQ(half_to_float(0x0001), std::ldexp(1.f, -24));  // smallest subnormal
  EXPECT_EQ(half_to_float(0x03FF), 1023 * std::ldexp(1.f, -24));
  EXPECT_EQ(half_to_float(0x0400), std::ldexp(1.f, -14));  // smallest normal
  EXPECT_EQ(half_to_float(0x3555), 0.333251953125f);
  EXPECT_EQ(half_to_float(0x7C00), INFINITY);
  EXPECT_EQ(half_to_float(0xFC00), -INFINITY);
  EXPECT_TRUE(std::isnan(half_to_float(0x7E00)));
  EXPECT_TRUE(std::isnan(half_to_float(0x7C01)));
  EXPECT_EQ(fbits(half_to_float(0x8000)), 0x80000000u);  // -0

  EXPECT_EQ(float_to_half(1.f), 0x3C00);
  EXPECT_EQ(float_to_half(-2.f), 0xC000);
  EXPECT_EQ(float_to_half(65504.f), 0x7BFF);
  EXPECT_EQ(float_to_half(65519.f), 0x7BFF);
  EXPECT_EQ(float_to_half(65520.f), 0x7C00);  // tie between 65504 (odd) and 65536: to inf
  EXPECT_EQ(float_to_half(1e6f), 0x7C00);
  EXPECT_EQ(float_to_half(-1e6f), 0xFC00);
  EXPECT_EQ(float_to_half(INFINITY), 0x7C00);
  EXPECT_EQ(float_to_half(-INFINITY), 0xFC00);
  uint16_t n = float_to_half(NAN);
  EXPECT_EQ(n & 0x7C00, 0x7C00);
  EXPECT_NE(n & 0x3FF, 0);
  EXPECT_EQ(float_to_half(-0.f), 0x8000);
  EXPECT_EQ(float_to_half(1.f / 3), 0x3555);
  // Round to nearest even at 1.0 (ulp 2^-10).
  EXPECT_EQ(float_to_half(1 + std::ldexp(1.f, -11)), 0x3C00);      // tie -> even (down)
  EXPECT_EQ(float_to_half(1 + 3 * std::ldexp(1.f, -11)), 0x3C02);  // tie -> even (up)
  EXPECT_EQ(float_to_half(1 + std::ldexp(1.f, -11) + std::ldexp(1.f, -20)), 0x3C01);
  // Subnormals (unit 2^-24).
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -24)), 0x0001);
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -25)), 0x0000);  // tie -> even zero
  EXPECT_EQ(float_to_half(1.5f * std::ldexp(1.f, -25)), 0x0001);
  EXPECT_EQ(float_to_half(3 * std::ldexp(1.f, -25)), 0x0002);  // 1.5 units: tie -> 2
  EXPECT_EQ(float_to_half(5 * std::ldexp(1.f, -25)), 0x0002);  // 2.5 units: tie -> 2
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -26)), 0x0000);
  EXPECT_EQ(float_to_half(-std::ldexp(1.f, -40)), 0x8000);
  EXPECT_EQ(float_to_half(1023.5f * std::ldexp(1.f, -24)), 0x0400);  // rounds up into normals
  EXPECT_EQ(float_to_half(std::ldexp(1.f, -14)), 0x0400);
}

TEST(IOHalf, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = half_to_float(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(half_to_float(float_to_half(f)))) << h;
    } else {
      ASSERT_EQ(float_to_half(f), h) << h;
    }
  }
}

TEST(IOHalf, Bf16HandCheckedValues) {
  EXPECT_EQ(bf16_to_float(0x3F80), 1.f);
  EXPECT_EQ(bf16_to_float(0xC0A0), -5.f);
  EXPECT_EQ(bf16_to_float(0x7F80), INFINITY);
  EXPECT_TRUE(std::isnan(bf16_to_float(0x7FC0)));
  EXPECT_EQ(float_to_bf16(1.f), 0x3F80);
  EXPECT_EQ(float_to_bf16(-5.f), 0xC0A0);
  // ulp at 1.0 is 2^-7.
  EXPECT_EQ(float_to_bf16(1 + std::ldexp(1.f, -8)), 0x3F80);      // tie -> even (down)
  EXPECT_EQ(float_to_bf16(1 + 3 * std::ldexp(1.f, -8)), 0x3F82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(1 + std::ldexp(1.f, -8) + std::ldexp(1.f, -20)), 0x3F81);
  EXPECT_EQ(float_to_bf16(INFINITY), 0x7F80);
  EXPECT_EQ(float_to_bf16(-INFINITY), 0xFF80);
  EXPECT_EQ(float_to_bf16(3.4028235e38f), 0x7F80);  // FLT_MAX rounds to inf
  uint16_t n = float_to_bf16(NAN);
  EXPECT_TRUE(std::isnan(bf16_to_float(n)));
  // A NaN whose payload sits in the low bits must not round to inf.
  float low_nan;
  uint32_t u = 0x7F800001;
  std::memcpy(&low_nan, &u, 4);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(low_nan))));
  EXPECT_EQ(float_to_bf16(std::ldexp(1.f, -130)), 0x0008);  // subnormal float kept exactly
  EXPECT_EQ(float_to_bf16(-0.f), 0x8000);
}

TEST(IOHalf, EveryBf16RoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = bf16_to_float(uint16_t(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(f)))) << h;
    } else {
      ASSERT_EQ(float_to_bf16(f), h) << h;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Array

TEST(IOArray, BasicsAndConversions) {
  Array a(DType::F16, {2, 3});
  EXPECT_EQ(a.numel(), 6);
  EXPECT_EQ(a.nbytes(), 12u);
  EXPECT_EQ(shape_str(a.shape), "[2, 3]");
  EXPECT_EQ(shape_str({}), "[]");
  EXPECT_EQ(Array(DType::F32, {}).numel(), 1);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_STREQ(dtype_name(DType::Bool), "BOOL");
  EXPECT_THROW(Array(DType::F32, {2, -1}), Error);

  float v[] = {1.f, -2.5f, 65504.f, 1e-8f};
  Array f = Array::from_f32({4}, v);
  Array h = f.converted(DType::F16);
  EXPECT_EQ(h.dtype, DType::F16);
  EXPECT_EQ(h.as<uint16_t>()[0], 0x3C00);
  EXPECT_EQ(h.as<uint16_t>()[2], 0x7BFF);
  std::vector<float> back = h.to_f32();
  EXPECT_EQ(back[1], -2.5f);
  EXPECT_EQ(back[3], 0.f);  // 1e-8 is below half the smallest subnormal (2^-25 ~ 2.98e-8)
  Array b = f.converted(DType::BF16);
  EXPECT_EQ(b.as<uint16_t>()[1], 0xC020);
  Array d = b.converted(DType::F64);
  EXPECT_EQ(d.as<double>()[1], -2.5);
  EXPECT_EQ(d.converted(DType::F32).as<float>()[0], 1.f);
  EXPECT_THROW(Array(DType::I32, {1}).converted(DType::F32), Error);
  EXPECT_THROW(f.converted(DType::I64), Error);

  int64_t iv[] = {-3, 0, int64_t(1) << 40};
  Array i = Array::from_i64({3}, iv);
  EXPECT_EQ(i.to_i64(), (std::vector<int64_t>{-3, 0, int64_t(1) << 40}));
  EXPECT_EQ(i.to_f32()[2], 1099511627776.f);
  float whole[] = {3.f, -4.f};
  EXPECT_EQ(Array::from_f32({2}, whole).to_i64(), (std::vector<int64_t>{3, -4}));
  EXPECT_THROW(f.to_i64(), Error);  // -2.5 is not an integer

  for (auto& [name, arr] : all_dtypes()) {
    std::vector<float> x = arr.to_f32();
    EXPECT_EQ(int64_t(x.size()), arr.numel()) << name;
  }
  NamedArrays all = all_dtypes();
  EXPECT_EQ(all[7].second.to_f32(), (std::vector<float>{-128, 5, 127}));  // i8
  EXPECT_EQ(all[8].second.to_i64(), (std::vector<int64_t>{0, 255}));      // u8
  EXPECT_EQ(all[9].second.to_f32(), (std::vector<float>{1, 0, 1}));       // bool
}

// ---------------------------------------------------------------------------------------------
// safetensors

TEST(IOSafetensors, RoundTripEveryDtype) {
  TempDir t;
  NamedArrays in = all_dtypes();
  save_safetensors(t / "a.safetensors", in, {{"format", "pt"}, {"note", "x\"y"}});
  std::map<std::string, std::string> meta;
  NamedArrays out = load_safetensors(t / "a.safetensors", &meta);
  expect_same(in, out);
  EXPECT_EQ(meta.size(), 2u);
  EXPECT_EQ(meta["note"], "x\"y");
  std::vector<uint8_t> b = slurp(t / "a.safetensors");
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = hlen << 8 | b[i];
  EXPECT_EQ(hlen % 8, 0u);
  EXPECT_EQ(b[8], '{');
  EXPECT_EQ(b[8 + hlen - 1] == ' ' || b[8 + hlen - 1] == '}', true);
  expect_same(in, load_weights(t / "a.safetensors"));
  EXPECT_THROW(save_safetensors(t / "d.safetensors", {{"x", in[0].second}, {"x", in[1].second}}),
               Error);
}

TEST(IOSafetensors, ReadsHandWrittenFile) {
  TempDir t;
  // Two tensors listed out of offset order in the header; data: f16 [1, -2], then f32 [0.5].
  std::string h = R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
                  R"("a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},)"
                  R"("__metadata__":{"k":"v"}})";
  std::vector<uint8_t> f(8);
  f[0] = uint8_t(h.size());
  f.insert(f.end(), h.begin(), h.end());
  uint8_t data[] = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x00, 0x00, 0x3F};
  f.insert(f.end(), data, data + 8);
  spit(t / "h.safetensors", f);
  std::map<std::string, std::string> meta;
  NamedArrays r = load_safetensors(t / "h.safetensors", &meta);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].first, "a");  // data order
  EXPECT_EQ(r[0].second.to_f32(), (std::vector<float>{1.f, -2.f}));
  EXPECT_EQ(r[1].first, "b");
  EXPECT_EQ(r[1].second.to_f32(), (std::vector<float>{0.5f}));
  EXPECT_EQ(meta.at("k"), "v");
}

TEST(IOSafetensors, ReadsPartsOfATensor) {
  // ZeRO-1's resume reads each rank's slice of the optimizer state (docs/distributed.md).
  TempDir t;
  std::vector<float> v(1000);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i) - 0.5f;
  save_safetensors(t / "p.safetensors", {{"a", Array::from_f32({3}, v.data())},
                                         {"module.b", Array::from_f32({1000}, v.data())}});
  auto r = open_weights(t / "p.safetensors");
  ASSERT_EQ(r->tensors()[1].name, "module.b");
  for (const auto& [off, n] :
       std::vector<std::pair<size_t, size_t>>{{0, 1000}, {17, 333}, {999, 1}, {500, 0}}) {
    std::vector<float> got(n + 1, 42.f);
    r->read_part(1, off * 4, n * 4, got.data());
    EXPECT_EQ(std::vector<float>(got.begin(), got.begin() + long(n)),
              std::vector<float>(v.begin() + long(off), v.begin() + long(off + n)))
        << off << " " << n;
    EXPECT_EQ(got[n], 42.f);  // nothing past the part
  }
  std::vector<float> sink(8);
  EXPECT_NE(error_of([&] { r->read_part(0, 8, 8, sink.data()); }).find("lie outside tensor 'a'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { r->read_part(1, 3996, 8, sink.data()); }).find("[3996, 4004)"),
            std::string::npos);
}

TEST(IOSafetensors, RejectsInconsistentHeaders) {
  TempDir t;
  auto file = [&](const std::string& h, size_t data_bytes) {
    std::vector<uint8_t> f(8);
    for (int i = 0; i < 8; ++i) f[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
    f.insert(f.end(), h.begin(), h.end());
    f.resize(f.size() + data_bytes);
    spit(t / "x.safetensors", f);
    return error_of([&] { load_safetensors(t / "x.safetensors"); });
  };
  auto T = [](const char* name, const char* dt, const char* shape, const char* off) {
    return cat("\"", name, "\":{\"dtype\":\"", dt, "\",\"shape\":", shape,
               ",\"data_offsets\":", off, "}");
  };
  EXPECT_EQ(file(cat("{", T("a", "F32", "[2]", "[0,8]"), "}"), 8), "(no error)");
  // Data one byte short of a tensor of the right size: the file was cut (docs/formats.md).
  EXPECT_NE(file(cat("{", T("a", "F32", "[2]", "[0,8]"), "}"), 7)
                .find(": truncated: tensor 'a' ends at byte 8 of the data, the file holds 7 (1 "
                      "bytes missing)"),
            std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "F32", "[2]", "[4,12]"), "}"), 8).find("truncated: tensor 'a'"),
            std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "F32", "[2]", "[8,4]"), "}"), 8).find("outside"),
            std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "F32", "[3]", "[0,8]"), "}"), 8).find("needs 12"),
            std::string::npos);
  EXPECT_NE(
      file(cat("{", T("a", "F32", "[2]", "[0,8]"), ",", T("b", "F32", "[1]", "[4,8]"), "}"), 8)
          .find("overlap"),
      std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "F32", "[1]", "[4,8]"), "}"), 8).find("hole"), std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "F32", "[1]", "[0,4]"), "}"), 8).find("cover"), std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "U16", "[1]", "[0,2]"), "}"), 2).find("unsupported dtype"),
            std::string::npos);
  EXPECT_NE(file(cat("{", T("a", "F32", "[-1]", "[0,4]"), "}"), 4).find("bad shape"),
            std::string::npos);
  EXPECT_NE(
      file(cat("{", T("a", "F32", "[4611686018427387904,4]", "[0,0]"), "}"), 0).find("overflows"),
      std::string::npos);
  EXPECT_NE(file("{\"a\":", 0).find("JSON"), std::string::npos);
  EXPECT_NE(file("[1, 2]", 0).find("not a JSON object"), std::string::npos);
  EXPECT_NE(file(R"({"__metadata__":{"a":1}})", 0).find("not a string"), std::string::npos);
  // Header length beyond the file.
  std::vector<uint8_t> f(16, 0);
  f[0] = 200;
  spit(t / "y.safetensors", f);
  EXPECT_NE(error_of([&] { load_safetensors(t / "y.safetensors"); }).find("truncated"),
            std::string::npos);
  f[0] = 0;
  f[7] = 0xFF;
  spit(t / "y.safetensors", f);
  EXPECT_NE(error_of([&] { load_safetensors(t / "y.safetensors"); }).find("header length"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_safetensors(t / "missing.safetensors"); }).find("cannot open"),
            std::string::npos);
}

TEST(IOSafetensors, CorruptInputsThrow) {
  TempDir t;
  save_safetensors(t / "g.safetensors", all_dtypes(), {{"a", "b"}});
  auto load = [](const std::string& p) { load_safetensors(p); };
  check_truncations(t / "g.safetensors", t / "b.safetensors", load);
  int errors = check_flips(t / "g.safetensors", t / "b.safetensors", load);
  EXPECT_GT(errors, 50);  // most bytes are header; data flips are undetectable by design
}

// ---------------------------------------------------------------------------------------------
// npy / npz

TEST(IONpy, RoundTripEveryDtype) {
  TempDir t;
  for (auto& [name, a] : all_dtypes()) {
    if (a.dtype == DType::BF16) {
      EXPECT_NE(error_of([&, &a = a] { save_npy(t / "x.npy", a); }).find("no .npy dtype"),
                std::string::npos);
      continue;
    }
    save_npy(t / (name + ".npy"), a);
    Array b = load_npy(t / (name + ".npy"));
    EXPECT_EQ(a.dtype, b.dtype) << name;
    EXPECT_EQ(a.shape, b.shape) << name;
    EXPECT_EQ(a.data, b.data) << name;
    EXPECT_EQ(slurp(t / (name + ".npy")).size() % 64, a.data.size() % 64) << name;  // aligned
  }
  // Exact header bytes of a v1.0 file.
  Array a(DType::F32, {2, 3});
  save_npy(t / "h.npy", a);
  std::vector<uint8_t> b = slurp(t / "h.npy");
  std::string head(b.begin(), b.begin() + 128 - 24);
  EXPECT_EQ(head.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(b[8] + 256 * b[9], 118);
  EXPECT_EQ(head.substr(10, 59), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  EXPECT_EQ(b[127], '\n');
  EXPECT_EQ(b.size(), 128u + 24u);
}

TEST(IONpy, NpzRoundTrip) {
  TempDir t;
  NamedArrays in = all_dtypes();
  in.erase(in.begin() + 2);  // bf16 has no npy dtype
  save_npz(t / "a.npz", in);
  expect_same(in, load_npz(t / "a.npz"));
  std::vector<uint8_t> b = slurp(t / "a.npz");
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), std::string("PK\x03\x04", 4));
}

TEST(IONpy, ParsesHeaderVariantsAndRejectsUnsupported) {
  TempDir t;
  auto npy = [&](int major, const std::string& dict, size_t data_bytes) {
    std::string h = std::string("\x93NUMPY", 6) + char(major) + char(0);
    uint32_t n = uint32_t(dict.size());
    h += char(n & 0xFF);
    h += char(n >> 8);
    if (major > 1) h += std::string(2, '\0');
    h += dict;
    std::vector<uint8_t> f(h.begin(), h.end());
    for (size_t i = 0; i < data_bytes; ++i) f.push_back(uint8_t(i + 1));
    spit(t / "x.npy", f);
    return error_of([&] { load_npy(t / "x.npy"); });
  };
  // Versions 2.0 and 3.0, key order, double quotes, Python 2 'L' suffixes.
  EXPECT_EQ(npy(2, "{'shape': (2,), 'fortran_order': False, 'descr': '<i2'}\n", 4), "(no error)");
  Array a = load_npy(t / "x.npy");
  EXPECT_EQ(a.dtype, DType::I16);
  EXPECT_EQ(a.to_i64(), (std::vector<int64_t>{0x0201, 0x0403}));
  EXPECT_EQ(npy(3, "{\"descr\": \"|u1\", \"fortran_order\": False, \"shape\": (1L, 3L)}\n", 3),
            "(no error)");
  EXPECT_EQ(load_npy(t / "x.npy").shape, (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(npy(1, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }\n", 8), "(no error)");
  EXPECT_EQ(load_npy(t / "x.npy").shape, std::vector<int64_t>{});

  EXPECT_NE(
      npy(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }\n", 4).find("big-endian"),
      std::string::npos);
  EXPECT_NE(npy(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n", 4)
                .find("fortran_order=True"),
            std::string::npos);
  EXPECT_NE(npy(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n", 8)
                .find("unsupported .npy dtype '<c8'"),
            std::string::npos);
  EXPECT_NE(npy(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }\n", 4)
                .find("structured"),
            std::string::npos);
  EXPECT_NE(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }\n", 8)
                .find("truncated: header says 12 bytes of data, file has 8"),
            std::string::npos);
  EXPECT_NE(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", 8)
                .find("unexpected bytes"),
            std::string::npos);
  EXPECT_NE(npy(1, "{'descr': '<f4', 'shape': (1,), }\n", 4).find("lacks"), std::string::npos);
  EXPECT_NE(npy(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }\n", 4)
                .find("bad npy header"),
            std::string::npos);
  EXPECT_NE(npy(4, "{}", 0).find("version 4.0"), std::string::npos);
}

TEST(IONpy, CorruptInputsThrow) {
  TempDir t;
  Array a(DType::F32, {3, 5});
  for (int i = 0; i < 15; ++i) a.as<float>()[i] = float(i) - 7;
  save_npy(t / "g.npy", a);
  auto load = [](const std::string& p) { load_npy(p); };
  check_truncations(t / "g.npy", t / "b.npy", load);
  EXPECT_GT(check_flips(t / "g.npy", t / "b.npy", load), 50);

  save_npz(t / "g.npz", {{"a", a}, {"b", Array(DType::I64, {4})}});
  auto loadz = [](const std::string& p) { load_npz(p); };
  check_truncations(t / "g.npz", t / "b.npz", loadz);
  // Every byte of an npz is covered by the zip structure or a CRC, except a few header fields.
  EXPECT_GT(check_flips(t / "g.npz", t / "b.npz", loadz), 150);
}

TEST(IONpy, InteroperatesWithNumpy) {
  if (!have_python_module("numpy")) GTEST_SKIP() << "numpy for /usr/bin/python3 is not installed";
  TempDir t;
  std::string d = t.dir.string();
  // numpy writes: v1.0, v2.0 and v3.0 files, stored and deflated npz.
  ASSERT_EQ(
      run_python(
          cat("import numpy as np; from numpy.lib import format as F; d='", d, "';",
              "x=(np.arange(12, dtype=np.float32)*0.5-2).reshape(3,4);", "np.save(d+'/v1.npy', x);",
              "F.write_array(open(d+'/v2.npy','wb'), x.astype(np.float16), version=(2,0));",
              "F.write_array(open(d+'/v3.npy','wb'), np.arange(5, dtype=np.int64), version=(3,0));",
              "np.savez(d+'/s.npz', x=x, b=np.array([True, False]));",
              "np.savez_compressed(d+'/c.npz', y=np.arange(1000, dtype=np.int32), x=x)")),
      0);
  Array v1 = load_npy(t / "v1.npy");
  EXPECT_EQ(v1.shape, (std::vector<int64_t>{3, 4}));
  std::vector<float> want(12);
  for (int i = 0; i < 12; ++i) want[i] = i * 0.5f - 2;
  EXPECT_EQ(v1.to_f32(), want);
  Array v2 = load_npy(t / "v2.npy");
  EXPECT_EQ(v2.dtype, DType::F16);
  EXPECT_EQ(v2.to_f32(), want);
  EXPECT_EQ(load_npy(t / "v3.npy").to_i64(), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  NamedArrays s = load_npz(t / "s.npz");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].first, "x");
  EXPECT_EQ(s[0].second.to_f32(), want);
  EXPECT_EQ(s[1].second.dtype, DType::Bool);
  EXPECT_EQ(s[1].second.data, (Bytes{1, 0}));
  NamedArrays c = load_npz(t / "c.npz");
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].first, "y");
  std::vector<int64_t> r = c[0].second.to_i64();
  ASSERT_EQ(r.size(), 1000u);
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(r[i], i);
  EXPECT_EQ(c[1].second.to_f32(), want);

  // numpy reads what we write.
  NamedArrays ours = {{"p", Array::from_f32({2, 2}, want.data())}, {"q", Array(DType::I8, {3})}};
  ours[1].second.as<int8_t>()[2] = -9;
  save_npz(t / "o.npz", ours);
  save_npy(t / "o.npy", ours[0].second.converted(DType::F16));
  EXPECT_EQ(run_python(cat("import numpy as np; d='", d, "'; z=np.load(d+'/o.npz');",
                           "assert z['p'].dtype==np.float32 and z['p'].shape==(2,2);",
                           "assert (z['p'].ravel()==np.arange(4)*0.5-2).all();",
                           "assert z['q'].dtype==np.int8 and list(z['q'])==[0,0,-9];",
                           "o=np.load(d+'/o.npy'); assert o.dtype==np.float16 and o[1,1]==-0.5")),
            0);
}

// ---------------------------------------------------------------------------------------------
// zip

TEST(IOZip, ReadsZip64Records) {
  // One stored entry whose sizes and offset live only in zip64 extra fields, found through a
  // zip64 end record and locator (as torch writes archives above 4 GiB).
  TempDir t;
  Array a(DType::I32, {2});
  a.as<int32_t>()[0] = 41;
  a.as<int32_t>()[1] = -42;
  save_npz(t / "plain.npz", {{"v", a}});
  zip::Reader plain(t / "plain.npz");
  const zip::Entry& pe = plain.entries().at(0);
  std::vector<uint8_t> member = plain.read(pe);

  std::vector<uint8_t> z;
  auto w16 = [&](uint64_t v) {
    for (int i = 0; i < 2; ++i) z.push_back(uint8_t(v >> (8 * i)));
  };
  auto w32 = [&](uint64_t v) {
    for (int i = 0; i < 4; ++i) z.push_back(uint8_t(v >> (8 * i)));
  };
  auto w64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) z.push_back(uint8_t(v >> (8 * i)));
  };
  const std::string name = "v.npy";
  w32(0x04034b50), w16(45), w16(0), w16(0), w16(0), w16(0x21), w32(pe.crc);
  w32(0xFFFFFFFF), w32(0xFFFFFFFF), w16(name.size()), w16(20);
  z.insert(z.end(), name.begin(), name.end());
  w16(1), w16(16), w64(member.size()), w64(member.size());
  z.insert(z.end(), member.begin(), member.end());
  const uint64_t cd = z.size();
  w32(0x02014b50), w16(45), w16(45), w16(0), w16(0), w16(0), w16(0x21), w32(pe.crc);
  w32(0xFFFFFFFF), w32(0xFFFFFFFF), w16(name.size()), w16(28), w16(0), w16(0), w16(0), w32(0);
  w32(0xFFFFFFFF);
  z.insert(z.end(), name.begin(), name.end());
  w16(1), w16(24), w64(member.size()), w64(member.size()), w64(0);
  const uint64_t cd_size = z.size() - cd, rec = z.size();
  w32(0x06064b50), w64(44), w16(45), w16(45), w32(0), w32(0), w64(1), w64(1), w64(cd_size), w64(cd);
  w32(0x07064b50), w32(0), w64(rec), w32(1);
  w32(0x06054b50), w16(0), w16(0), w16(0xFFFF), w16(0xFFFF), w32(0xFFFFFFFF), w32(0xFFFFFFFF),
      w16(0);
  spit(t / "z64.npz", z);
  NamedArrays r = load_npz(t / "z64.npz");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].first, "v");
  EXPECT_EQ(r[0].second.to_i64(), (std::vector<int64_t>{41, -42}));
}

TEST(IOZip, WriterOutputIsReadable) {
  std::vector<uint8_t> buf;
  zip::Writer w([&](const void* p, size_t n) {
    buf.insert(buf.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  });
  std::string a = "hello ", b = "world";
  w.add("dir/x.txt", {{a.data(), a.size()}, {b.data(), b.size()}});
  w.add("empty", {});
  w.finish();
  TempDir t;
  spit(t / "w.zip", buf);
  zip::Reader r(t / "w.zip");
  ASSERT_EQ(r.entries().size(), 2u);
  std::vector<uint8_t> x = r.read(*r.find("dir/x.txt"));
  EXPECT_EQ(std::string(x.begin(), x.end()), "hello world");
  EXPECT_EQ(r.find("dir/x.txt")->crc, 0x0d4a1185u);  // crc32("hello world")
  EXPECT_TRUE(r.read(*r.find("empty")).empty());
  EXPECT_EQ(r.find("nope"), nullptr);
}

// ---------------------------------------------------------------------------------------------
// .pth

namespace {

// Emits pickle opcodes by hand (protocol 2, as torch.save writes them).
struct Pickle {
  std::string b = "\x80\x02";
  Pickle& op(const std::string& s) {
    b += s;
    return *this;
  }
  Pickle& global(const std::string& m, const std::string& n) {
    return op("c" + m + "\n" + n + "\n");
  }
  Pickle& str(const std::string& s) {
    b += 'X';
    for (int i = 0; i < 4; ++i) b += char((s.size() >> (8 * i)) & 0xFF);
    b += s;
    return *this;
  }
  Pickle& i1(int v) { return op(std::string("K") + char(v)); }
  Pickle& binput(int i) { return op(std::string("q") + char(i)); }
  Pickle& ordered_dict() { return global("collections", "OrderedDict").op(")R"); }
  // _rebuild_tensor_v2(('storage', FloatStorage, key, 'cpu', numel), offset, size, stride, ...)
  Pickle& tensor(const std::string& key, int numel, int offset, std::vector<int> size,
                 std::vector<int> stride, const std::string& storage = "FloatStorage") {
    global("torch._utils", "_rebuild_tensor_v2").op("(");
    op("(").str("storage").global("torch", storage).str(key).str("cpu").i1(numel).op("tQ");
    i1(offset).op("(");
    for (int s : size) i1(s);
    op("t(");
    for (int s : stride) i1(s);
    op("t\x89").ordered_dict().op("tR");
    return *this;
  }
};

std::string write_pth(const std::string& path, const std::string& pickle,
                      const std::vector<std::pair<std::string, std::string>>& storages,
                      const std::string& prefix = "archive/", const std::string& byteorder = "") {
  std::vector<uint8_t> buf;
  zip::Writer w([&](const void* p, size_t n) {
    buf.insert(buf.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
  });
  w.add(prefix + "data.pkl", {{pickle.data(), pickle.size()}});
  for (auto& [key, bytes] : storages) w.add(prefix + "data/" + key, {{bytes.data(), bytes.size()}});
  w.add(prefix + "version", {{"3\n", 2}});
  if (!byteorder.empty()) w.add(prefix + "byteorder", {{byteorder.data(), byteorder.size()}});
  w.finish();
  spit(path, buf);
  return path;
}

std::string floats(std::vector<float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// The torch.save files of make_torch_files.py, made once per test run.
const std::string& torch_files() {
  static TempDir dir;
  static std::string made = [] {
    if (!have_python_module("torch")) return std::string();
    std::string cmd =
        cat(kPython, " ", UVIT_TEST_SOURCE, "/unit/make_torch_files.py ", dir.dir.string());
    return std::system(cmd.c_str()) == 0 ? dir.dir.string() : std::string();
  }();
  return made;
}

float v(int i) { return i * 0.25f - 3; }  // make_torch_files.py's values

void expect_tensor(const NamedArrays& r, size_t i, const std::string& name, DType dt,
                   std::vector<int64_t> shape, std::vector<float> values) {
  ASSERT_LT(i, r.size());
  EXPECT_EQ(r[i].first, name);
  EXPECT_EQ(r[i].second.dtype, dt) << name;
  EXPECT_EQ(r[i].second.shape, shape) << name;
  EXPECT_EQ(r[i].second.to_f32(), values) << name;
}

void check_torch_state_dict(const NamedArrays& r) {
  ASSERT_EQ(r.size(), 14u);
  std::vector<float> f32, big;
  for (int i = 0; i < 12; ++i) f32.push_back(v(i));
  for (int i = 0; i < 24; ++i) big.push_back(v(i));
  expect_tensor(r, 0, "f32", DType::F32, {3, 4}, f32);
  expect_tensor(r, 1, "f16", DType::F16, {2, 3}, {v(0), v(1), v(2), v(3), v(4), v(5)});
  expect_tensor(r, 2, "bf16", DType::BF16, {5}, {v(0), v(1), v(2), v(3), v(4)});
  expect_tensor(r, 3, "f64", DType::F64, {2, 2}, {v(0), v(1), v(2), v(3)});
  expect_tensor(r, 4, "i64", DType::I64, {6}, {-3, -2, -1, 0, 1, 2});
  expect_tensor(r, 5, "i32", DType::I32, {4}, {-2, -1, 0, 1});
  expect_tensor(r, 6, "u8", DType::U8, {6}, {250, 251, 252, 253, 254, 255});
  expect_tensor(r, 7, "bool", DType::Bool, {3}, {1, 0, 1});
  std::vector<float> tr;  // big.t(): tr[i][j] = big[j][i]
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) tr.push_back(big[j * 6 + i]);
  expect_tensor(r, 8, "transposed", DType::F32, {6, 4}, tr);
  expect_tensor(r, 9, "slice", DType::F32, {6}, {v(5), v(6), v(7), v(8), v(9), v(10)});
  expect_tensor(r, 10, "row", DType::F32, {6}, {v(6), v(7), v(8), v(9), v(10), v(11)});
  expect_tensor(r, 11, "col", DType::F32, {4}, {v(2), v(8), v(14), v(20)});
  expect_tensor(r, 12, "scalar", DType::F32, {}, {2.5f});
  expect_tensor(r, 13, "empty", DType::F32, {0, 3}, {});
}

}  // namespace

TEST(IOPth, HandBuiltPickleWithViews) {
  TempDir t;
  // "a": a 2x3 view with strides (1, 2) at offset 1 of storage 0 (7 floats); "b": 2 floats.
  Pickle p;
  p.ordered_dict().binput(0).op("(");
  p.str("a").tensor("0", 7, 1, {2, 3}, {1, 2});
  p.str("b").tensor("k1", 2, 0, {2}, {1}, "DoubleStorage");
  p.str("step").i1(5);  // a non-tensor value is skipped
  p.op("u.");
  std::string f64(16, '\0');
  double d[] = {-1.25, 8};
  std::memcpy(f64.data(), d, 16);
  write_pth(t / "h.pth", p.b, {{"0", floats({0, 1, 2, 3, 4, 5, 6})}, {"k1", f64}});
  NamedArrays r = load_pth(t / "h.pth");
  ASSERT_EQ(r.size(), 2u);
  expect_tensor(r, 0, "a", DType::F32, {2, 3}, {1, 3, 5, 2, 4, 6});
  EXPECT_EQ(r[1].first, "b");
  EXPECT_EQ(r[1].second.dtype, DType::F64);
  EXPECT_EQ(r[1].second.as<double>()[0], -1.25);
  expect_same(r, load_weights(t / "h.pth"));

  // A view reaching past its storage is refused.
  Pickle q;
  q.ordered_dict().op("(").str("a").tensor("0", 7, 2, {2, 3}, {1, 2}).op("u.");
  write_pth(t / "o.pth", q.b, {{"0", floats({0, 1, 2, 3, 4, 5, 6})}});
  EXPECT_NE(error_of([&] { load_pth(t / "o.pth"); }).find("exceeds its storage"),
            std::string::npos);
  // A storage entry of the wrong size is refused.
  write_pth(t / "s.pth", p.b, {{"0", floats({0, 1, 2})}, {"k1", f64}});
  EXPECT_NE(error_of([&] { load_pth(t / "s.pth"); }).find("expected 28"), std::string::npos);
  // Any archive folder name works.
  write_pth(t / "n.pth", p.b, {{"0", floats({0, 1, 2, 3, 4, 5, 6})}, {"k1", f64}}, "my_model/");
  expect_same(r, load_pth(t / "n.pth"));
  // torch >= 2.1 writes a byteorder record; "little" is fine, "big" is refused.
  std::vector<std::pair<std::string, std::string>> st = {{"0", floats({0, 1, 2, 3, 4, 5, 6})},
                                                         {"k1", f64}};
  write_pth(t / "l.pth", p.b, st, "archive/", "little");
  expect_same(r, load_pth(t / "l.pth"));
  write_pth(t / "b.pth", p.b, st, "archive/", "big");
  EXPECT_NE(error_of([&] { load_pth(t / "b.pth"); }).find("not little-endian"), std::string::npos);
}

// Fuzzing finding (docs/fuzzing.md): stride 0 let a view of a 1-element storage claim 255^6
// elements, and read_all asked for a petabyte; now a one-line error before any allocation.
TEST(IOPth, ExpandedViewLargerThanItsStorageIsRefused) {
  TempDir t;
  Pickle p;
  p.ordered_dict().op("(").str("w");
  p.tensor("0", 1, 0, {255, 255, 255, 255, 255, 255}, {0, 0, 0, 0, 0, 0}).op("u.");
  write_pth(t / "e.pth", p.b, {{"0", floats({1})}});
  const std::string e = error_of([&] { load_weights(t / "e.pth"); });
  EXPECT_NE(e.find("e.pth: corrupt or unsupported pickle: tensor view of 274941996890625 "
                   "elements"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("larger than its storage of 1 elements"), std::string::npos) << e;
  // A stride-0 view within its storage's element count still loads (and repeats the element).
  Pickle q;
  q.ordered_dict().op("(").str("w").tensor("0", 3, 1, {2}, {0}).op("u.");
  write_pth(t / "r.pth", q.b, {{"0", floats({1, 2, 3})}});
  expect_tensor(load_weights(t / "r.pth"), 0, "w", DType::F32, {2}, {2, 2});
}

TEST(IOPth, RefusesForeignGlobals) {
  TempDir t;
  // What pickle.dumps of an object whose __reduce__ returns (os.system, ('id',)) looks like.
  Pickle p;
  p.global("os", "system").binput(0).str("id").op("\x85R.");
  write_pth(t / "evil.pth", p.b, {});
  EXPECT_EQ(error_of([&] { load_pth(t / "evil.pth"); }),
            t / "evil.pth" +
                ": unsupported pickle global 'os.system' (only state_dicts of tensors are loaded)");
  // The same via STACK_GLOBAL (protocol 4).
  Pickle s;
  s.b = "\x80\x04";
  s.op("\x8c\x05posix\x8c\x06system\x93").str("id").op("\x85R.");
  write_pth(t / "evil4.pth", s.b, {});
  EXPECT_NE(error_of([&] { load_pth(t / "evil4.pth"); }).find("'posix.system'"), std::string::npos);
  // builtins.eval hidden inside a dict value is refused too.
  Pickle d;
  d.ordered_dict().op("(").str("x").global("builtins", "eval").str("1").op("\x85Ru.");
  write_pth(t / "evil_d.pth", d.b, {});
  EXPECT_NE(error_of([&] { load_pth(t / "evil_d.pth"); }).find("'builtins.eval'"),
            std::string::npos);
}

TEST(IOPth, RejectsNonTorchFiles) {
  TempDir t;
  // A legacy file: the magic number, the protocol version, sys_info, the object and the storage
  // keys, each a pickle (here an empty dict and no storages).
  const std::string magic = std::string("\x80\x02\x8a\x0a", 4) + "0123456789.";
  const std::string rest = std::string("\x80\x02M\xe9\x03.\x80\x02}.\x80\x02}.\x80\x02].", 18);
  spit(t / "legacy.pth", magic + rest);
  EXPECT_EQ(error_of([&] { load_weights(t / "legacy.pth"); }),
            t / "legacy.pth" +
                ": legacy (pre-1.6) torch serialization is not supported; re-save with "
                "torch.save(..., _use_new_zipfile_serialization=True)");
  // Cut short, it is called truncated (docs/ux_audit.md round 6 follow-up).
  spit(t / "cut.pth", magic + rest.substr(0, 9));
  EXPECT_EQ(
      error_of([&] { load_weights(t / "cut.pth"); }),
      t / "cut.pth" +
          ": truncated: the file ends at byte 24 inside its pickle (a legacy torch.save file; "
          "the download or copy stopped early)");
  save_safetensors(t / "st.pth", {{"a", Array(DType::F32, {1})}});
  EXPECT_NE(error_of([&] { load_weights(t / "st.pth"); }).find("not a PyTorch zip archive"),
            std::string::npos);
  save_npz(t / "z.pth", {{"a", Array(DType::F32, {1})}});
  EXPECT_NE(error_of([&] { load_weights(t / "z.pth"); }).find("no <folder>/data.pkl"),
            std::string::npos);
  save_npz(t / "z.safetensors", {{"a", Array(DType::F32, {1})}});
  EXPECT_NE(error_of([&] { load_weights(t / "z.safetensors"); }).find("not safetensors"),
            std::string::npos);
  spit(t / "w.onnx", "onnx");
  EXPECT_NE(error_of([&] { load_weights(t / "w.onnx"); }).find("unknown weights format"),
            std::string::npos);
  // A missing file or a folder is named as such, not as an unknown format (docs/ux_audit.md).
  EXPECT_EQ(error_of([&] { load_weights(t / "missing"); }), t / "missing" + ": no such file");
  EXPECT_EQ(error_of([&] { load_weights(t.dir.string()); }),
            t.dir.string() + ": is a folder, not a weights file");
}

TEST(IOPth, LoadsTorchSaveFiles) {
  const std::string& d = torch_files();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  check_torch_state_dict(load_pth(d + "/sd.pth"));
  check_torch_state_dict(load_pth(d + "/proto4.pth"));
  check_torch_state_dict(load_weights(d + "/nested.pth"));  // {"epoch", "state_dict", "note"}
  NamedArrays lin = load_pth(d + "/linear.pth");            // OrderedDict with _metadata (BUILD)
  ASSERT_EQ(lin.size(), 2u);
  expect_tensor(lin, 0, "weight", DType::F32, {2, 3}, {v(0), v(1), v(2), v(3), v(4), v(5)});
  expect_tensor(lin, 1, "bias", DType::F32, {2}, {v(0), v(1)});
  NamedArrays par = load_pth(d + "/param.pth");  // nn.Parameter -> _rebuild_parameter
  expect_tensor(par, 0, "w", DType::F32, {4}, {v(0), v(1), v(2), v(3)});
  NamedArrays model = load_pth(d + "/model.pth");  // {"model": {...}}
  expect_tensor(model, 0, "a", DType::F32, {3}, {v(0), v(1), v(2)});
  EXPECT_NE(error_of([&] { load_pth(d + "/legacy.pth"); }).find("legacy (pre-1.6)"),
            std::string::npos);
  // torch's legacy file without its last 4 bytes: the storage's size is walked past the end.
  TempDir t;
  std::vector<uint8_t> b = slurp(d + "/legacy.pth");
  b.resize(b.size() - 4);
  spit(t / "cut.pth", b);
  EXPECT_NE(error_of([&] { load_pth(t / "cut.pth"); }).find("cut.pth: truncated: storage "),
            std::string::npos);
}

// DiT / Skip-DiT train.py checkpoints: the "ema" entry is read (as download.py:find_model does),
// past AdamW state and an argparse.Namespace.
TEST(IOPth, TrainingCheckpointLoadsItsEma) {
  const std::string& d = torch_files();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  NamedArrays ema = load_pth(d + "/train.pt");  // {"model", "ema", "opt", "args"}
  ASSERT_EQ(ema.size(), 2u);
  expect_tensor(ema, 0, "weight", DType::F32, {2, 3}, {v(0), v(1), v(2), v(3), v(4), v(5)});
  expect_tensor(ema, 1, "bias", DType::F32, {2}, {v(0), v(1)});
  expect_same(ema, load_weights(d + "/train.pt"));
  // An "ema" entry without tensors does not hide "model".
  expect_tensor(load_pth(d + "/ema_meta.pt"), 0, "a", DType::F32, {3}, {v(0), v(1), v(2)});
}

TEST(IOPth, DdpPrefixIsStrippedWhenEveryNameHasIt) {
  const std::string& d = torch_files();
  if (d.empty()) GTEST_SKIP() << "python3-torch is not available to /usr/bin/python3";
  const NamedArrays raw = load_pth(d + "/ddp.pth");  // load_pth keeps the names as stored
  ASSERT_EQ(raw.size(), 2u);
  EXPECT_EQ(raw[0].first, "module.weight");
  const NamedArrays w = load_weights(d + "/ddp.pth");
  expect_tensor(w, 0, "weight", DType::F32, {2, 3}, {v(0), v(1), v(2), v(3), v(4), v(5)});
  expect_tensor(w, 1, "bias", DType::F32, {2}, {v(0), v(1)});
  TempDir t;
  save_safetensors(t / "ddp.safetensors", raw);
  expect_same(w, load_weights(t / "ddp.safetensors"));
  const NamedArrays some = load_weights(d + "/some_module.pth");  // only one name has it: kept
  ASSERT_EQ(some.size(), 2u);
  EXPECT_EQ(some[0].first, "module.a");
  EXPECT_EQ(some[1].first, "b");
}

TEST(IOPth, NamespaceIsAnInertPlaceholder) {
  TempDir t;
  // {"args": argparse.Namespace(lr=3) (NEWOBJ + BUILD), "w": tensor}, as torch.save writes it.
  Pickle p;
  p.op("}(").str("args").global("argparse", "Namespace").op(")\x81}(").str("lr").i1(3).op("ub");
  p.str("w").tensor("0", 2, 0, {2}, {1}).op("u.");
  write_pth(t / "ns.pth", p.b, {{"0", floats({1, 2})}});
  NamedArrays r = load_pth(t / "ns.pth");
  ASSERT_EQ(r.size(), 1u);
  expect_tensor(r, 0, "w", DType::F32, {2}, {1, 2});
  // It is never called, and other classes stay refused.
  Pickle call;
  call.op("}(").str("args").global("argparse", "Namespace").op(")Ru.");
  write_pth(t / "call.pth", call.b, {});
  EXPECT_NE(error_of([&] {
              load_pth(t / "call.pth");
            }).find("calling argparse.Namespace is not supported"),
            std::string::npos);
  Pickle other;
  other.op("}(").str("net").global("models", "DiT").op(")\x81u.");
  write_pth(t / "other.pth", other.b, {});
  EXPECT_EQ(
      error_of([&] { load_pth(t / "other.pth"); }),
      t / "other.pth" +
          ": unsupported pickle global 'models.DiT' (only state_dicts of tensors are loaded)");
  // A Namespace instead of a dict of tensors is a one-line error.
  Pickle top;
  top.global("argparse", "Namespace").op(")\x81.");
  write_pth(t / "top.pth", top.b, {});
  EXPECT_EQ(
      error_of([&] { load_pth(t / "top.pth"); }),
      t / "top.pth" + ": the pickle holds an argparse.Namespace object, not a dict of tensors");
}

TEST(IOPth, CorruptInputsThrow) {
  TempDir t;
  std::string good;
  const std::string& d = torch_files();
  if (!d.empty()) {
    good = d + "/sd.pth";
  } else {
    Pickle p;
    p.ordered_dict().op("(").str("a").tensor("0", 7, 1, {2, 3}, {1, 2}).op("u.");
    good = write_pth(t / "g.pth", p.b, {{"0", floats({0, 1, 2, 3, 4, 5, 6})}});
  }
  auto load = [](const std::string& p) { load_pth(p); };
  check_truncations(good, t / "b.pth", load);
  EXPECT_GT(check_flips(good, t / "b.pth", load), 100);

  // Mutate the pickle itself and re-zip it with a valid CRC, so the unpickler sees the damage.
  zip::Reader z(good);
  std::string prefix = z.entries()[0].name.substr(0, z.entries()[0].name.find('/') + 1);
  std::vector<uint8_t> pkl = z.read(*z.find(prefix + "data.pkl"));
  std::vector<std::pair<std::string, std::string>> storages;
  for (const zip::Entry& e : z.entries())
    if (e.name.rfind(prefix + "data/", 0) == 0) {
      std::vector<uint8_t> b = z.read(e);
      storages.emplace_back(e.name.substr(prefix.size() + 5), std::string(b.begin(), b.end()));
    }
  std::mt19937 rng(99);
  for (int k = 0; k < 300; ++k) {
    std::string m(pkl.begin(), pkl.end());
    int flips = 1 + int(rng() % 3);
    for (int j = 0; j < flips; ++j) m[rng() % m.size()] ^= char(1 + rng() % 255);
    write_pth(t / "m.pth", m, storages, prefix);
    threw_uvit_error([&] { load_pth(t / "m.pth"); });
  }
  for (size_t n = 0; n < pkl.size(); ++n) {
    write_pth(t / "m.pth", std::string(pkl.begin(), pkl.begin() + long(n)), storages, prefix);
    EXPECT_TRUE(threw_uvit_error([&] { load_pth(t / "m.pth"); })) << "pickle cut at " << n;
  }
}

// ---------------------------------------------------------------------------------------------
// files

TEST(IOFile, AtomicWriteReplacesAndLeavesNoTemp) {
  TempDir t;
  std::string p = t / "f.bin";
  write_file_atomic(p, "old contents", 12);
  write_file_atomic(p, "new", 3);
  std::vector<uint8_t> b = read_file(p);
  EXPECT_EQ(std::string(b.begin(), b.end()), "new");
  int files = 0;
  for (auto& e : fs::directory_iterator(t.dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1);
  write_file_atomic(p, "", 0);
  EXPECT_TRUE(read_file(p).empty());
}

TEST(IOFile, FailedWriteKeepsOldFile) {
  TempDir t;
  std::string p = t / "f.bin";
  write_file_atomic(p, "precious", 8);
  // Make the write itself fail: a file size limit turns write(2) into EFBIG (even for root).
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &lim), 0);
  std::vector<uint8_t> big(1 << 16, 7);
  std::string msg = error_of([&] { write_file_atomic(p, big.data(), big.size()); });
  setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);
  EXPECT_NE(msg.find("write error"), std::string::npos) << msg;
  std::vector<uint8_t> b = read_file(p);
  EXPECT_EQ(std::string(b.begin(), b.end()), "precious");
  EXPECT_EQ(std::distance(fs::directory_iterator(t.dir), fs::directory_iterator()), 1);

  // The same through a writer: save_safetensors onto a path that is a directory cannot rename.
  fs::create_directory(t.dir / "d.safetensors");
  EXPECT_NE(
      error_of([&] { save_safetensors(t / "d.safetensors", all_dtypes()); }).find("cannot rename"),
      std::string::npos);
  EXPECT_EQ(std::distance(fs::directory_iterator(t.dir), fs::directory_iterator()),
            2);  // f.bin and the directory; no temporary left behind
  EXPECT_NE(error_of([&] { read_file(t / "nope"); }).find("cannot open"), std::string::npos);
  EXPECT_NE(error_of([&] { read_file(t.dir.string()); }).find("is a directory"), std::string::npos);
}
