// DiT's ADM diffusion (uvit/adm.hpp) against tests/reference/adm_reference.py (adm.safetensors,
// float64), plus hand-checked respacing facts (docs/dit.md) and a finite-difference gradient check.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "uvit/adm.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

using namespace uvit;

namespace {

const std::map<std::string, Array>& fx() {
  static const std::map<std::string, Array> m = [] {
    std::map<std::string, Array> r;
    for (auto& [k, a] : load_safetensors(std::string(UVIT_TEST_FIXTURES) + "/adm.safetensors"))
      r[k] = std::move(a);
    return r;
  }();
  return m;
}

std::vector<double> f64(const std::string& key) {
  const Array& a = fx().at(key);
  EXPECT_EQ(a.dtype, DType::F64) << key;
  return std::vector<double>(a.as<double>(), a.as<double>() + a.numel());
}

std::vector<int> ints(const std::string& key) {
  std::vector<int> r;
  for (int64_t v : fx().at(key).to_i64()) r.push_back(int(v));
  return r;
}

// max |got - want| / max |want| (max |got - want| if want is all zeros)
template <class T>
double rel_err(const std::vector<T>& got, const std::vector<double>& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    num = std::max(num, std::fabs(double(got[i]) - want[i]));
    den = std::max(den, std::fabs(want[i]));
  }
  return den > 0 ? num / den : num;
}

const char* kSections[] = {"250", "100", "50", "25", "10,20,30", "ddim25", "ddim50", "ddim30"};

}  // namespace

// ---------------------------------------------------------------- respacing

TEST(AdmRespacing, MapsMatchReference) {
  for (const char* s : kSections)
    EXPECT_EQ(space_timesteps(1000, s), ints(std::string("map.") + s)) << s;
}

TEST(AdmRespacing, HandChecked) {
  const auto m250 = space_timesteps(1000, "250");
  ASSERT_EQ(m250.size(), 250u);
  EXPECT_EQ(std::vector<int>(m250.begin(), m250.begin() + 3), (std::vector<int>{0, 4, 8}));
  EXPECT_EQ(std::vector<int>(m250.end() - 2, m250.end()), (std::vector<int>{995, 999}));
  const auto m50 = space_timesteps(1000, "50");
  ASSERT_EQ(m50.size(), 50u);
  EXPECT_EQ(std::vector<int>(m50.begin(), m50.begin() + 5), (std::vector<int>{0, 20, 41, 61, 82}));
  EXPECT_EQ(std::vector<int>(m50.end() - 2, m50.end()), (std::vector<int>{979, 999}));
  // Stride 999/99 = 10.09...: index 5 is round(50.45) = 50, index 6 round(60.54) = 61.
  const auto m100 = space_timesteps(1000, "100");
  EXPECT_EQ(m100[5], 50);
  EXPECT_EQ(m100[6], 61);
  // Python's round is half to even: stride 2.5 gives round(2.5) = 2 (not 3), round(5.0) = 5.
  EXPECT_EQ(space_timesteps(6, "3"), (std::vector<int>{0, 2, 5}));
  EXPECT_EQ(space_timesteps(8, "3"), (std::vector<int>{0, 4, 7}));  // round(3.5) = 4
  // ddimK: the smallest integer stride with exactly K steps (ddim30: 34, not 1000/30).
  const auto d25 = space_timesteps(1000, "ddim25");
  ASSERT_EQ(d25.size(), 25u);
  EXPECT_EQ(d25[1], 40);
  EXPECT_EQ(d25.back(), 960);
  EXPECT_EQ(space_timesteps(1000, "ddim50").back(), 980);
  EXPECT_EQ(space_timesteps(1000, "ddim30")[1], 34);
  EXPECT_EQ(space_timesteps(1000, "1000").size(), 1000u);
  EXPECT_EQ(space_timesteps(1000, "1"), (std::vector<int>{0}));
  EXPECT_EQ(space_timesteps(10, " 2 "), (std::vector<int>{0, 9}));
  // sections: 1000 = 334 + 333 + 333
  const auto sec = space_timesteps(1000, "1,2,2");
  EXPECT_EQ(sec, (std::vector<int>{0, 334, 666, 667, 999}));
}

