// int8 / int4 weight-only quantisation (docs/formats.md, "Quantised weights"): the integers and
// scales against hand computation, save -> load -> export giving exactly q * scale, forward
// outputs against the fp32 network with the same dequantised weights and against the original,
// corrupt files refused with one line naming the tensor, training refused; and the in-place
// loading of f16/bf16 weights.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "dist/weights_hash.hpp"
#include "error_of.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/quant.hpp"
#include "uvit/rng.hpp"

namespace fs = std::filesystem;
using namespace uvit;

namespace {

using uvit_test::error_of;

fs::path tmp_dir() {
  fs::path d = fs::temp_directory_path() /
               ("uvit_quant_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::create_directories(d);
  return d;
}

// Round half to even, as the quantiser and torch.round do.
float rne(float v) { return std::nearbyint(v); }

TEST(QuantWeight, Int8PerOutputChannelByHand) {
  // Row 0: max |w| = 1.27 -> scale 0.01; row 1: all zero -> scale 0, q 0.
  const std::vector<float> w = {1.27f, -0.5f, 0.004f, 0.015f, 0.f, 0.f, 0.f, 0.f};
  auto [q, s] = quantize_weight(w.data(), {2, 4}, QuantFormat{});
  ASSERT_EQ(q.dtype, DType::I8);
  ASSERT_EQ(q.shape, (std::vector<int64_t>{2, 4}));
  ASSERT_EQ(s.shape, (std::vector<int64_t>{2}));
  const float s0 = 1.27f / 127.f;
  EXPECT_EQ(s.as<float>()[0], s0);
  EXPECT_EQ(s.as<float>()[1], 0.f);
  const int8_t* qv = q.as<int8_t>();
  EXPECT_EQ(qv[0], 127);
  EXPECT_EQ(qv[1], int8_t(rne(-0.5f / s0)));  // -50
  EXPECT_EQ(qv[1], -50);
  EXPECT_EQ(qv[2], 0);  // 0.4 rounds to 0
  EXPECT_EQ(qv[3], 2);  // 1.5 rounds to even 2
  for (int i = 4; i < 8; ++i) EXPECT_EQ(qv[i], 0);
}

TEST(QuantWeight, Int4GroupsPackedLowNibbleFirst) {
  // One row of 4 inputs, group 2 is not allowed (32, 64, 128): use 64 inputs, group 32.
  std::vector<float> w(64);
  for (int i = 0; i < 64; ++i) w[size_t(i)] = (i < 32 ? 0.7f : 0.07f) * float((i % 15) - 7) / 7.f;
  QuantFormat f = parse_quant_format("int4:32");
  auto [q, s] = quantize_weight(w.data(), {1, 64}, f);
  ASSERT_EQ(q.dtype, DType::U8);
  ASSERT_EQ(q.shape, (std::vector<int64_t>{1, 32}));
  ASSERT_EQ(s.shape, (std::vector<int64_t>{1, 2}));
  for (int g = 0; g < 2; ++g) {
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(w[size_t(g * 32 + i)]));
    EXPECT_EQ(s.as<float>()[g], amax / 7.f);
  }
  for (int i = 0; i < 64; ++i) {
    const float sc = s.as<float>()[i / 32];
    const int want = int(rne(w[size_t(i)] / sc));
    const int nib = (q.as<uint8_t>()[i / 2] >> ((i % 2) * 4)) & 15;
    EXPECT_EQ(nib - 8, want) << i;
  }
  EXPECT_NE(error_of([] { parse_quant_format("int4:16"); }).find("32, 64 or 128"),
            std::string::npos);
  EXPECT_NE(error_of([] { parse_quant_format("int3"); }).find("unknown format 'int3'"),
            std::string::npos);
}

struct Nets {
  std::unique_ptr<Backend> be = make_backend("cpu", "fp32");
  Config cfg;
  explicit Nets(const std::string& preset) : cfg(load_config(preset)) {}
  std::unique_ptr<Network> make() { return make_network(cfg, *be); }
};

// Inputs for a forward of batch B of the config's network.
struct Inputs {
  std::vector<float> x, t;
  std::vector<int32_t> y;
  Inputs(const NetSpec& s, int B) {
    Philox rng(3, 0);
    x.resize(size_t(B) * s.in_numel());
    for (size_t i = 0; i < x.size(); ++i) x[i] = rng.normal(i);
    for (int b = 0; b < B; ++b) t.push_back(0.1f + 0.8f * float(b) / float(B));
    if (s.class_conditional())
      for (int b = 0; b < B; ++b) y.push_back(b % s.real_classes());
  }
  std::vector<float> run(Network& n, int B) {
    std::vector<float> out(size_t(B) * n.spec().out_numel());
    n.forward(x.data(), t.data(), y.empty() ? nullptr : y.data(), nullptr, out.data(), B);
    return out;
  }
};

struct Err {
  double max_rel = 0, mean_rel = 0;
};
// max |a - r| / max |r| and mean |a - r| / mean |r| (docs/quality.md's definitions).
Err rel(const std::vector<float>& a, const std::vector<float>& r) {
  double dmax = 0, rmax = 0, dsum = 0, rsum = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    const double d = std::fabs(double(a[i]) - r[i]);
    dmax = std::max(dmax, d);
    rmax = std::max(rmax, std::fabs(double(r[i])));
    dsum += d;
    rsum += std::fabs(double(r[i]));
  }
  return {dmax / rmax, dsum / rsum};
}

