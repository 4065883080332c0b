// FiTv2's packed variable-size batches (docs/fit.md "Packed batches"): a batch of three grids on
// one canvas against the twin's official interface (packed tokens, grid, mask; forward and every
// parameter gradient), full sizes bit-identical to the plain forward, the refusals, and the masked
// flow loss by hand.
#include <gtest/gtest.h>

#include <array>
#include <map>
#include <string>
#include <vector>

#include "model_compare.hpp"
#include "rel_err.hpp"
#include "temp_dir.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/data.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/objective.hpp"

using namespace uvit;
using uvit_test::rel_err;

namespace {

struct Case {
  Config cfg;
  std::map<std::string, Array> t;
  std::vector<float> x, t_in, gout;
  std::vector<int32_t> y;
  int B = 0;
};

Case load_case(const std::string& name) {
  const std::string dir = UVIT_TEST_FIXTURES;
  Case c;
  c.cfg = load_config(dir + "/" + name + ".json");
  for (auto& [k, a] : load_safetensors(dir + "/" + name + ".safetensors")) c.t[k] = std::move(a);
  c.x = c.t.at("input.x").to_f32();
  c.t_in = c.t.at("input.t").to_f32();
  c.gout = c.t.at("input.gout").to_f32();
  for (auto v : c.t.at("input.y").to_i64()) c.y.push_back(int32_t(v));
  c.B = int(c.t.at("input.x").shape[0]);
  return c;
}

std::unique_ptr<Network> loaded(const Case& c, Backend& be) {
  auto m = make_network(c.cfg, be);
  NamedArrays sd;
  for (const auto& e : m->table().entries()) sd.emplace_back(e.name, c.t.at("param." + e.name));
  m->load(sd, "fixture");
  return m;
}

// Output (and with `train` the gradients of sum(out * gout)); sizes empty: a plain batch.
std::pair<std::vector<float>, std::vector<float>> run(Network& m, const Case& c,
                                                      const std::vector<std::array<int, 2>>& sizes,
                                                      bool train) {
  std::vector<float> out(c.gout.size());
  if (!sizes.empty()) m.set_valid_sizes(sizes);
  m.forward(c.x.data(), c.t_in.data(), c.y.data(), nullptr, out.data(), c.B, train);
  if (!train) return {out, {}};
  m.zero_grad();
  m.backward(c.gout.data());
  return {out, std::vector<float>(m.grads(), m.grads() + m.num_params())};
}

}  // namespace

// fit_packed (FiTv2), fitv1_packed (learned sigma, the (B, C, N) layout) and fit_packed_online
// (online_rope: each sample's RoPE scaled for its own grid), fit_fixtures.py:PACKED_CASES.
TEST(FitPacked, MixedGridsMatchTheTwin) {
  for (const char* name :
       {"fit_packed", "fitv1_packed", "fit_packed_online", "fit_packed_rope_v"}) {
    SCOPED_TRACE(name);
    const Case c = load_case(name);
    std::vector<std::array<int, 2>> sizes;
    const auto s = c.t.at("input.sizes").to_i64();
    for (size_t i = 0; i < s.size(); i += 2) sizes.push_back({int(s[i]), int(s[i + 1])});
    auto be = make_cpu_backend();
    auto m = loaded(c, *be);
    ASSERT_TRUE(m->packs_sizes());
    const auto [out, grads] = run(*m, c, sizes, true);
    EXPECT_LE(rel_err(out, c.t.at("output").to_f32()), 1e-5) << "output";
    for (const auto& e : m->table().entries())
      EXPECT_LE(rel_err(grads.data() + e.offset, c.t.at("grad." + e.name).to_f32()), 1e-4)
          << "grad of " << e.name;
    // Padding is exactly zero in the output (both halves with a learned sigma).
    const auto& xs = c.t.at("input.x").shape;
    const int H = int(xs[2]), W = int(xs[3]), C = int(c.gout.size() / (size_t(c.B) * H * W));
    for (int b = 0; b < c.B; ++b)
      for (int ch = 0; ch < C; ++ch)
        for (int yy = 0; yy < H; ++yy)
          for (int xx = 0; xx < W; ++xx)
            if (yy >= sizes[b][0] || xx >= sizes[b][1]) {
              ASSERT_EQ(out[((size_t(b) * C + ch) * H + yy) * W + xx], 0.f) << b << " " << yy;
            }
    // Inference plans other buffers: same output. The sizes last one forward: the next is plain.
    EXPECT_EQ(run(*m, c, sizes, false).first, out);
    EXPECT_NE(run(*m, c, {}, false).first, out);
  }
}

// Every sample at the full canvas with a sequence as long as the grid: the packed path (gathers,
// per-token RoPE rows, varlen attention) is the plain forward and backward bit for bit.
TEST(FitPacked, FullSizesAreThePlainBatchBitForBit) {
  const Case c = load_case("fit_p2");  // 8 x 8, patch 2: 16 tokens, context_size 256
  auto be = make_cpu_backend();
  auto m = loaded(c, *be);
  const auto plain = run(*m, c, {}, true);
  const std::vector<std::array<int, 2>> full(size_t(c.B), {8, 8});
  const auto packed = run(*m, c, full, true);
  EXPECT_EQ(packed.first, plain.first);
  EXPECT_EQ(packed.second, plain.second);
}