TEST(AdmRespacing, BadStringsThrow) {
  for (const char* s : {"", "abc", "25x", "-5", "+5", "1e3", "10,,20", ",", "2000", "0", "0,0",
                        "ddim", "ddimx", "ddim1", "ddim999", "ddim-4", "ddim 2000"})
    EXPECT_THROW(space_timesteps(1000, s), Error) << "'" << s << "'";
  EXPECT_THROW(AdmDiffusion::dit("abc"), Error);
  EXPECT_THROW(space_timesteps(0, "1"), Error);
}

// ---------------------------------------------------------------- schedules

TEST(AdmSchedule, ArraysMatchReference) {
  struct Named {
    const char* name;
    const std::vector<double>& (AdmDiffusion::*get)() const;
  };
  const Named arrays[] = {
      {"betas", &AdmDiffusion::betas},
      {"alphas_cumprod", &AdmDiffusion::alphas_cumprod},
      {"alphas_cumprod_prev", &AdmDiffusion::alphas_cumprod_prev},
      {"alphas_cumprod_next", &AdmDiffusion::alphas_cumprod_next},
      {"sqrt_alphas_cumprod", &AdmDiffusion::sqrt_alphas_cumprod},
      {"sqrt_one_minus_alphas_cumprod", &AdmDiffusion::sqrt_one_minus_alphas_cumprod},
      {"log_one_minus_alphas_cumprod", &AdmDiffusion::log_one_minus_alphas_cumprod},
      {"sqrt_recip_alphas_cumprod", &AdmDiffusion::sqrt_recip_alphas_cumprod},
      {"sqrt_recipm1_alphas_cumprod", &AdmDiffusion::sqrt_recipm1_alphas_cumprod},
      {"posterior_variance", &AdmDiffusion::posterior_variance},
      {"posterior_log_variance_clipped", &AdmDiffusion::posterior_log_variance_clipped},
      {"posterior_mean_coef1", &AdmDiffusion::posterior_mean_coef1},
      {"posterior_mean_coef2", &AdmDiffusion::posterior_mean_coef2},
  };
  for (const char* s : {"full", "250", "ddim50"}) {
    const AdmDiffusion d = AdmDiffusion::dit(std::string(s) == "full" ? "" : s);
    EXPECT_EQ(d.timestep_map(), ints(std::string("sched.") + s + ".timestep_map")) << s;
    EXPECT_EQ(d.original_num_steps(), 1000);
    for (const Named& a : arrays) {
      const std::string key = std::string("sched.") + s + "." + a.name;
      // Elementwise relative error (the arrays span many decades).
      const auto want = f64(key);
      const auto& got = (d.*a.get)();
      ASSERT_EQ(got.size(), want.size()) << key;
      double worst = 0;
      for (size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::fabs(got[i] - want[i]) / std::max(std::fabs(want[i]), 1e-300));
      EXPECT_LE(worst, 1e-13) << key;
    }
  }
}