// Random weights: the official init with every GEMM weight redrawn at a per-row std of 0.01 to
// 0.04 (rows and groups get different scales; a flat init would hide scale bugs), the other
// tensors perturbed (zero-initialised adaLN and output layers would hide the GEMMs' error).
NamedArrays random_weights(Network& n) {
  n.init_random(11);
  NamedArrays sd = n.export_weights();
  uint64_t stream = 100;
  for (auto& [name, a] : sd) {
    Philox rng(5, stream++);
    const ParamEntry& e = n.table().at(name);
    float* v = a.as<float>();
    if (!e.gemm) {
      for (int64_t i = 0; i < a.numel(); ++i) v[i] += 0.02f * rng.normal(uint64_t(i));
      continue;
    }
    const int64_t out = e.shape[0], in = a.numel() / out;
    for (int64_t r = 0; r < out; ++r)
      for (int64_t i = 0; i < in; ++i)
        v[r * in + i] = 0.01f * (1.f + float(r % 4)) * rng.normal(uint64_t(r * in + i));
  }
  return sd;
}

void save_quantized(const std::string& path, const NamedArrays& q, const QuantFormat& f) {
  save_safetensors(path, q, quant_metadata(f));
}

class QuantRoundTrip : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {};

// quantise -> save -> load_file -> export: every quantised weight is exactly round(w/s) * s with
// s = max|w| / qmax over its row (int8) or group (int4); the rest is unchanged. The forward equals
// the fp32 network loaded with those dequantised weights (same GEMMs) to 1e-5, and stays within
// the documented bound of the original (docs/formats.md): int8 max relative error < 0.03, int4
// < 0.5 (measured 0.006-0.014 and 0.08-0.38 on these random networks).
TEST_P(QuantRoundTrip, DequantisedWeightsExactAndOutputWithinBound) {
  const auto [preset, fmt] = GetParam();
  const QuantFormat f = parse_quant_format(fmt);
  Nets nets(preset);
  auto ref = nets.make();
  NamedArrays sd = random_weights(*ref);
  ref->load(sd, "random");
  const NamedArrays qsd = quantize_state_dict(sd, ref->table(), f, "random");
  const std::string path = (tmp_dir() / "q.safetensors").string();
  save_quantized(path, qsd, f);

  auto q = nets.make();
  q->load_file(path);
  ASSERT_NE(q->quantized(), nullptr);
  const NamedArrays deq = q->export_weights();
  size_t n_quant = 0;
  for (size_t k = 0; k < sd.size(); ++k) {
    const auto& [name, a] = sd[k];
    ASSERT_EQ(deq[k].first, name);
    const ParamEntry& e = ref->table().at(name);
    const float* w = a.as<float>();
    const float* d = deq[k].second.as<float>();
    if (!quantizable(e, f)) {
      ASSERT_EQ(0, std::memcmp(w, d, a.data.size())) << name;
      continue;
    }
    ++n_quant;
    const int64_t out = e.shape[0], in = a.numel() / out;
    const int64_t G = f.kind == QuantKind::Int8 ? in : f.group;
    for (int64_t r = 0; r < out; ++r)
      for (int64_t g0 = 0; g0 < in; g0 += G) {
        float amax = 0;
        for (int64_t i = 0; i < G; ++i) amax = std::max(amax, std::fabs(w[r * in + g0 + i]));
        const float s = amax / float(f.qmax());
        for (int64_t i = 0; i < G; ++i) {
          const float want = s > 0 ? rne(w[r * in + g0 + i] / s) * s : 0.f;
          ASSERT_EQ(d[r * in + g0 + i], want) << name << " [" << r << ", " << g0 + i << "]";
        }
      }
  }
  EXPECT_GT(n_quant, size_t(4));

  const int B = 3;
  Inputs in(ref->spec(), B);
  const std::vector<float> want = in.run(*ref, B);
  const std::vector<float> got = in.run(*q, B);
  auto same = nets.make();
  same->load(deq, "dequantised");
  const Err exact = rel(got, in.run(*same, B));
  EXPECT_LT(exact.max_rel, 1e-5) << "quantised forward differs from the dequantised fp32 one";
  const Err e = rel(got, want);
  const double bound = f.kind == QuantKind::Int8 ? 0.03 : 0.5;
  EXPECT_LT(e.max_rel, bound) << preset << " " << fmt << " mean " << e.mean_rel;
  EXPECT_GT(e.max_rel, 0.0);  // the weights did change
  fs::remove_all(fs::path(path).parent_path());
}

