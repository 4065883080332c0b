// The live preview (GenerateOptions::preview, docs/samplers.md "Preview"): the x0 formulas, the
// hook's calls, its last x0 against a deterministic sampler's output, and samples unchanged by it,
// on a U-ViT (continuous VP), a DiT (ADM, learned sigma) and a flow DiT.
#include <gtest/gtest.h>

#include <cmath>

#include "uvit/backend.hpp"
#include "uvit/config.hpp"
#include "uvit/diffusion.hpp"
#include "uvit/flow.hpp"
#include "uvit/generate.hpp"
#include "uvit/network.hpp"

using namespace uvit;

TEST(Preview, DataPredictionIsTheFormula) {
  // Linear VP at t = 0.5: log alpha = -(beta_1 - beta_0) t^2 / 4 - beta_0 t / 2.
  const NoiseSchedule ns = NoiseSchedule::linear_vp();
  const double t = 0.5, la = -19.9 * t * t / 4 - 0.1 * t / 2;
  const double a = std::exp(la), s = std::sqrt(1 - a * a);
  const std::vector<double> x = {0.3, -1.2, 2.0}, eps = {1.0, 0.5, -0.25};
  std::vector<double> out(3);
  data_prediction(ns, t, x.data(), eps.data(), out.data(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(out[i], (x[i] - s * eps[i]) / a, 1e-12) << i;
  // Flow (x_t = t x1 + (1 - t) x0, v = x1 - x0): x1 = x_t + (1 - t) v.
  const double x1[2] = {0.8, -0.4}, noise[2] = {-1.0, 0.6}, tf = 0.25;
  double xt[2], v[2], got[2];
  for (int i = 0; i < 2; ++i) xt[i] = tf * x1[i] + (1 - tf) * noise[i], v[i] = x1[i] - noise[i];
  flow_data_prediction(tf, xt, v, got, 2);
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(got[i], x1[i], 1e-15) << i;
}

namespace {
struct Sampled {
  std::vector<float> out;
  std::vector<std::vector<float>> previews;
  std::vector<int> firsts, dones;
};

// generate() of 3 samples in mini-batches of 2 on preset `name` (random weights), with or without
// a preview hook every `interval` evaluations.
// "flow": fmnist_dit_tiny as a flow preset (SiT's setting: no variance output).
Sampled run(const std::string& name, const std::string& sampler, int steps, bool hook,
            int interval) {
  Config c = load_config(name == "flow" ? "fmnist_dit_tiny" : name);
  if (name == "flow") {
    apply_override(c, "schedule=flow");
    apply_override(c, "nnet.learn_sigma=false");
  }
  auto be = make_cpu_backend();
  auto net = make_network(c, *be);
  // Every weight non-zero: DiT's initialisation zeroes its output layer (its output would be 0).
  std::vector<float> w(net->num_params());
  for (size_t k = 0; k < w.size(); ++k) w[k] = 0.05f * float(std::sin(double(k) * 0.37));
  be->upload(net->params(), w.data(), w.size() * sizeof(float));
  GenerateOptions o;
  o.sampler = sampler;
  o.steps = steps;
  o.seed = 4;
  o.mini_batch = 2;
  Sampled r;
  if (hook) {
    o.preview_interval = interval;
    o.preview = [&](const float* x0, int B, int first, int done, int) {
      r.previews.emplace_back(x0, x0 + size_t(B) * c.spec.in_numel());
      r.firsts.push_back(first);
      r.dones.push_back(done);
    };
  }
  r.out = generate(*net, c, o, 3, {1, 2, 3});
  return r;
}
}  // namespace

TEST(Preview, SamplesUnchangedAndCalledEveryInterval) {
  struct Case {
    const char* preset;
    const char* sampler;
    int steps, evals;
  };
  // euler with 5 grid points: 4 evaluations; ADM ddpm on the learned-sigma DiT; dpm-solver++.
  for (const Case& k : {Case{"fmnist_uvit_tiny", "euler-maruyama", 5, 5},
                        Case{"fmnist_uvit_tiny", "dpm-solver++", 5, 5},
                        Case{"fmnist_dit_tiny", "ddpm", 5, 5}, Case{"flow", "euler", 5, 4}}) {
    const Sampled plain = run(k.preset, k.sampler, k.steps, false, 1);
    const Sampled seen = run(k.preset, k.sampler, k.steps, true, 2);
    EXPECT_EQ(plain.out, seen.out) << k.preset << " " << k.sampler;
    // Every 2nd evaluation of each mini-batch and its last: batches [0, 2) and [2, 3).
    std::vector<int> dones, firsts;
    for (int b = 0; b < 2; ++b)
      for (int e = 1; e <= k.evals; ++e)
        if (e % 2 == 0 || e == k.evals) dones.push_back(b * k.evals + e), firsts.push_back(2 * b);
    EXPECT_EQ(seen.dones, dones) << k.preset << " " << k.sampler;
    EXPECT_EQ(seen.firsts, firsts) << k.preset << " " << k.sampler;
    ASSERT_EQ(seen.previews.size(), dones.size());
    EXPECT_EQ(seen.previews[0].size(), plain.out.size() / 3 * 2);
    EXPECT_EQ(seen.previews.back().size(), plain.out.size() / 3);
  }
}

TEST(Preview, LastPreviewIsTheDeterministicSamplersOutput) {
  // The last step of DDIM (ADM's, U-ViT's) and of flow Euler lands on its x0 prediction: the
  // last preview of each mini-batch is the sample.
  struct Case {
    const char* preset;
    const char* sampler;
    double tol;  // U-ViT's DDIM uses alphabar where the preview uses alpha(t), sigma(t)
  };
  for (const Case& k : {Case{"fmnist_dit_tiny", "ddim", 0}, Case{"flow", "euler", 0},
                        Case{"fmnist_uvit_tiny", "ddim", 1e-5}}) {
    const Sampled r = run(k.preset, k.sampler, 4, true, 100);
    ASSERT_EQ(r.previews.size(), 2u) << k.preset;  // only each mini-batch's last
    std::vector<float> last = r.previews[0];
    last.insert(last.end(), r.previews[1].begin(), r.previews[1].end());
    ASSERT_EQ(last.size(), r.out.size());
    double err = 0;
    for (size_t i = 0; i < last.size(); ++i)
      err = std::max(err, double(std::fabs(last[i] - r.out[i])));
    EXPECT_LE(err, k.tol) << k.preset << " " << k.sampler;
    // and not trivially so: an earlier preview differs
    const Sampled every = run(k.preset, k.sampler, 4, true, 1);
    EXPECT_NE(every.previews[0], every.previews[3]) << k.preset;
  }
}