TEST(AdmSchedule, Facts) {
  const auto b = adm_linear_betas();
  ASSERT_EQ(b.size(), 1000u);
  EXPECT_EQ(b[0], 0.0001);
  EXPECT_EQ(b[999], 0.02);
  EXPECT_EQ(b[1], 0.0001 + (0.02 - 0.0001) / 999);
  const AdmDiffusion s250 = AdmDiffusion::dit("250");
  EXPECT_EQ(s250.num_timesteps(), 250);
  EXPECT_EQ(s250.network_time(249), 999.0);
  EXPECT_EQ(s250.network_time(1), 4.0);
  EXPECT_EQ(s250.network_time(0), 0.0);
  EXPECT_THROW(s250.network_time(250), Error);
  EXPECT_EQ(s250.posterior_variance()[0], 0.0);
  EXPECT_EQ(s250.posterior_log_variance_clipped()[0], s250.posterior_log_variance_clipped()[1]);
  // The values docs/dit.md lists (float64, 17 significant digits).
  EXPECT_DOUBLE_EQ(s250.betas()[1], 0.00059906556447564263);
  EXPECT_DOUBLE_EQ(s250.betas()[249], 0.077519344992350026);
  EXPECT_DOUBLE_EQ(s250.posterior_variance()[1], 8.5702534405648125e-05);
  EXPECT_DOUBLE_EQ(s250.posterior_variance()[249], 0.077519082078606971);
  EXPECT_DOUBLE_EQ(s250.posterior_log_variance_clipped()[0], -9.3646281598030843);
  const AdmDiffusion d50 = AdmDiffusion::dit("ddim50");
  EXPECT_DOUBLE_EQ(d50.betas()[49], 0.32461444752912549);
  EXPECT_DOUBLE_EQ(d50.posterior_variance()[25], 0.17662303428009896);
  // "" keeps every step but recomputes the betas from abar (a SpacedDiffusion, as DiT trains).
  const AdmDiffusion full = AdmDiffusion::dit("");
  EXPECT_EQ(full.num_timesteps(), 1000);
  EXPECT_DOUBLE_EQ(full.betas()[0], 9.9999999999988987e-05);
  EXPECT_NE(full.betas()[0], 0.0001);
  const AdmDiffusion plain(adm_linear_betas());
  EXPECT_EQ(plain.betas()[0], 0.0001);
  EXPECT_EQ(plain.timestep_map()[999], 999);
  EXPECT_THROW(AdmDiffusion(std::vector<double>{0.5}), Error);
  EXPECT_THROW(AdmDiffusion(std::vector<double>{0.1, 0.0}), Error);
  EXPECT_THROW(AdmDiffusion(adm_linear_betas(), {0, 1000}), Error);
}

// ---------------------------------------------------------------- sampling steps

