// The CPU backend's bf16 mode (docs/cpu_bf16.md) against its fp32 mode: the GEMMs (all transposes,
// padded leading dimensions, alpha/beta, the fp32-C weight gradient, linear), attention forward
// and backward, the adaLN kernels, the whole network of every family (forward and gradients),
// training losses, and bit-identical resume. The elementwise, norm and token kernels are compared
// in test_cuda_kernels.cpp (its "cpu bf16" mode). Inputs are rounded to bf16 first so both modes
// see the same values; the bounds are those of the CUDA bf16 tests. Skipped, saying so, where the
// CPU has no bf16 units.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "gpu_compare.hpp"
#include "model_compare.hpp"
#include "uvit/array.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace fs = std::filesystem;
using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

namespace {

#define REQUIRE_CPU_BF16() \
  if (!cpu_has_bf16()) GTEST_SKIP() << "this CPU has no bf16 units (AVX512-BF16 or AMX)"

VecF round_bf16(VecF v) {
  for (auto& x : v) x = bf16_to_float(float_to_bf16(x));
  return v;
}

// bf16 host copies of act tensors and back.
struct Bf16 {
  std::vector<uint16_t> h;
  explicit Bf16(const VecF& v) : h(v.size()) {
    for (size_t i = 0; i < v.size(); ++i) h[i] = float_to_bf16(v[i]);
  }
  float* p() { return reinterpret_cast<float*>(h.data()); }
  VecF f32() const {
    VecF v(h.size());
    for (size_t i = 0; i < h.size(); ++i) v[i] = bf16_to_float(h[i]);
    return v;
  }
};

struct Fixture {
  std::unique_ptr<Backend> f32 = make_cpu_backend();
  std::unique_ptr<Backend> bf = make_backend("cpu", "bf16");
};

}  // namespace

TEST(CpuBf16, ModeAndRounding) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  EXPECT_EQ(fx.bf->precision(), "bf16");
  EXPECT_EQ(fx.bf->act_bytes(), 2u);
  // Round to nearest even, ties included: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 (to 1, even);
  // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6 (to the even 1 + 2^-6).
  const VecF x = {1.f + 1.f / 256, 1.f + 3.f / 256, -2.5f, 1e-40f, INFINITY, 3.3895e38f};
  Bf16 out(VecF(x.size(), 0.f));
  fx.bf->to_act(x.data(), out.p(), x.size());
  const VecF got = out.f32();
  EXPECT_EQ(got[0], 1.f);
  EXPECT_EQ(got[1], 1.f + 4.f / 256);
  EXPECT_EQ(got[2], -2.5f);
  EXPECT_EQ(got, round_bf16(x));  // the same rounding as uvit::float_to_bf16 (the file loaders')
  const VecF nan = {NAN};
  Bf16 n(VecF{0.f});
  fx.bf->to_act(nan.data(), n.p(), 1);
  EXPECT_TRUE(std::isnan(n.f32()[0]));
}

TEST(CpuBf16, GemmMatchesFp32) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  struct S {
    int M, N, K, pad;
  };
  for (const S s : {S{1, 1, 1, 0}, S{17, 33, 65, 0}, S{256, 384, 384, 0}, S{130, 96, 72, 5}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (const auto [alpha, beta] : {std::pair{1.f, 0.f}, std::pair{0.5f, 1.f}}) {
          const int lda = (ta ? s.M : s.K) + s.pad, ldb = (tb ? s.K : s.N) + s.pad,
                    ldc = s.N + s.pad;
          const VecF A = round_bf16(randv(size_t(ta ? s.K : s.M) * lda, 1)),
                     B = round_bf16(randv(size_t(tb ? s.N : s.K) * ldb, 2)),
                     C = round_bf16(randv(size_t(s.M) * ldc, 3));
          VecF ref = C;
          fx.f32->gemm(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, ref.data(),
                       ldc);
          Bf16 a(A), b(B), c(C);
          fx.bf->gemm(ta, tb, s.M, s.N, s.K, alpha, a.p(), lda, b.p(), ldb, beta, c.p(), ldc);
          compare(cat("gemm M=", s.M, " N=", s.N, " K=", s.K, " ta=", ta, " tb=", tb,
                      " pad=", s.pad, " beta=", beta),
                  c.f32(), ref, 1e-2);
        }
    // The weight gradient: C (fp32) += A^T B with bf16 A, B.
    const int lda = s.M + s.pad, ldb = s.N + s.pad, ldc = s.N + s.pad;
    const VecF A = round_bf16(randv(size_t(s.K) * lda, 4)),
               B = round_bf16(randv(size_t(s.K) * ldb, 5));
    VecF ref = randv(size_t(s.M) * ldc, 6), got = ref;
    fx.f32->gemm_wgrad(s.M, s.N, s.K, A.data(), lda, B.data(), ldb, ref.data(), ldc);
    Bf16 a(A), b(B);
    fx.bf->gemm_wgrad(s.M, s.N, s.K, a.p(), lda, b.p(), ldb, got.data(), ldc);
    // fp32 accumulation of exact bf16 products: only the summation order differs
    compare(cat("gemm_wgrad M=", s.M, " N=", s.N, " K=", s.K), got, ref, 1e-5);
  }
}

