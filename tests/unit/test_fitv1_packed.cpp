// FiTv1's masked ADM loss (docs/fit.md "FiTv1", packed batches): the ADM objective's loss_masked
// against tests/reference/fit_adm_loss.py (the official masked training_losses in the (B, C, N)
// token layout of a packed batch, float64), the full mask equal to the unmasked loss bit for bit,
// and the refusals.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "rel_err.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"
#include "uvit/objective.hpp"

using namespace uvit;
using uvit_test::rel_err;

namespace {

struct LossCase {
  int B = 0, C = 0, H = 0, W = 0;
  std::vector<float> x0, noise, out, grad;
  std::vector<std::array<int, 2>> sizes;
  std::vector<TrainDraw> draws;
  std::map<std::string, Array> t;
};

LossCase load_loss_case() {
  LossCase c;
  for (auto& [k, a] : load_safetensors(std::string(UVIT_TEST_FIXTURES) + "/fitv1_loss.safetensors"))
    c.t[k] = std::move(a);
  const auto& x = c.t.at("x0");
  c.B = int(x.shape[0]), c.C = int(x.shape[1]), c.H = int(x.shape[2]), c.W = int(x.shape[3]);
  c.x0 = x.to_f32();
  c.noise = c.t.at("noise").to_f32();
  c.out = c.t.at("out").to_f32();
  c.grad = c.t.at("grad").to_f32();
  const auto s = c.t.at("sizes").to_i64();
  for (size_t i = 0; i < s.size(); i += 2) c.sizes.push_back({int(s[i]), int(s[i + 1])});
  for (int64_t i : c.t.at("t").to_i64()) {
    TrainDraw d;
    d.index = int(i);
    c.draws.push_back(d);
  }
  return c;
}

// The ADM objective of a FiTv1 preset with the case's channels (learn_sigma: 2 C outputs).
std::unique_ptr<Objective> adm_objective(int channels) {
  Config cfg = load_config("fmnist_fitv1_tiny");
  cfg.spec.in_chans = channels;
  cfg.spec.out_chans = 2 * channels;
  return make_objective(cfg);
}

}  // namespace

// A batch of a 2 x 4, a 3 x 3, a 1 x 1, a full 3 x 4 and a 1 x 3 grid (patch 2) on a 6 x 8 canvas,
// t = 0 (the decoder NLL, edge bins included), 1, 500, 999, 137. The official loss adds the vb of
// the padding tokens (x0 = 0, eps and v outputs masked to 0): a constant without gradient that
// depends on the padding's noise and on how many tokens the batch's longest sample leaves; ours
// counts the valid elements only, so it is the official loss less that constant.
TEST(Fitv1Packed, MaskedAdmLossMatchesTheOfficialFormula) {
  const LossCase c = load_loss_case();
  auto obj = adm_objective(c.C);
  std::vector<float> dout(c.out.size(), NAN);
  const double loss = obj->loss_masked(c.out.data(), c.noise.data(), c.x0.data(), c.draws.data(),
                                       c.B, c.C, c.H, c.W, c.sizes.data(), 1, dout.data());
  const auto pad = c.t.at("pad_vb").to_f32();
  const auto mse = c.t.at("mse").to_f32(), vb = c.t.at("vb").to_f32();
  double official = 0, padding = 0;
  for (int b = 0; b < c.B; ++b)
    official += mse[size_t(b)] + vb[size_t(b)], padding += pad[size_t(b)];
  official /= c.B, padding /= c.B;
  EXPECT_NEAR(official, c.t.at("loss").to_f32()[0], 1e-6);
  EXPECT_GT(padding, 0.05);  // the official loss carries a visible share of padding
  EXPECT_NEAR(loss, official - padding, 1e-5 * official);
  EXPECT_LE(rel_err(dout, c.grad), 1e-5);
  // Nothing outside the valid regions (the fixture's canvas there is 1e3-sized garbage).
  for (int b = 0; b < c.B; ++b)
    for (int ch = 0; ch < 2 * c.C; ++ch)
      for (int y = 0; y < c.H; ++y)
        for (int x = 0; x < c.W; ++x)
          if (y >= c.sizes[b][0] || x >= c.sizes[b][1]) {
            ASSERT_EQ(dout[((size_t(b) * 2 * c.C + ch) * c.H + y) * c.W + x], 0.f)
                << b << " " << ch;
          }
  // Micro-batches divide the gradient, not the loss.
  std::vector<float> d2(c.out.size());
  EXPECT_EQ(obj->loss_masked(c.out.data(), c.noise.data(), c.x0.data(), c.draws.data(), c.B, c.C,
                             c.H, c.W, c.sizes.data(), 2, d2.data()),
            loss);
  for (size_t i = 0; i < d2.size(); ++i) ASSERT_EQ(d2[i], dout[i] / 2.f) << i;
}

// Every sample at the full canvas: the masked loss is the unmasked one (DiT's), bit for bit, with
// and without min-SNR weighting.
TEST(Fitv1Packed, FullMaskIsTheUnmaskedLossBitForBit) {
  const LossCase c = load_loss_case();
  const std::vector<std::array<int, 2>> full(size_t(c.B), {c.H, c.W});
  const size_t in = size_t(c.C) * c.H * c.W;
  for (double gamma : {0.0, 5.0}) {
    Config cfg = load_config("fmnist_fitv1_tiny");
    cfg.spec.in_chans = c.C;
    cfg.spec.out_chans = 2 * c.C;
    cfg.json["train"]["min_snr_gamma"] = gamma;
    auto obj = make_objective(cfg);
    std::vector<TrainDraw> draws;
    for (const TrainDraw& d : c.draws) draws.push_back(obj->draw((d.index + 0.5) / 1000.0));
    std::vector<float> dm(c.out.size()), du(c.out.size());
    const double masked = obj->loss_masked(c.out.data(), c.noise.data(), c.x0.data(), draws.data(),
                                           c.B, c.C, c.H, c.W, full.data(), 3, dm.data());
    const double plain = obj->loss(c.out.data(), c.noise.data(), c.x0.data(), draws.data(), c.B, in,
                                   2 * in, 3, du.data());
    EXPECT_EQ(masked, plain) << "gamma " << gamma;
    EXPECT_EQ(dm, du) << "gamma " << gamma;
  }
}

TEST(Fitv1Packed, Refusals) {
  const LossCase c = load_loss_case();
  auto obj = adm_objective(c.C);
  std::vector<float> dout(c.out.size());
  auto message = [&](std::array<int, 2> s, int C) -> std::string {
    std::vector<std::array<int, 2>> sizes(c.sizes);
    sizes[1] = s;
    try {
      obj->loss_masked(c.out.data(), c.noise.data(), c.x0.data(), c.draws.data(), c.B, C, c.H, c.W,
                       sizes.data(), 1, dout.data());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({8, 2}, c.C).find("sample 1 valid size 8 x 2 outside the 6 x 8 image"),
            std::string::npos);
  EXPECT_NE(message({0, 2}, c.C).find("sample 1 valid size 0 x 2"), std::string::npos);
  EXPECT_NE(message({2, 2}, 3).find("3 channels, the preset has 2"), std::string::npos);
  // U-ViT's eps-MSE still has no masked loss.
  auto eps_obj = make_objective(load_config("fmnist_uvit_tiny"));
  try {
    eps_obj->loss_masked(c.out.data(), c.noise.data(), c.x0.data(), c.draws.data(), c.B, c.C, c.H,
                         c.W, c.sizes.data(), 1, dout.data());
    ADD_FAILURE() << "eps-MSE took a variable-size batch";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("need the flow or the ADM objective"), std::string::npos);
  }
}