namespace {
template <class T>
std::vector<T> cast(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

template <class T>
std::vector<T> slice(const std::vector<double>& v, size_t b, size_t per) {
  return std::vector<T>(v.begin() + b * per, v.begin() + (b + 1) * per);
}

template <class T>
void check_ddpm(double tol) {
  const AdmDiffusion d = AdmDiffusion::dit("250");
  const auto idx = ints("ddpm.i");
  const auto x = f64("ddpm.x"), mo = f64("ddpm.model_out"), z = f64("ddpm.noise");
  const std::vector<int64_t>& sh = fx().at("ddpm.x").shape;
  const int C = int(sh[1]);
  const int64_t N = sh[2];
  const size_t per = size_t(C * N);
  const struct {
    const char* key;
    AdmVariance var;
  } kinds[] = {{"ddpm.out", AdmVariance::LearnedRange},
               {"ddpm.out_fixed_large", AdmVariance::FixedLarge},
               {"ddpm.out_fixed_small", AdmVariance::FixedSmall}};
  for (const auto& kind : kinds) {
    const auto want = f64(kind.key);
    for (size_t b = 0; b < idx.size(); ++b) {
      const auto xb = slice<T>(x, b, per), mob = slice<T>(mo, b, 2 * per), zb = slice<T>(z, b, per);
      std::vector<T> out(per);
      // At i = 0 no noise is drawn: pass none.
      d.ddpm_step<T>(idx[b], xb.data(), mob.data(), 2 * C, idx[b] == 0 ? nullptr : zb.data(),
                     out.data(), 1, C, N, kind.var);
      EXPECT_LE(
          rel_err(out, std::vector<double>(want.begin() + b * per, want.begin() + (b + 1) * per)),
          tol)
          << kind.key << " sample " << b << " i " << idx[b];
    }
  }
}
}  // namespace

TEST(AdmSampling, DdpmStepMatchesReference) {
  check_ddpm<double>(1e-13);
  check_ddpm<float>(1e-6);
}

TEST(AdmSampling, PMeanVarianceMatchesReference) {
  const AdmDiffusion d = AdmDiffusion::dit("250");
  const auto idx = ints("ddpm.i");
  const auto x = f64("ddpm.x"), mo = f64("ddpm.model_out");
  const auto mean = f64("ddpm.mean"), lv = f64("ddpm.log_variance"), x0 = f64("ddpm.pred_x0");
  const int C = int(fx().at("ddpm.x").shape[1]);
  const size_t N = size_t(fx().at("ddpm.x").shape[2]), per = C * N;
  std::vector<double> gm, gl, gx;
  for (size_t b = 0; b < idx.size(); ++b)
    for (size_t e = 0; e < per; ++e) {
      const auto r =
          d.p_mean_variance(idx[b], x[b * per + e], mo[b * 2 * per + e], mo[b * 2 * per + per + e]);
      gm.push_back(r.mean);
      gl.push_back(r.log_variance);
      gx.push_back(r.pred_x0);
    }
  EXPECT_LE(rel_err(gm, mean), 1e-13);
  EXPECT_LE(rel_err(gl, lv), 1e-13);
  EXPECT_LE(rel_err(gx, x0), 1e-13);
}

TEST(AdmSampling, DdimStepMatchesReference) {
  const AdmDiffusion d = AdmDiffusion::dit("ddim50");
  const auto idx = ints("ddim.i");
  const auto x = f64("ddim.x"), mo = f64("ddim.model_out"), want = f64("ddim.out");
  const int C = int(fx().at("ddim.x").shape[1]);
  const int64_t N = fx().at("ddim.x").shape[2];
  const size_t per = size_t(C * N);
  for (size_t b = 0; b < idx.size(); ++b) {
    const std::vector<double> wb(want.begin() + b * per, want.begin() + (b + 1) * per);
    const auto xb = slice<double>(x, b, per), mob = slice<double>(mo, b, 2 * per);
    std::vector<double> out(per);
    d.ddim_step<double>(idx[b], xb.data(), mob.data(), 2 * C, out.data(), 1, C, N);
    EXPECT_LE(rel_err(out, wb), 1e-13) << "sample " << b;
    // model_channels = C (no variance channels): the same.
    std::vector<double> eps(mob.begin(), mob.begin() + per), out2(per);
    d.ddim_step<double>(idx[b], xb.data(), eps.data(), C, out2.data(), 1, C, N);
    EXPECT_EQ(out2, out);
    const auto xf = cast<float>(xb), mof = cast<float>(mob);
    std::vector<float> outf(per);
    d.ddim_step<float>(idx[b], xf.data(), mof.data(), 2 * C, outf.data(), 1, C, N);
    EXPECT_LE(rel_err(outf, wb), 1e-6) << "float sample " << b;
  }
}

TEST(AdmSampling, BatchLayoutAndChecks) {
  // Two samples in one call equal two calls; at i = 0 the step is the posterior mean.
  const AdmDiffusion d = AdmDiffusion::dit("250");
  const int C = 2;
  const int64_t N = 3;
  std::vector<double> x(12), mo(24), z(12), one(6), both(12);
  for (size_t k = 0; k < x.size(); ++k) x[k] = std::sin(double(k) + 1), z[k] = std::cos(3.0 * k);
  for (size_t k = 0; k < mo.size(); ++k) mo[k] = 0.7 * std::sin(0.3 * double(k) + 2);
  d.ddpm_step<double>(100, x.data(), mo.data(), 2 * C, z.data(), both.data(), 2, C, N);
  for (int b = 0; b < 2; ++b) {
    d.ddpm_step<double>(100, x.data() + b * 6, mo.data() + b * 12, 2 * C, z.data() + b * 6,
                        one.data(), 1, C, N);
    for (int k = 0; k < 6; ++k) EXPECT_EQ(one[size_t(k)], both[size_t(b * 6 + k)]);
  }
  d.ddpm_step<double>(0, x.data(), mo.data(), 2 * C, nullptr, both.data(), 2, C, N);
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < C; ++c)
      for (int k = 0; k < N; ++k) {
        const size_t xi = size_t((b * C + c) * N + k), mi = size_t((b * 2 * C + c) * N + k);
        EXPECT_EQ(both[xi], d.p_mean_variance(0, x[xi], mo[mi], mo[mi + C * N]).mean);
      }
  EXPECT_THROW(d.ddpm_step<double>(5, x.data(), mo.data(), 2 * C, nullptr, both.data(), 2, C, N),
               Error);
  EXPECT_THROW(d.ddpm_step<double>(5, x.data(), mo.data(), C, z.data(), both.data(), 2, C, N),
               Error);
  EXPECT_THROW(d.ddpm_step<double>(250, x.data(), mo.data(), 2 * C, z.data(), both.data(), 2, C, N),
               Error);
  EXPECT_THROW(d.ddim_step<double>(-1, x.data(), mo.data(), 2 * C, both.data(), 2, C, N), Error);
}

