// FiTv2's power-cos guidance (forward_with_cfg's scale_pow, docs/fit.md "Options"): `uvit sample
// --cfg-power P` on a FiTv2 network follows the official formula of the flow time, full guidance
// at the noise end (t = 0), the reverse of MDT's direction; FiTv1 refuses it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "error_of.hpp"
#include "rel_err.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

using namespace uvit;
using uvit_test::error_of;

namespace {

// Moves the (adaLN-Zero: zero-output) initial weights so that guidance has something to combine.
void perturb(Backend& be, Network& net) {
  std::vector<float> p(net.num_params()), z(p.size());
  be.download(p.data(), net.params(), p.size() * 4);
  Philox(9, 0).fill_normal(z.data(), z.size());
  for (size_t i = 0; i < p.size(); ++i) p[i] += 0.05f * z[i];
  be.upload(net.params(), p.data(), p.size() * 4);
}

// Euler on linspace(0, 1, K) by hand, each velocity from one batched call on [x; x] with labels
// [y; null], combined as forward_with_cfg: uncond + real (cond - uncond) with real = (cfg - 1)
// step + 1 and step = (1 - cos((1 - min(t, 1))^pow pi)) / 2 (float32 like the official tensors);
// `mdt` reads 1 - t instead (MDT's direction).
std::vector<float> euler_by_hand(Backend& be, Network& net, std::vector<float> x,
                                 const std::vector<int>& labels, float cfg, float pow, int K,
                                 bool mdt) {
  const NetSpec& s = net.spec();
  const int B = int(labels.size());
  const size_t numel = s.in_numel();
  DeviceBuffer dx(be, 2 * B * numel * 4), dt(be, 2 * B * 4), dy(be, 2 * B * 4),
      dout(be, 2 * B * s.out_numel() * 4);
  std::vector<int32_t> y(2 * B);
  for (int b = 0; b < B; ++b) y[b] = labels[b], y[B + b] = s.null_class;
  be.upload(dy.as(), y.data(), y.size() * 4);
  std::vector<float> out(2 * B * s.out_numel());
  for (int i = 0; i + 1 < K; ++i) {
    const double t = double(i) / (K - 1), dtime = double(i + 1) / (K - 1) - t;
    const std::vector<float> tv(2 * B, float(t));
    be.upload(dt.f32(), tv.data(), tv.size() * 4);
    be.upload(dx.f32(), x.data(), B * numel * 4);
    be.upload(dx.f32() + B * numel, x.data(), B * numel * 4);
    net.forward(dx.f32(), dt.f32(), dy.as<int32_t>(), nullptr, dout.f32(), 2 * B, false);
    be.download(out.data(), dout.f32(), out.size() * 4);
    const float tt = mdt ? 1.f - float(t) : std::min(float(t), 1.f);
    const float step = (1.f - std::cos(std::pow(1.f - tt, pow) * float(M_PI))) * 1.f / 2.f;
    const float real = (cfg - 1.f) * step + 1.f;
    for (int b = 0; b < B; ++b)
      for (size_t e = 0; e < numel; ++e) {
        const float c = out[b * s.out_numel() + e], u = out[(B + b) * s.out_numel() + e];
        const float v = u + real * (c - u);
        x[b * numel + e] = float(double(x[b * numel + e]) + dtime * double(v));
      }
  }
  return x;
}

}  // namespace

TEST(FitGuidance, PowerCosIsTheOfficialScalePow) {
  auto be = make_cpu_backend();
  Config cfg = load_config("fmnist_fit_tiny");  // 1 channel: guidance combines all of it
  apply_override(cfg, "nnet.depth=2");
  auto net = make_network(cfg, *be);
  net->init_random(3);
  perturb(*be, *net);
  const std::vector<int> labels = {1, 7};
  const int K = 5;
  std::vector<float> noise(labels.size() * net->spec().in_numel());
  Philox(11, 0).fill_normal(noise.data(), noise.size());
  GenerateOptions o;
  o.sampler = "euler";
  o.steps = K;
  o.cfg_scale = 0.5;  // the official cfg 1.5
  o.cfg_power = 2;
  o.seed = 5;
  o.noise = noise;
  const auto got = generate(*net, cfg, o, int(labels.size()), labels);
  const auto want = euler_by_hand(*be, *net, noise, labels, 1.5f, 2.f, K, false);
  EXPECT_LE(uvit_test::rel_err(got, want), 1e-5);
  // The direction matters: MDT's reading of the time gives another result.
  const auto mdt = euler_by_hand(*be, *net, noise, labels, 1.5f, 2.f, K, true);
  EXPECT_GT(uvit_test::rel_err(got, mdt), 1e-3);
  // The first step (t = 0) is fully guided, the schedule reaches 0 at t = 1: with a huge power
  // only the first step keeps (almost) the whole scale.
  o.cfg_power = 0;
  const auto constant = generate(*net, cfg, o, int(labels.size()), labels);
  EXPECT_LE(
      uvit_test::rel_err(constant, euler_by_hand(*be, *net, noise, labels, 1.5f, 0.f, K, false)),
      1e-5);
  EXPECT_GT(uvit_test::rel_err(got, constant), 1e-3);

  // FiTv1's sampler has no scale_pow: one line naming it.
  Config v1 = load_config("fmnist_fitv1_tiny");
  apply_override(v1, "nnet.depth=1");
  auto net1 = make_network(v1, *be);
  GenerateOptions o1;
  o1.steps = 2;
  o1.cfg_scale = 0.5;
  o1.cfg_power = 1;
  EXPECT_NE(error_of([&] { generate(*net1, v1, o1, 1, {3}); }).find("cfg_power: network fitv1"),
            std::string::npos);
}
