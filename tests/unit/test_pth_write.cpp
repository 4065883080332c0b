// The .pth writer's parts (docs/formats.md, "Writing .pth"): zip's CRC-32 on known vectors, the
// stored-entry writer's 64-byte alignment and zip64 records (forced by a low threshold, read back
// by our reader, Python's zipfile and torch.load), the pickle writer's opcodes as Python reads
// them, and save_pth read back by our own .pth reader.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "io/pickle_write.hpp"
#include "io/pth_write.hpp"
#include "io/zip.hpp"
#include "temp_dir.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {

const std::string kPython = "/usr/bin/python3";

bool have_torch() {
  return std::system((kPython + " -c 'import torch' >/dev/null 2>&1").c_str()) == 0;
}

// Runs a Python program (written to a file: no shell quoting) with arguments; its exit status.
int python(const uvit_test::TempDir& dir, const std::string& code, const std::string& args) {
  const std::string script = dir / "check.py";
  std::ofstream(script) << code;
  return std::system((kPython + " " + script + " " + args).c_str());
}

std::vector<uint8_t> zip_bytes(uint64_t zip64_at, uint64_t align,
                               const std::vector<std::pair<std::string, std::string>>& entries) {
  std::vector<uint8_t> buf;
  zip::Writer w(
      [&](const void* p, size_t n) {
        buf.insert(buf.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
      },
      zip64_at);
  for (auto& [name, s] : entries) w.add(name, {{s.data(), s.size()}}, align);
  w.finish();
  return buf;
}

void spit(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}

bool has_signature(const std::vector<uint8_t>& b, uint32_t sig) {
  for (size_t i = 0; i + 4 <= b.size(); ++i)
    if ((b[i] | b[i + 1] << 8 | b[i + 2] << 16 | uint32_t(b[i + 3]) << 24) == sig) return true;
  return false;
}

uint16_t rd16(const std::vector<uint8_t>& b, size_t at) { return uint16_t(b[at] | b[at + 1] << 8); }

Array filled(DType d, std::vector<int64_t> shape, uint8_t seed) {
  Array a(d, std::move(shape));
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = uint8_t(seed + 37 * i);
  if (d == DType::Bool)
    for (auto& x : a.data) x &= 1;
  return a;
}

}  // namespace

TEST(ZipCrc32, KnownVectors) {
  const std::string check = "123456789", fox = "The quick brown fox jumps over the lazy dog";
  EXPECT_EQ(zip::crc32(0, check.data(), check.size()), 0xCBF43926u);  // CRC-32's check value
  EXPECT_EQ(zip::crc32(0, fox.data(), fox.size()), 0x414FA339u);
  EXPECT_EQ(zip::crc32(0, nullptr, 0), 0u);
  // Chained: the CRC of a concatenation, so the writer can run over an entry's pieces.
  EXPECT_EQ(zip::crc32(zip::crc32(0, check.data(), 4), check.data() + 4, 5), 0xCBF43926u);
  EXPECT_EQ(zip::crc32(0x414FA339u, nullptr, 0), 0x414FA339u);  // an empty piece changes nothing
}

