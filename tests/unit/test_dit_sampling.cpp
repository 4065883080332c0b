// generate() with DiT's ADM samplers against the float64 DDIM runs of make_fixtures.py (cases
// *_sampling: the weights of dit_p2 / skipdit_p2 / fitv1_p2, a stored x_T): respacing "ddimK" with
// eta 0, the network called at the original step timestep_map[i], guidance on 3 channels as DiT's
// forward_with_cfg (docs/dit.md). This is the "same initial noise" criterion, to 1e-4.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>

#include "rel_err.hpp"
#include "sampling_case.hpp"
#include "uvit/adm.hpp"
#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/error.hpp"
#include "uvit/generate.hpp"
#include "uvit/io.hpp"
#include "uvit/network.hpp"
#include "uvit/rng.hpp"

using namespace uvit;

namespace {

struct SamplingCase : uvit::testing::SamplingCase {
  int n = 0, steps = 0;
};

SamplingCase load_case(const std::string& name) {
  SamplingCase c{uvit::testing::load_sampling_case(name, "adm")};  // DiT samples on ADM's schedule
  c.n = int(c.labels.size());
  c.steps = int(c.t.at("sample.timestep_map").shape[0]);
  return c;
}

using uvit_test::rel_err;

bool all_finite(const std::vector<float>& v) {
  for (float x : v)
    if (!std::isfinite(x)) return false;
  return true;
}

class DiTSampling : public ::testing::TestWithParam<std::string> {};

TEST_P(DiTSampling, DdimFromTheSameNoiseMatchesReference) {
  SamplingCase c = load_case(GetParam());
  // The null class is the extra label row (class_dropout_prob > 0), as DiT's sample.py uses it.
  const NetSpec& s = c.net->spec();
  ASSERT_EQ(null_class(c.cfg), s.num_classes - 1);
  ASSERT_EQ(real_classes(c.cfg), s.num_classes - 1);
  ASSERT_EQ(s.guidance_channels, 3);
  // The stored map is the one generate() respaces with.
  const std::vector<int> map = space_timesteps(1000, "ddim" + std::to_string(c.steps));
  ASSERT_EQ(c.t.at("sample.timestep_map").to_i64(), std::vector<int64_t>(map.begin(), map.end()));

  const std::vector<float> scales = c.t.at("sample.scales").to_f32(),
                           x0 = c.t.at("sample.x0").to_f32();
  const size_t per_run = size_t(c.n) * s.in_numel();
  ASSERT_EQ(x0.size(), scales.size() * per_run);
  for (size_t r = 0; r < scales.size(); ++r) {
    GenerateOptions o;
    o.sampler = "ddim";
    o.steps = c.steps;
    o.cfg_scale = scales[r];
    o.noise = c.x_T;
    o.mini_batch = c.n;
    int evals = 0;
    o.progress = [&](int, int) { ++evals; };
    const std::vector<float> got = generate(*c.net, c.cfg, o, c.n, c.labels);
    EXPECT_EQ(evals, c.steps);
    const double err = rel_err(got.data(), x0.data() + r * per_run, per_run);
    std::printf("%s ddim%d cfg_scale %g: rel err %.2e\n", GetParam().c_str(), c.steps, scales[r],
                err);
    EXPECT_LE(err, 1e-4) << "cfg_scale " << scales[r];
    // Mini-batching changes nothing (each sample's step is independent of the others).
    for (int mb : {1, 2}) {
      o.mini_batch = mb;
      EXPECT_EQ(generate(*c.net, c.cfg, o, c.n, c.labels), got) << "mini_batch " << mb;
    }
  }
}

// DDPM (respacing "K", learned variance): our Philox noise, so no PyTorch reference; it must be
// reproducible, independent of mini-batching and finite, and with 2 steps (t = 999, 0) equal the
// loop written out here: one guided learned-variance step with the seed's stream-0 noise, then the
// noise-free mean.
TEST_P(DiTSampling, DdpmLearnedVarianceIsDeterministic) {
  SamplingCase c = load_case(GetParam());
  const NetSpec& s = c.net->spec();
  GenerateOptions o;
  o.sampler = "ddpm";
  o.steps = 10;
  o.cfg_scale = 3.0;
  o.seed = 17;
  o.mini_batch = c.n;
  const std::vector<float> a = generate(*c.net, c.cfg, o, c.n, c.labels);
  EXPECT_TRUE(all_finite(a));
  EXPECT_EQ(generate(*c.net, c.cfg, o, c.n, c.labels), a);
  o.mini_batch = 1;
  EXPECT_EQ(generate(*c.net, c.cfg, o, c.n, c.labels), a);
  o.seed = 18;
  EXPECT_NE(generate(*c.net, c.cfg, o, c.n, c.labels), a);

  o.steps = 2;
  o.seed = 5;
  o.mini_batch = c.n;
  o.noise = c.x_T;
  const std::vector<float> got = generate(*c.net, c.cfg, o, c.n, c.labels);
  ASSERT_TRUE(all_finite(got));

  const AdmDiffusion d = AdmDiffusion::dit("2");
  ASSERT_EQ(d.timestep_map(), (std::vector<int>{0, 999}));
  const int B = c.n, C = s.in_chans, Co = s.out_chans;
  const size_t hw = size_t(s.img_size) * s.img_size, in = size_t(B) * s.in_numel();
  const size_t on = size_t(B) * s.out_numel();
  // The guided model output: conditional and null passes in one batch, channels 0..2 combined,
  // channel 3 and the variance from the conditional pass.
  auto guided = [&](const std::vector<float>& x, float tnet) {
    std::vector<float> xx(x), t(2 * B, tnet), out(2 * on), g(on);
    xx.insert(xx.end(), x.begin(), x.end());
    std::vector<int32_t> y(2 * B, int32_t(null_class(c.cfg)));
    for (int b = 0; b < B; ++b) y[b] = c.labels[b];
    c.net->forward(xx.data(), t.data(), y.data(), nullptr, out.data(), 2 * B, false);
    for (size_t b = 0; b < size_t(B); ++b)
      for (size_t k = 0; k < s.out_numel(); ++k) {
        const float cv = out[b * s.out_numel() + k], uv = out[on + b * s.out_numel() + k];
        g[b * s.out_numel() + k] = k < 3 * hw ? cv + 3.0f * (cv - uv) : cv;
      }
    return g;
  };
  std::vector<float> z(in);
  Philox(o.seed, sampler_noise_stream(0)).fill_normal(z.data(), z.size(), 0);
  auto written_out = [&](AdmVariance var) {
    std::vector<float> x(c.x_T), next(in);
    for (int i = 1; i >= 0; --i) {
      const std::vector<float> out = guided(x, float(d.network_time(i)));
      for (int b = 0; b < B; ++b)
        for (int ch = 0; ch < C; ++ch)
          for (size_t k = 0; k < hw; ++k) {
            const size_t xi = (size_t(b) * C + ch) * hw + k;
            const double eps = out[(size_t(b) * Co + ch) * hw + k];
            const double v = out[(size_t(b) * Co + C + ch) * hw + k];
            const auto mv = d.p_mean_variance(i, x[xi], eps, v, var);
            next[xi] = float(mv.mean + (i > 0 ? std::exp(0.5 * mv.log_variance) * z[xi] : 0.0));
          }
      x = next;
    }
    return x;
  };
  const std::vector<float> ref = written_out(AdmVariance::LearnedRange);
  const double err = rel_err(got.data(), ref.data(), ref.size());
  std::printf("%s ddpm2 cfg_scale 3: rel err to the written-out loop %.2e\n", GetParam().c_str(),
              err);
  EXPECT_LE(err, 1e-5);
  // The learned variance matters here: the fixed (large) one gives another sample.
  const std::vector<float> fixed = written_out(AdmVariance::FixedLarge);
  EXPECT_GT(rel_err(got.data(), fixed.data(), fixed.size()), 1e-2);
}

INSTANTIATE_TEST_SUITE_P(Cases, DiTSampling,
                         ::testing::Values("dit_p2_sampling", "skipdit_p2_sampling",
                                           "fitv1_p2_sampling"));

}  // namespace