// ---------------------------------------------------------------- training loss

TEST(AdmLoss, HybridLossAndGradientMatchReference) {
  const AdmDiffusion d = AdmDiffusion::dit("");
  const auto t = ints("loss.t");
  const auto x0 = f64("loss.x0"), noise = f64("loss.noise"), mo = f64("loss.model_out");
  const int B = int(t.size()), C = int(fx().at("loss.x0").shape[1]);
  const int64_t N = fx().at("loss.x0").shape[2];
  ASSERT_EQ(t[0], 0);  // the decoder-NLL path is covered
  std::vector<double> xt(x0.size());
  d.q_sample<double>(t.data(), x0.data(), noise.data(), xt.data(), B, C * N);
  EXPECT_LE(rel_err(xt, f64("loss.x_t")), 1e-14);

  std::vector<double> grad(mo.size());
  const auto r = d.hybrid_loss<double>(t.data(), x0.data(), noise.data(), mo.data(), true, B, C, N,
                                       grad.data());
  EXPECT_NEAR(r.loss, f64("loss.loss")[0], 1e-13 * std::fabs(r.loss));
  EXPECT_LE(rel_err(r.mse, f64("loss.mse")), 1e-13);
  EXPECT_LE(rel_err(r.vb, f64("loss.vb")), 1e-12);
  EXPECT_LE(rel_err(grad, f64("loss.grad")), 1e-12);

  // float inputs, math in double
  const auto x0f = cast<float>(x0), nf = cast<float>(noise), mof = cast<float>(mo);
  std::vector<float> gradf(mo.size());
  const auto rf = d.hybrid_loss<float>(t.data(), x0f.data(), nf.data(), mof.data(), true, B, C, N,
                                       gradf.data());
  EXPECT_NEAR(rf.loss, r.loss, 1e-5 * r.loss);
  EXPECT_LE(rel_err(gradf, f64("loss.grad")), 1e-5);

  // grad may be null; the value is the same
  EXPECT_EQ(d.hybrid_loss<double>(t.data(), x0.data(), noise.data(), mo.data(), true, B, C, N).loss,
            r.loss);
}