TEST(ZipWriter, AlignedEntriesStartAtMultiplesOf64AsTorchPlacesThem) {
  uvit_test::TempDir dir("uvit_zipw");
  // Names of 1..3 bytes move the header end across the 4-byte minimum of the padding field.
  std::vector<std::pair<std::string, std::string>> entries;
  for (int k = 0; k < 70; ++k)
    entries.push_back({std::string(1 + k % 3, 'a' + k % 26) + std::to_string(k),
                       std::string(size_t(k * 7), char('0' + k % 10))});
  const std::vector<uint8_t> b = zip_bytes(zip::kZip64Limit, 64, entries);
  spit(dir / "a.zip", b);
  const zip::Reader r(dir / "a.zip");
  ASSERT_EQ(r.entries().size(), entries.size());
  for (size_t k = 0; k < entries.size(); ++k) {
    const zip::Entry& e = r.entries()[k];
    EXPECT_EQ(e.name, entries[k].first);
    const size_t data =
        e.local_offset + 30 + rd16(b, e.local_offset + 26) + rd16(b, e.local_offset + 28);
    EXPECT_EQ(data % 64, 0u) << e.name;
    EXPECT_EQ(rd16(b, e.local_offset + 30 + e.name.size()), 0x4246) << "an 'FB' padding field";
    const std::vector<uint8_t> got = r.read(e);
    EXPECT_EQ(std::string(got.begin(), got.end()), entries[k].second);
  }
  // Without alignment nothing is padded (the .npz writer's output is unchanged).
  const std::vector<uint8_t> plain = zip_bytes(zip::kZip64Limit, 1, {{"x", "abc"}});
  EXPECT_EQ(rd16(plain, 28), 0);
  EXPECT_EQ(plain[30 + 1], 'a');
}

TEST(ZipWriter, Zip64RecordsReadBackByOurReaderAndPythonZipfile) {
  uvit_test::TempDir dir("uvit_zipw");
  // With the threshold at 100 bytes: a 150-byte entry needs zip64 sizes, the later entries zip64
  // offsets, the central directory a zip64 end record: every path a > 4 GiB file takes.
  const std::string big(150, 'x'), small = "hello world";
  const std::vector<uint8_t> b =
      zip_bytes(100, 64, {{"big", big}, {"dir/small", small}, {"empty", ""}});
  EXPECT_TRUE(has_signature(b, 0x06064b50u));  // zip64 end of central directory
  EXPECT_TRUE(has_signature(b, 0x07064b50u));  // its locator
  EXPECT_FALSE(has_signature(zip_bytes(zip::kZip64Limit, 64, {{"big", big}}), 0x06064b50u));
  spit(dir / "z64.zip", b);
  const zip::Reader r(dir / "z64.zip");
  ASSERT_EQ(r.entries().size(), 3u);
  const zip::Entry& e = *r.find("dir/small");
  EXPECT_GT(e.local_offset, 100u);
  EXPECT_EQ(e.crc, 0x0d4a1185u);
  const std::vector<uint8_t> got = r.read(e);
  EXPECT_EQ(std::string(got.begin(), got.end()), small);
  EXPECT_EQ(r.read(*r.find("big")).size(), 150u);
  EXPECT_EQ(python(dir,
                   "import sys, zipfile\n"
                   "z = zipfile.ZipFile(sys.argv[1])\n"
                   "assert z.testzip() is None\n"
                   "assert z.read('big') == b'x' * 150 and z.read('empty') == b''\n"
                   "assert z.read('dir/small') == b'hello world'\n"
                   "assert z.getinfo('dir/small').header_offset > 100\n",
                   dir / "z64.zip"),
            0);
}