TEST(FitPacked, RefusesBadSizes) {
  const Case c = load_case("fit_packed");  // canvas 6 x 8, patch 2, context_size 9
  auto be = make_cpu_backend();
  auto m = loaded(c, *be);
  auto message = [&](std::vector<std::array<int, 2>> s) -> std::string {
    try {
      m->set_valid_sizes(s);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({{3, 8}}).find("sample 0 size 3 x 8 is not a multiple of patch_size 2"),
            std::string::npos);
  EXPECT_NE(message({{2, 2}, {8, 2}}).find("within the 6 x 8 input"), std::string::npos);
  EXPECT_NE(message({{6, 8}}).find("sample 0 has 12 tokens, more than the 9"), std::string::npos);
  // A batch of another size than the sizes given.
  m->set_valid_sizes({{2, 2}});
  std::vector<float> out(c.gout.size());
  EXPECT_THROW(m->forward(c.x.data(), c.t_in.data(), c.y.data(), nullptr, out.data(), c.B, false),
               Error);
  auto dit = make_network(load_case("dit_p2").cfg, *be);
  EXPECT_FALSE(dit->packs_sizes());
  EXPECT_THROW(dit->set_valid_sizes({{8, 8}}), Error);
}

// loss_masked by hand: B 2, C 1, 2 x 3 images; sample 0 valid 1 x 2, sample 1 the whole 2 x 3.
TEST(FitPacked, MaskedFlowLossByHand) {
  auto obj = make_objective(load_config("fmnist_fit_tiny"));
  // target u = x0 - eps; take eps 0 so u = x0, and d = out - x0.
  const std::vector<float> out = {1, 2, 9, 9, 9, 9,   // sample 0: d = 1, 2 on the valid 1 x 2
                                  1, 1, 1, 1, 1, 3};  // sample 1: d = 1 1 1 1 1 3
  const std::vector<float> x0(12, 0.f), eps(12, 0.f);
  const std::array<int, 2> sizes[] = {{1, 2}, {2, 3}};
  std::vector<float> dout(12, NAN);
  const double loss = obj->loss_masked(out.data(), eps.data(), x0.data(), nullptr, 2, 1, 2, 3,
                                       sizes, 2, dout.data());
  // sample 0: (1 + 4) / 2 = 2.5; sample 1: (5 + 9) / 6 = 14/6; mean of the two.
  EXPECT_NEAR(loss, (2.5 + 14.0 / 6) / 2, 1e-12);
  // d loss / d out = 2 d / (n_b B), / accum 2.
  const std::vector<float> want = {float(2 * 1 / 4.0 / 2),
                                   float(2 * 2 / 4.0 / 2),
                                   0,
                                   0,
                                   0,
                                   0,
                                   float(2 / 12.0 / 2),
                                   float(2 / 12.0 / 2),
                                   float(2 / 12.0 / 2),
                                   float(2 / 12.0 / 2),
                                   float(2 / 12.0 / 2),
                                   float(6 / 12.0 / 2)};
  for (size_t i = 0; i < 12; ++i) EXPECT_FLOAT_EQ(dout[i], want[i]) << i;
  // Full sizes: the plain MSE (the official N / valid is 1 without padding).
  const std::array<int, 2> full[] = {{2, 3}, {2, 3}};
  std::vector<float> d1(12), d2(12);
  const double a =
      obj->loss_masked(out.data(), eps.data(), x0.data(), nullptr, 2, 1, 2, 3, full, 1, d1.data());
  const double b = obj->loss(out.data(), eps.data(), x0.data(), nullptr, 2, 6, 6, 1, d2.data());
  EXPECT_NEAR(a, b, 1e-12);
  for (size_t i = 0; i < 12; ++i) EXPECT_NEAR(d1[i], d2[i], 1e-7) << i;
  // U-ViT's eps-MSE has none (the flow and ADM objectives do).
  auto eps_obj = make_objective(load_config("fmnist_uvit_tiny"));  // U-ViT's eps-MSE
  EXPECT_THROW(eps_obj->loss_masked(out.data(), eps.data(), x0.data(), nullptr, 2, 1, 2, 3, sizes,
                                    1, dout.data()),
               Error);
}

// The npy_folder dataset: canvas and limits from the preset's nnet, items top-left with zero
// padding, their sizes in the batch, labels by file-name prefix, and the file named on a bad shape.
TEST(FitPacked, NpyFolderDatasetAndBatchSizes) {
  uvit_test::TempDir d("uvit_npyfolder");
  auto put = [&](const std::string& name, int h, int w, float v) {
    std::vector<float> a(size_t(h) * w, v);
    save_npy(d / name, Array::from_f32({1, h, w}, a.data()));
  };
  put("a_0.npy", 4, 8, 1.f);
  put("b_0.npy", 8, 4, 2.f);
  put("a_1.npy", 4, 4, 3.f);
  const nlohmann::json cfg = {
      {"dataset", {{"name", "npy_folder"}, {"path", d.dir.string()}}},
      {"nnet", {{"input_size", 8}, {"in_channels", 1}, {"patch_size", 4}, {"context_size", 4}}}};
  const DataOptions o = data_options_from_json(cfg);
  EXPECT_EQ(o.canvas_h, 8);
  EXPECT_EQ(o.patch, 4);
  EXPECT_EQ(o.max_tokens, 4);
  auto ds = make_dataset(o);
  ASSERT_TRUE(ds->variable_size());
  EXPECT_EQ(ds->item_shape(), (std::array<int64_t, 3>{1, 8, 8}));
  EXPECT_EQ(ds->num_classes(), 2);
  LoaderOptions lo;
  lo.batch_size = 3;
  lo.shuffle = false;
  Batch b;
  make_batch(*ds, lo, {0, 0, 0}, b);
  // sorted: a_0 (4 x 8), a_1 (4 x 4), b_0 (8 x 4)
  ASSERT_EQ(b.sizes.size(), 3u);
  EXPECT_EQ(b.sizes[0], (std::array<int, 2>{4, 8}));
  EXPECT_EQ(b.sizes[1], (std::array<int, 2>{4, 4}));
  EXPECT_EQ(b.sizes[2], (std::array<int, 2>{8, 4}));
  EXPECT_EQ(b.labels, (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(b.x[64 + 3], 3.f);   // a_1 row 0, column 3
  EXPECT_EQ(b.x[64 + 4], 0.f);   // beyond its width
  EXPECT_EQ(b.x[64 + 32], 0.f);  // beyond its height
  EXPECT_EQ(b.x[128 + 7 * 8 + 3], 2.f);
  put("c_0.npy", 8, 8, 0.f);  // 4 tokens of 4: fits; 6 x 8 does not divide by the patch
  put("c_1.npy", 6, 8, 0.f);
  try {
    make_dataset(o);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("c_1.npy: 6 x 8 is not a multiple of 4"),
              std::string::npos)
        << e.what();
  }
}

// The CPU's bf16 mode on a packed batch (the varlen attention's bf16 tiles, the act copies)
// against its fp32 mode, within the bf16 bounds of CpuBf16Model.
TEST(FitPacked, CpuBf16MatchesFp32) {
  if (!cpu_has_bf16()) GTEST_SKIP() << "no bf16 units on this CPU";
  const Config c = uvit::test::config_from(uvit::test::kFitPacked);
  const auto& sizes = uvit::test::kFitPackedSizes;
  const int B = int(sizes.size());
  auto f32 = make_backend("cpu", "fp32");
  auto bf = make_backend("cpu", "bf16");
  const auto ref = uvit::test::run_net(*f32, c, B, true, sizes);
  const auto got = uvit::test::run_net(*bf, c, B, true, sizes);
  std::string worst;
  EXPECT_LE(rel_err(got.out, ref.out), 3e-2);
  EXPECT_LE(uvit::test::worst_grad(network_param_table(c), got.grads, ref.grads, &worst), 1e-1)
      << worst;
  // Padding stays exactly zero in bf16 too.
  const size_t plane = 12 * 20;
  for (int b = 0; b < B; ++b)
    for (int ch = 0; ch < 4; ++ch)
      for (int y = 0; y < 12; ++y)
        for (int x = 0; x < 20; ++x)
          if (y >= sizes[b][0] || x >= sizes[b][1]) {
            ASSERT_EQ(got.out[(size_t(b) * 4 + ch) * plane + size_t(y) * 20 + x], 0.f);
          }
}

// FiT's time shifting on the backend (no host round trip): min(s t / (1 + (s - 1) t), 1) by hand.
TEST(FitTime, ShiftByHand) {
  auto be = make_cpu_backend();
  const std::vector<float> t = {0.f, 0.25f, 0.5f, 1.f, 1.02f};
  std::vector<float> out(t.size());
  be->fit_time_shift(t.data(), out.data(), int(t.size()), 1.f);  // s = 1: the clamp only
  EXPECT_EQ(out, (std::vector<float>{0.f, 0.25f, 0.5f, 1.f, 1.f}));
  be->fit_time_shift(t.data(), out.data(), int(t.size()), 2.f);  // 2t / (1 + t)
  EXPECT_FLOAT_EQ(out[1], 0.4f);
  EXPECT_FLOAT_EQ(out[2], 2.f / 3.f);
  EXPECT_EQ(out[3], 1.f);
  EXPECT_EQ(out[4], 1.f);  // 2.04 / 2.02 > 1, clamped
  std::vector<float> in_place = t;
  be->fit_time_shift(in_place.data(), in_place.data(), int(t.size()), 2.f);
  EXPECT_EQ(in_place, out);
}