TEST(AdmLoss, WithoutLearnedSigmaIsMse) {
  const AdmDiffusion d = AdmDiffusion::dit("");
  const auto t = ints("loss_nosigma.t");
  const auto x0 = f64("loss_nosigma.x0"), noise = f64("loss_nosigma.noise"),
             mo = f64("loss_nosigma.model_out");
  const int B = int(t.size()), C = int(fx().at("loss_nosigma.x0").shape[1]);
  const int64_t N = fx().at("loss_nosigma.x0").shape[2];
  std::vector<double> grad(mo.size());
  const auto r = d.hybrid_loss<double>(t.data(), x0.data(), noise.data(), mo.data(), false, B, C, N,
                                       grad.data());
  EXPECT_NEAR(r.loss, f64("loss_nosigma.loss")[0], 1e-14);
  EXPECT_LE(rel_err(r.mse, f64("loss_nosigma.mse")), 1e-14);
  EXPECT_TRUE(r.vb.empty());
  EXPECT_LE(rel_err(grad, f64("loss_nosigma.grad")), 1e-14);
}

TEST(AdmLoss, GradientMatchesFiniteDifferences) {
  // v channels: central differences of the loss in double. eps channels: only the MSE gradient (the
  // official code detaches eps in vb, so the loss VALUE still depends on eps through vb's mean, but
  // its gradient does not: finite differences would include that part).
  const AdmDiffusion d = AdmDiffusion::dit("");
  const int B = 3, C = 2;
  const int64_t N = 5;
  const int t[B] = {0, 3, 700};
  std::vector<double> x0(B * C * N), noise(B * C * N), mo(B * 2 * C * N);
  for (size_t k = 0; k < x0.size(); ++k) {
    x0[k] = 1.3 * std::sin(1.7 * double(k) + 0.2);
    noise[k] = std::cos(2.3 * double(k));
  }
  for (size_t k = 0; k < mo.size(); ++k) mo[k] = 0.9 * std::sin(0.77 * double(k) + 1);
  std::vector<double> grad(mo.size());
  d.hybrid_loss<double>(t, x0.data(), noise.data(), mo.data(), true, B, C, N, grad.data());
  for (size_t k = 0; k < mo.size(); ++k) {
    const double h = 1e-6, keep = mo[k];
    mo[k] = keep + h;
    const double lp =
        d.hybrid_loss<double>(t, x0.data(), noise.data(), mo.data(), true, B, C, N).loss;
    mo[k] = keep - h;
    const double lm =
        d.hybrid_loss<double>(t, x0.data(), noise.data(), mo.data(), true, B, C, N).loss;
    mo[k] = keep;
    const size_t b = k / size_t(2 * C * N), ch = (k / size_t(N)) % size_t(2 * C);
    if (ch < size_t(C)) {  // eps channel: the MSE gradient alone
      EXPECT_DOUBLE_EQ(grad[k], 2.0 * (mo[k] - noise[b * C * N + ch * N + k % N]) / (B * C * N));
      continue;
    }
    EXPECT_NEAR(grad[k], (lp - lm) / (2 * h), 1e-8 + 1e-6 * std::fabs(grad[k])) << "element " << k;
  }
}

TEST(AdmLoss, DecoderEdgeComparedInElementType) {
  // PyTorch compares a float32 x0 with -0.999 in float32: x0 = float(-0.999) is not below it and
  // takes the middle bin. In double the same value (-0.99900001...) is below -0.999 (the open edge
  // bin).
  const AdmDiffusion d = AdmDiffusion::dit("");
  const int t[1] = {0};
  const float xf[1] = {-0.999f}, nf[1] = {0.1f}, mf[2] = {0.05f, 0.2f};
  const double xd_mid[1] = {-0.999}, xd_edge[1] = {double(-0.999f)}, nd[1] = {0.1f},
               md[2] = {0.05f, 0.2f};
  const double lf = d.hybrid_loss<float>(t, xf, nf, mf, true, 1, 1, 1).loss;
  const double lmid = d.hybrid_loss<double>(t, xd_mid, nd, md, true, 1, 1, 1).loss;
  const double ledge = d.hybrid_loss<double>(t, xd_edge, nd, md, true, 1, 1, 1).loss;
  EXPECT_NEAR(lf, lmid, 1e-5 * lmid);
  EXPECT_GT(std::fabs(ledge - lmid), 0.1 * lmid);
}