TEST(CpuBf16, LinearMatchesFp32) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  const int M = 70, N = 96, K = 48;
  const VecF x = round_bf16(randv(size_t(M) * K, 7)), w = round_bf16(randv(size_t(N) * K, 8)),
             bias = round_bf16(randv(N, 9)), res = round_bf16(randv(size_t(M) * N, 10));
  for (int mode = 0; mode < 3; ++mode) {  // no residual, residual == y, separate residual
    VecF ref = mode == 1 ? res : VecF(size_t(M) * N, 0.f);
    fx.f32->linear(x.data(), K, w.data(), K, bias.data(),
                   mode == 2   ? res.data()
                   : mode == 1 ? ref.data()
                               : nullptr,
                   ref.data(), N, M, N, K);
    Bf16 bx(x), bw(w), bb(bias), br(res), by(mode == 1 ? res : VecF(size_t(M) * N, 0.f));
    fx.bf->linear(bx.p(), K, bw.p(), K, bb.p(),
                  mode == 2   ? br.p()
                  : mode == 1 ? by.p()
                              : nullptr,
                  by.p(), N, M, N, K);
    compare(cat("linear residual mode ", mode), by.f32(), ref, 1e-2);
  }
}

TEST(CpuBf16, AttentionMatchesFp32) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  struct Shape {
    int B, N, H, Dh;
  };
  for (const Shape s : {Shape{2, 65, 8, 64}, Shape{1, 258, 3, 72}, Shape{3, 17, 2, 32},
                        Shape{2, 33, 2, 33}, Shape{2, 1, 2, 16}, Shape{1, 300, 1, 64}}) {
    const int D = s.H * s.Dh;
    const size_t nqkv = size_t(s.B) * s.N * 3 * D, nout = size_t(s.B) * s.N * D,
                 nlse = size_t(s.B) * s.H * s.N;
    const VecF qkv = round_bf16(randv(nqkv, 11, -2.f, 2.f)), dout = round_bf16(randv(nout, 12));
    const float scale = 1.f / std::sqrt(float(s.Dh));
    const std::string tag = cat("B=", s.B, " N=", s.N, " H=", s.H, " Dh=", s.Dh);
    VecF out(nout), lse(nlse), dqkv(nqkv);
    fx.f32->attention_fwd(qkv.data(), out.data(), lse.data(), s.B, s.N, s.H, s.Dh, scale);
    Bf16 q(qkv), o(VecF(nout, 0.f));
    VecF lse_bf(nlse);
    fx.bf->attention_fwd(q.p(), o.p(), lse_bf.data(), s.B, s.N, s.H, s.Dh, scale);
    compare("attention fwd out " + tag, o.f32(), out, 1e-2);
    compare("attention fwd lse " + tag, lse_bf, lse, 1e-5);
    // The backward from the same (rounded) out and lse on both sides.
    const VecF out_r = round_bf16(out);
    fx.f32->attention_bwd(dout.data(), qkv.data(), out_r.data(), lse.data(), dqkv.data(), s.B, s.N,
                          s.H, s.Dh, scale);
    Bf16 d(dout), orr(out_r), dq(VecF(nqkv, 123.f));
    fx.bf->attention_bwd(d.p(), q.p(), orr.p(), lse.data(), dq.p(), s.B, s.N, s.H, s.Dh, scale);
    compare("attention bwd dqkv " + tag, dq.f32(), dqkv, 1e-2);
  }
}