// Skip-Cache against make_fixtures.py's skipdit_cache: five calls of a depth-8 Skip-DiT with
// N = 2 (full, cached, full, cached at t = 20 and then emptied, full), each output to 1e-5 of the
// float64 reference of Skip-DiT's DiT_cache.forward.
TEST(DiTSkipCache, MatchesTheOfficialCallSchedule) {
  const std::string dir = UVIT_TEST_FIXTURES;
  Config cfg = load_config(dir + "/skipdit_cache.json");
  std::map<std::string, Array> t;
  std::map<std::string, std::string> meta;
  for (auto& [k, a] : load_safetensors(dir + "/skipdit_cache.safetensors", &meta))
    t[k] = std::move(a);
  auto be = make_cpu_backend();
  auto net = make_network(cfg, *be);
  NamedArrays sd;
  for (const auto& e : net->table().entries()) sd.emplace_back(e.name, t.at("param." + e.name));
  net->load(sd, "skipdit_cache");
  const std::vector<float> xs = t.at("cache.x").to_f32(), ts = t.at("cache.t").to_f32();
  const std::vector<float> ref = t.at("cache.out").to_f32(), full = t.at("cache.full").to_f32();
  std::vector<int32_t> y;
  for (int64_t v : t.at("cache.y").to_i64()) y.push_back(int32_t(v));
  const int B = int(y.size()), calls = int(ts.size());
  const size_t in = xs.size() / calls, on = ref.size() / calls;
  net->set_skip_cache(std::stoi(meta.at("every")));
  std::vector<float> out(on), tv(B);
  for (int i = 0; i < calls; ++i) {
    std::fill(tv.begin(), tv.end(), ts[size_t(i)]);
    net->forward(xs.data() + i * in, tv.data(), y.data(), nullptr, out.data(), B);
    const double e = rel_err(out.data(), ref.data() + i * on, on);
    const double to_full = rel_err(out.data(), full.data() + i * on, on);
    std::printf("call %d (t %.0f): %.3g from the reference, %.3g from the full network\n", i,
                ts[size_t(i)], e, to_full);
    EXPECT_LE(e, 1e-5) << "call " << i;
  }
  // Off again: the full network.
  net->set_skip_cache(0);
  net->forward(xs.data() + in, tv.data(), y.data(), nullptr, out.data(), B);
  std::fill(tv.begin(), tv.end(), ts[1]);
  net->forward(xs.data() + in, tv.data(), y.data(), nullptr, out.data(), B);
  EXPECT_LE(rel_err(out.data(), full.data() + on, on), 1e-5);
}

TEST(DiTSkipCache, RefusedWhereThereAreNoSkips) {
  auto be = make_cpu_backend();
  Config cfg = load_config(std::string(UVIT_TEST_FIXTURES) + "/dit_p2.json");
  auto net = make_network(cfg, *be);
  EXPECT_THROW(net->set_skip_cache(2), Error);
  net->set_skip_cache(1);  // off is fine everywhere
}
