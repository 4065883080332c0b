// Parameters moved one tensor at a time (docs/benchmarks.md, "Peak memory of big models"): the
// official initialisation against hand-computed draws (tensor i draws from Philox(seed, i)), the
// streamed checkpoint byte for byte the file of export_weights, loads from a state_dict and from a
// file giving the same parameters, the streamed safetensors writer refusing a tensor of the wrong
// size; and the .npy header reader that npy_folder opens its files with.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "error_of.hpp"
#include "temp_dir.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

using namespace uvit;
using uvit_test::error_of;
using uvit_test::TempDir;

namespace {

std::vector<uint8_t> bytes_of(const std::string& path) { return read_file(path); }

size_t index_of(const ParamTable& t, const std::string& name) {
  const auto& es = t.entries();
  for (size_t i = 0; i < es.size(); ++i)
    if (es[i].name == name) return i;
  ADD_FAILURE() << "no tensor " << name;
  return 0;
}

// DiT's xavier_uniform and N(0, 0.02) embeddings and U-ViT's trunc_normal(0.02), recomputed here
// from the counter-based draws of each tensor's own stream.
TEST(ParamStream, InitRandomDrawsEachTensorFromItsOwnStream) {
  auto be = make_cpu_backend();
  {
    auto net = make_network(load_config("fmnist_dit_tiny"), *be);
    net->init_random(7);
    const ParamTable& t = net->table();
    const float* p = net->params();
    const ParamEntry& qkv = t.at("blocks.1.attn.qkv.weight");
    const Philox r(7, index_of(t, qkv.name));
    const double bound = std::sqrt(6.0 / double(qkv.shape[0] + qkv.shape[1]));
    for (size_t k : {size_t(0), size_t(1), qkv.numel / 2, qkv.numel - 1})
      EXPECT_EQ(p[qkv.offset + k], float((2.0 * r.uniform(k) - 1.0) * bound)) << k;
    const ParamEntry& emb = t.at("y_embedder.embedding_table.weight");
    const Philox re(7, index_of(t, emb.name));
    for (size_t k : {size_t(0), emb.numel - 1})
      EXPECT_EQ(p[emb.offset + k], 0.02f * re.normal(k)) << k;
    const ParamEntry& ada = t.at("blocks.0.adaLN_modulation.1.weight");
    EXPECT_TRUE(std::all_of(p + ada.offset, p + ada.offset + ada.numel,
                            [](float v) { return v == 0.f; }));
  }
  {
    auto net = make_network(load_config("fmnist_uvit_tiny"), *be);
    net->init_random(9);
    const ParamTable& t = net->table();
    const ParamEntry& fc = t.at("in_blocks.0.mlp.fc1.weight");
    const Philox r(9, index_of(t, fc.name));
    for (size_t k : {size_t(3), fc.numel - 2})
      EXPECT_EQ(net->params()[fc.offset + k], std::clamp(0.02f * r.normal(k), -2.f, 2.f)) << k;
    const ParamEntry& ln = t.at("in_blocks.0.norm1.weight");
    EXPECT_EQ(net->params()[ln.offset + ln.numel - 1], 1.f);
  }
}

// The trainer's streamed checkpoint is the file of export_weights, byte for byte; loading it (from
// the file, or as a state_dict) gives back the same parameters.
TEST(ParamStream, StreamedSaveIsTheExportedFile) {
  TempDir d("uvit_pstream");
  auto be = make_cpu_backend();
  const Config c = load_config("fmnist_mdt_tiny");
  auto a = make_network(c, *be);
  a->init_random(4);
  const std::map<std::string, std::string> meta = {{"step", "3"}};
  a->save_weights(d / "streamed.safetensors", meta);
  save_safetensors(d / "exported.safetensors", a->export_weights(), meta);
  EXPECT_EQ(bytes_of(d / "streamed.safetensors"), bytes_of(d / "exported.safetensors"));

  const size_t P = a->num_params();
  const std::vector<float> want(a->params(), a->params() + P);
  auto b = make_network(c, *be);
  b->load_file(d / "streamed.safetensors");
  EXPECT_TRUE(std::equal(want.begin(), want.end(), b->params()));
  auto e = make_network(c, *be);
  e->load(load_safetensors(d / "streamed.safetensors"), "streamed");
  EXPECT_TRUE(std::equal(want.begin(), want.end(), e->params()));
  EXPECT_NE(error_of([&] { e->load({}, "empty.safetensors"); }).find("empty.safetensors"),
            std::string::npos);
}

TEST(ParamStream, StreamedWriterChecksEachTensorsBytes) {
  TempDir d("uvit_pstream");
  const std::vector<TensorInfo> ts = {{"a", DType::F32, {2, 3}}, {"b", DType::F16, {4}}};
  const float av[6] = {1, 2, 3, 4, 5, 6};
  const uint16_t bv[4] = {0x3c00, 0x4000, 0x4200, 0x4400};
  save_safetensors(
      d / "ok.safetensors", ts,
      [&](size_t i, const ByteSink& sink) {
        if (i == 0) {  // in two pieces
          sink(av, 8);
          sink(av + 2, 16);
        } else {
          sink(bv, 8);
        }
      },
      {{"k", "v"}});
  NamedArrays want;
  want.emplace_back("a", Array::from_f32({2, 3}, av));
  Array b(DType::F16, {4});
  std::memcpy(b.data.data(), bv, 8);
  want.emplace_back("b", std::move(b));
  save_safetensors(d / "whole.safetensors", want, {{"k", "v"}});
  EXPECT_EQ(bytes_of(d / "ok.safetensors"), bytes_of(d / "whole.safetensors"));

  const std::string e = error_of([&] {
    save_safetensors(d / "bad.safetensors", ts, [&](size_t, const ByteSink& sink) {
      sink(av, 4);
    });
  });
  EXPECT_NE(e.find("bad.safetensors: tensor 'a' wrote 4 bytes, shape [2, 3] needs 24"),
            std::string::npos)
      << e;
  EXPECT_FALSE(std::filesystem::exists(d / "bad.safetensors"));
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), b.size());
}