TEST(CpuBf16, AdaLnMatchesFp32) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  const int B = 3, N = 37, D = 80, ldm = 6 * D;
  const size_t n = size_t(B) * N * D, nm = size_t(B) * ldm;
  const VecF x = round_bf16(randv(n, 13)), y = round_bf16(randv(n, 14)),
             mod = round_bf16(randv(nm, 15)), dy = round_bf16(randv(n, 16));
  const float *shift = mod.data(), *scl = mod.data() + D, *gate = mod.data() + 2 * D;
  Bf16 bx(x), by(y), bm(mod), bdy(dy);
  const float *bshift = bm.p(), *bscl = fx.bf->act_at(bm.p(), D),
              *bgate = fx.bf->act_at(bm.p(), 2 * D);
  VecF ref(n), dsh(nm), dsc(nm);
  Bf16 out(VecF(n, 0.f)), odsh(VecF(nm, 0.f)), odsc(VecF(nm, 0.f));
  fx.f32->modulate_fwd(x.data(), shift, scl, ldm, ref.data(), B, N, D);
  fx.bf->modulate_fwd(bx.p(), bshift, bscl, ldm, out.p(), B, N, D);
  compare("modulate_fwd", out.f32(), ref, 1e-2);
  fx.f32->modulate_bwd(dy.data(), x.data(), scl, ldm, ref.data(), dsh.data(), dsc.data(), B, N, D);
  fx.bf->modulate_bwd(bdy.p(), bx.p(), bscl, ldm, out.p(), odsh.p(), odsc.p(), B, N, D);
  compare("modulate_bwd dx", out.f32(), ref, 1e-2);
  compare("modulate_bwd dshift", odsh.f32(), dsh, 1e-2);
  compare("modulate_bwd dscale", odsc.f32(), dsc, 1e-2);
  fx.f32->gate_fwd(x.data(), y.data(), gate, ldm, ref.data(), B, N, D);
  fx.bf->gate_fwd(bx.p(), by.p(), bgate, ldm, out.p(), B, N, D);
  compare("gate_fwd", out.f32(), ref, 1e-2);
  VecF dg(nm);
  Bf16 odg(VecF(nm, 0.f));
  fx.f32->gate_bwd(dy.data(), y.data(), gate, ldm, ref.data(), dg.data(), B, N, D);
  fx.bf->gate_bwd(bdy.p(), by.p(), bgate, ldm, out.p(), odg.p(), B, N, D);
  compare("gate_bwd dy", out.f32(), ref, 1e-2);
  compare("gate_bwd dgate", odg.f32(), dg, 1e-2);
}

// The encoders are fp32 models: their kernels refuse a bf16 backend with a one-line error.
TEST(CpuBf16, EncoderKernelsRefuseBf16) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  VecF x(16, 1.f), y(16);
  try {
    fx.bf->group_norm(x.data(), x.data(), x.data(), y.data(), 1, 4, 4, 2, 1e-6f, false);
    FAIL() << "group_norm ran on a bf16 backend";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fp32 only"), std::string::npos) << e.what();
  }
}

// The whole network of every family (U-ViT, U-ViT t2i, DiT, Skip-DiT, LightningDiT, ...): bf16
// against fp32 within the CUDA bf16 bounds (test_cuda_model.cpp): outputs 3e-2, gradients 1e-1 of
// the worst tensor's max.
class CpuBf16Model : public ::testing::TestWithParam<int> {};

TEST_P(CpuBf16Model, ForwardAndGradientsMatchFp32) {
  REQUIRE_CPU_BF16();
  const Config c = config_from(kConfigs[GetParam()]);
  const int B = 3;
  Fixture fx;
  const Result ref = run_net(*fx.f32, c, B, true), ref_inf = run_net(*fx.f32, c, B, false);
  const Result g = run_net(*fx.bf, c, B, true), gi = run_net(*fx.bf, c, B, false);
  std::string worst;
  const double eo = rel(g.out, ref.out), ei = rel(gi.out, ref_inf.out);
  const double eg = worst_grad(network_param_table(c), g.grads, ref.grads, &worst);
  std::printf("[%s cpu bf16] forward %.3g (inference %.3g), worst gradient %.3g (%s)\n",
              c.config_name.c_str(), eo, ei, eg, worst.c_str());
  EXPECT_LE(eo, 3e-2);
  EXPECT_LE(ei, 3e-2);
  EXPECT_LE(eg, 1e-1) << worst;
}

INSTANTIATE_TEST_SUITE_P(Cpu, CpuBf16Model, ::testing::Range(0, int(std::size(kConfigs))));

// Training in bf16: the losses track fp32 (5%, the CUDA bf16 bound), and 6 steps straight equal
// 3 steps + resume + 3 steps bit for bit (the checkpoints' parameters compared).
TEST(CpuBf16Train, LossTracksFp32AndResumeIsBitIdentical) {
  REQUIRE_CPU_BF16();
  const Config c = train_config();
  auto data = std::make_shared<NoiseDataset>();
  const fs::path root = fs::temp_directory_path() / "uvit_cpu_bf16_train";
  fs::remove_all(root);
  Fixture fx;
  const auto [lc, pc] = train_run(c, *fx.f32, data, (root / "fp32").string(), 6, false);
  const auto [l1, p1] = train_run(c, *fx.bf, data, (root / "straight").string(), 6, false);
  train_run(c, *fx.bf, data, (root / "resumed").string(), 3, false);
  const auto [l2, p2] = train_run(c, *fx.bf, data, (root / "resumed").string(), 6, true);
  EXPECT_EQ(p1, p2) << "bf16 resume on the CPU is not bit-identical";
  ASSERT_EQ(l1.size(), lc.size());
  for (size_t i = 0; i < l1.size(); ++i) {
    std::printf("step %zu loss fp32 %.6f bf16 %.6f\n", i + 1, lc[i], l1[i]);
    EXPECT_NEAR(l1[i], lc[i], 5e-2 * std::fabs(lc[i])) << "bf16 step " << i + 1;
  }
  for (size_t i = 0; i < l2.size(); ++i) EXPECT_EQ(l2[i], l1[3 + i]) << "resumed step " << i + 4;
  fs::remove_all(root);
}