INSTANTIATE_TEST_SUITE_P(Nets, QuantRoundTrip,
                         ::testing::Combine(::testing::Values("fmnist_uvit_tiny", "fmnist_dit_tiny",
                                                              "fmnist_skip_dit_tiny",
                                                              "fmnist_lightningdit_tiny"),
                                            ::testing::Values("int8", "int4", "int4:64")),
                         [](const auto& info) {
                           std::string s = std::get<0>(info.param) + "_" + std::get<1>(info.param);
                           for (char& c : s)
                             if (c == ':') c = '_';
                           return s;
                         });

// A quantised file built from random weights, then one thing broken per case.
class QuantCorrupt : public ::testing::Test {
 protected:
  void SetUp() override {
    auto n = nets.make();
    sd = quantize_state_dict(random_weights(*n), n->table(), f, "random");
    dir = tmp_dir();
  }
  void TearDown() override { fs::remove_all(dir); }
  Array& at(const std::string& name) {
    for (auto& [k, a] : sd)
      if (k == name) return a;
    throw std::runtime_error("no tensor " + name);
  }
  void erase(const std::string& name) {
    for (auto it = sd.begin(); it != sd.end(); ++it)
      if (it->first == name) {
        sd.erase(it);
        return;
      }
  }
  // The one-line error of loading sd (saved with metadata meta).
  std::string load_error(const std::map<std::string, std::string>& meta) {
    const std::string path = (dir / "bad.safetensors").string();
    save_safetensors(path, sd, meta);
    auto n = nets.make();
    const std::string e = error_of([&] { n->load_file(path); });
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  }
  std::string load_error() { return load_error(quant_metadata(f)); }

  Nets nets{"fmnist_uvit_tiny"};
  QuantFormat f;
  NamedArrays sd;
  fs::path dir;
  const std::string W = "in_blocks.0.attn.qkv.weight";
};

TEST_F(QuantCorrupt, WrongDtypeNamesTheTensor) {
  Array& a = at(W);
  a.dtype = DType::U8;  // the int4 dtype in an int8 file
  EXPECT_NE(
      load_error().find("tensor '" + W + "' is U8, an int8 file stores quantised weights as I8"),
      std::string::npos);
  a.dtype = DType::I8;
  Array& s = at(W + "_scale");
  s = s.converted(DType::F16);
  EXPECT_NE(load_error().find("tensor '" + W + "_scale' is F16, scales are F32"),
            std::string::npos);
}

TEST_F(QuantCorrupt, MissingScaleNamesTheTensor) {
  erase(W + "_scale");
  EXPECT_NE(load_error().find("tensor '" + W + "' is quantised but its scale '" + W +
                              "_scale' is missing"),
            std::string::npos);
}

TEST_F(QuantCorrupt, WrongShapesNameTheTensor) {
  Array& s = at(W + "_scale");
  s = Array(DType::F32, {s.shape[0] + 1});
  EXPECT_NE(load_error().find("tensor '" + W + "_scale' has shape"), std::string::npos);
  Array& q = at(W);
  const auto shape = q.shape;
  q = Array(DType::I8, {shape[0], shape[1] / 2});
  EXPECT_NE(load_error().find("tensor '" + W + "' has shape"), std::string::npos);
}

TEST_F(QuantCorrupt, NonLinearWeightOrBadScaleOrMetadataRefused) {
  Array& emb = at("label_emb.weight");
  emb = Array(DType::I8, emb.shape);
  EXPECT_NE(load_error().find("tensor 'label_emb.weight' is I8 but is not a linear weight"),
            std::string::npos);
  sd = quantize_state_dict(random_weights(*nets.make()), nets.make()->table(), f, "random");
  at(W + "_scale").as<float>()[0] = -1.f;
  EXPECT_NE(load_error().find("tensor '" + W + "_scale' holds a negative or non-finite scale"),
            std::string::npos);
  at(W + "_scale").as<float>()[0] = 1.f;
  EXPECT_NE(load_error({{kQuantKey, "int4"}}).find("needs the metadata key uvit.quant_group"),
            std::string::npos);
  EXPECT_NE(load_error({{kQuantKey, "int2"}}).find("unknown uvit.quantization 'int2'"),
            std::string::npos);
  // Integers in a file that does not say it is quantised: the strict check names the scale.
  EXPECT_NE(load_error({}).find("unexpected tensor"), std::string::npos);
}