// The header alone: what load_npy reads, the same errors for a file whose size disagrees.
TEST(NpyHeader, MatchesLoadNpyAndItsErrors) {
  TempDir d("uvit_npyh");
  Array a(DType::F16, {2, 3, 5});
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = uint8_t(i * 7);
  save_npy(d / "a.npy", a);
  const NpyInfo h = read_npy_header(d / "a.npy");
  EXPECT_EQ(h.dtype, DType::F16);
  EXPECT_EQ(h.shape, (std::vector<int64_t>{2, 3, 5}));
  const std::vector<uint8_t> raw = bytes_of(d / "a.npy");
  EXPECT_EQ(h.data_offset + a.data.size(), raw.size());
  EXPECT_TRUE(std::equal(a.data.begin(), a.data.end(), raw.begin() + long(h.data_offset)));

  auto same_error = [&](const std::string& name, const std::vector<uint8_t>& b) {
    write_bytes(d / name, b);
    const std::string e1 = error_of([&] { load_npy(d / name); });
    const std::string e2 = error_of([&] { read_npy_header(d / name); });
    EXPECT_FALSE(e1.empty()) << name;
    EXPECT_EQ(e1, e2) << name;
    EXPECT_NE(e2.find(name), std::string::npos) << e2;
  };
  same_error("short_body.npy", std::vector<uint8_t>(raw.begin(), raw.end() - 1));
  std::vector<uint8_t> longer = raw;
  longer.push_back(0);
  same_error("long_body.npy", longer);
  same_error("header_cut.npy", std::vector<uint8_t>(raw.begin(), raw.begin() + 40));
  same_error("prefix_cut.npy", std::vector<uint8_t>(raw.begin(), raw.begin() + 9));
  std::vector<uint8_t> magic = raw;
  magic[1] = 'X';
  same_error("magic.npy", magic);
  same_error("empty.npy", {});
}

// npy_folder reads only headers at open; a file that changes afterwards is a one-line error naming
// it when its item is loaded.
TEST(NpyHeader, NpyFolderReadsDataAtLoad) {
  TempDir d("uvit_npyf");
  std::vector<float> v(2 * 4 * 6);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  save_npy(d / "c_0.npy", Array::from_f32({2, 4, 6}, v.data()));
  save_npy(d / "c_1.npy", Array::from_f32({2, 2, 2}, v.data()));
  auto ds = make_npy_folder_dataset(d.dir.string(), 2, 4, 6, 2, 0);
  ASSERT_EQ(ds->size(), 2);
  const DrawRng rng{};
  EXPECT_EQ(ds->valid_size(1, rng), (std::array<int, 2>{2, 2}));
  std::vector<float> x(2 * 4 * 6, -1.f);
  ds->get(0, x.data(), nullptr, rng);
  EXPECT_EQ(x, v);
  const std::vector<uint8_t> raw = bytes_of(d / "c_1.npy");
  write_bytes(d / "c_1.npy", std::vector<uint8_t>(raw.begin(), raw.end() - 4));
  const std::string e = error_of([&] { ds->get(1, x.data(), nullptr, rng); });
  EXPECT_NE(e.find("c_1.npy: truncated"), std::string::npos) << e;
}

}  // namespace