TEST(PickleWriter, OpcodesAsPythonReadsThem) {
  pickle::Writer p;
  p.op(pickle::kMark);
  for (int64_t v : {0L, 255L, 256L, 65535L, 65536L, -1L, 2147483647L, -2147483648L, 2147483648L,
                    -2147483649L, 1L << 40})
    p.integer(v);
  p.str("").str("caf\xc3\xa9").op(pickle::kNewFalse).tuple({}).tuple({3, 70000});
  p.op(pickle::kEmptyDict).str("k").global("collections", "OrderedDict").op(pickle::kSetItem);
  p.op(pickle::kTuple).op(pickle::kStop);
  const std::string& b = p.bytes();
  // The shortest integer opcodes: BININT1, BININT2, BININT (signed), LONG1 beyond 32 bits.
  EXPECT_EQ(b.substr(0, 3), std::string("\x80\x02(", 3));
  EXPECT_EQ(b.substr(3, 2), std::string("K\0", 2));
  EXPECT_EQ(b.substr(5, 2), std::string("K\xff", 2));
  EXPECT_EQ(b.substr(7, 3), std::string("M\0\x01", 3));
  EXPECT_EQ(b.substr(10, 3), std::string("M\xff\xff", 3));
  EXPECT_EQ(b.substr(13, 5), std::string("J\0\0\x01\0", 5));
  EXPECT_EQ(b.substr(18, 5), std::string("J\xff\xff\xff\xff", 5));
  uvit_test::TempDir dir("uvit_pkl");
  spit(dir / "p.pkl", std::vector<uint8_t>(b.begin(), b.end()));
  EXPECT_EQ(python(dir,
                   "import collections, pickle, pickletools, sys\n"
                   "b = open(sys.argv[1], 'rb').read()\n"
                   "ops = [op.name for op, arg, pos in pickletools.genops(b)]\n"
                   "assert 'LONG1' in ops and 'BININT' in ops, ops\n"
                   "v = pickle.loads(b)\n"
                   "want = (0, 255, 256, 65535, 65536, -1, 2**31 - 1, -2**31, 2**31, -2**31 - 1,"
                   " 2**40, '', 'caf\\u00e9', False, (), (3, 70000), "
                   "{'k': collections.OrderedDict})\n"
                   "assert v == want, v\n",
                   dir / "p.pkl"),
            0);
}

TEST(SavePth, ReadBackByOurReaderInEveryDtype) {
  uvit_test::TempDir dir("uvit_pthw");
  NamedArrays sd;
  const DType all[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                       DType::I32, DType::I16, DType::I8,   DType::U8,  DType::Bool};
  uint8_t seed = 1;
  for (DType d : all) sd.emplace_back(std::string("t.") + dtype_name(d), filled(d, {3, 5}, seed++));
  sd.emplace_back("scalar", filled(DType::F32, {}, 9));
  sd.emplace_back("empty", filled(DType::F32, {0, 4}, 9));
  for (const char* entry : {"", "ema", "model", "state_dict"}) {
    const std::string path = dir / (std::string("w_") + entry + ".pth");
    save_pth(path, sd, entry);
    const NamedArrays r = load_pth(path);
    ASSERT_EQ(r.size(), sd.size()) << entry;
    for (size_t i = 0; i < sd.size(); ++i) {
      EXPECT_EQ(r[i].first, sd[i].first);
      EXPECT_EQ(r[i].second.dtype, sd[i].second.dtype) << sd[i].first;
      EXPECT_EQ(r[i].second.shape, sd[i].second.shape) << sd[i].first;
      EXPECT_EQ(r[i].second.data, sd[i].second.data) << sd[i].first;
    }
  }
  NamedArrays dup = {{"a", filled(DType::F32, {2}, 1)}, {"a", filled(DType::F32, {2}, 2)}};
  EXPECT_THROW(save_pth(dir / "dup.pth", dup), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "dup.pth"));
}

TEST(SavePth, Zip64ArchiveLoadsInTorch) {
  if (!have_torch()) GTEST_SKIP() << "no torch in " << kPython;
  uvit_test::TempDir dir("uvit_pthw");
  NamedArrays sd = {{"w", filled(DType::F32, {4, 40}, 3)},
                    {"h", filled(DType::F16, {7}, 4)},
                    {"b", filled(DType::BF16, {2, 3, 2}, 5)}};
  // From offset 64 on every size or offset takes the zip64 path a 4 GiB checkpoint takes.
  save_pth(dir / "z64.pth", sd, "ema", 64);
  save_safetensors(dir / "ref.safetensors", sd);
  const NamedArrays r = load_pth(dir / "z64.pth");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[2].second.data, sd[2].second.data);
  const std::string check = std::string(UVIT_TEST_SOURCE) + "/reference/pth_write_check.py";
  const std::string cmd = kPython + " " + check + " load " + (dir / "ref.safetensors") + " " +
                          (dir / "z64.pth") + " ema";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
}