TEST_F(QuantCorrupt, TruncatedFileNamesATensor) {
  const std::string path = (dir / "t.safetensors").string();
  save_safetensors(path, sd, quant_metadata(f));
  const auto size = fs::file_size(path);
  for (uintmax_t cut : {uintmax_t(1), uintmax_t(1000), size / 2}) {
    fs::resize_file(path, size - cut);
    auto n = nets.make();
    const std::string e = error_of([&] { n->load_file(path); });
    EXPECT_NE(e.find(path), std::string::npos) << e;
    EXPECT_TRUE(e.find("tensor '") != std::string::npos || e.find("truncated") != std::string::npos)
        << e;
    EXPECT_EQ(e.find('\n'), std::string::npos);
  }
}

TEST_F(QuantCorrupt, TrainingRefused) {
  const std::string path = (dir / "q.safetensors").string();
  save_safetensors(path, sd, quant_metadata(f));
  auto n = nets.make();
  n->load_file(path);
  EXPECT_NE(
      error_of([&] { n->grads(); }).find(path + " (int8): quantised weights are for inference"),
      std::string::npos);
  // A run folder's weights read as a state_dict (train --resume) are refused before loading.
  auto m = nets.make();
  EXPECT_NE(error_of([&] {
              m->load(load_safetensors(path), path);
            }).find("' is I8: quantised weights are for inference"),
            std::string::npos);
}

// The hash the ranks of an mpirun job compare after loading (docs/distributed.md, "Every rank
// loaded the same files") is of what the file put there: a quantised load leaves its weights' fp32
// slots unwritten (the integers are kept instead), so the same file loaded into a buffer that held
// other weights gives the same hash, as it does into a fresh one.
TEST_F(QuantCorrupt, WeightsHashOfTheFileAlone) {
  const std::string path = (dir / "q.safetensors").string();
  save_safetensors(path, sd, quant_metadata(f));
  auto fresh = nets.make();
  fresh->load_file(path);
  auto reused = nets.make();
  reused->load(random_weights(*reused), "random");  // its slots hold these weights' bytes
  reused->load_file(path);
  ASSERT_NE(reused->quantized(), nullptr);
  EXPECT_EQ(hash_network(*reused), hash_network(*fresh));
  // The integers still count: one changed is another hash.
  auto changed = nets.make();
  at(W).as<int8_t>()[0] ^= 1;
  save_safetensors(path, sd, quant_metadata(f));
  changed->load_file(path);
  EXPECT_NE(hash_network(*changed), hash_network(*fresh));
}

// f16 and bf16 weights are widened in place in the parameter buffer: the same values as
// Array::to_f32, for tensors of odd and even sizes; a fresh network's parameters are zero.
TEST(WeightsLoad, HalfDtypesWidenedInPlace) {
  Nets nets("fmnist_uvit_tiny");
  auto a = nets.make();
  for (const Array& w : [&] {
         std::vector<Array> v;
         for (auto& [k, x] : a->export_weights()) v.push_back(x);
         return v;
       }())
    for (int64_t i = 0; i < w.numel(); ++i) ASSERT_EQ(w.as<float>()[i], 0.f);
  NamedArrays sd = random_weights(*a);
  const fs::path dir = tmp_dir();
  for (DType d : {DType::F16, DType::BF16}) {
    NamedArrays h;
    for (size_t k = 0; k < sd.size(); ++k)
      h.emplace_back(sd[k].first, k % 2 ? sd[k].second.converted(d) : sd[k].second);
    save_safetensors((dir / "h.safetensors").string(), h);
    auto n = nets.make();
    n->load_file((dir / "h.safetensors").string());
    const NamedArrays got = n->export_weights();
    for (size_t k = 0; k < h.size(); ++k) {
      const std::vector<float> want = h[k].second.to_f32();
      ASSERT_EQ(0, std::memcmp(want.data(), got[k].second.data.data(), want.size() * 4))
          << h[k].first << " " << dtype_name(d);
    }
  }
  fs::remove_all(dir);
}

}  // namespace
