// The CPU backend's bf16 mode (docs/cpu_bf16.md) against its fp32 mode: the GEMMs (all transposes,
// padded leading dimensions, alpha/beta, the fp32-C weight gradient, linear), attention forward
// and backward, the adaLN kernels, the whole network of every family (forward and gradients),
// training losses, and bit-identical resume; the vector bf16 <-> fp32 conversions against the
// scalar rounding, and the element-wise kernels' bf16 outputs against their fp32 outputs rounded
// (bit for bit). The elementwise, norm and token kernels are also compared in
// test_cuda_kernels.cpp (its "cpu bf16" mode). Inputs are rounded to bf16 first so both modes
// see the same values; the bounds are those of the CUDA bf16 tests. Skipped, saying so, where the
// CPU has no bf16 units.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/act.hpp"
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
        for (const auto& [alpha, beta] : {std::pair{1.f, 0.f}, std::pair{0.5f, 1.f}}) {
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

// Varlen (FiT's packed batches): each sample's first lens[b] tokens, padded rows zero. The bf16
// mode copies each head's valid rows into dense operands for oneDNN (docs/cpu_bf16.md).
TEST(CpuBf16, AttentionVarlenMatchesFp32) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  const int B = 3, N = 259, H = 2, Dh = 64, D = H * Dh;
  const std::vector<int32_t> lens = {259, 130, 1};
  const size_t nqkv = size_t(B) * N * 3 * D, nout = size_t(B) * N * D, nlse = size_t(B) * H * N;
  const VecF qkv = round_bf16(randv(nqkv, 21, -2.f, 2.f)), dout = round_bf16(randv(nout, 22));
  const float scale = 1.f / std::sqrt(float(Dh));
  VecF out(nout), lse(nlse), dqkv(nqkv);
  fx.f32->attention_varlen_fwd(qkv.data(), lens.data(), out.data(), lse.data(), B, N, H, Dh, scale);
  Bf16 q(qkv), o(VecF(nout, 5.f));
  VecF lse_bf(nlse, 5.f);
  fx.bf->attention_varlen_fwd(q.p(), lens.data(), o.p(), lse_bf.data(), B, N, H, Dh, scale);
  compare("varlen fwd out", o.f32(), out, 1e-2);
  compare("varlen fwd lse", lse_bf, lse, 1e-5);
  const VecF out_r = round_bf16(out);
  fx.f32->attention_varlen_bwd(dout.data(), qkv.data(), out_r.data(), lse.data(), lens.data(),
                               dqkv.data(), B, N, H, Dh, scale);
  Bf16 d(dout), orr(out_r), dq(VecF(nqkv, 123.f));
  fx.bf->attention_varlen_bwd(d.p(), q.p(), orr.p(), lse.data(), lens.data(), dq.p(), B, N, H, Dh,
                              scale);
  compare("varlen bwd dqkv", dq.f32(), dqkv, 1e-2);
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

// ---- the vector bf16 <-> fp32 conversions (src/backend/cpu/act.hpp) ----

namespace {

uint16_t narrow_bits(float f) {
  cpu::bf16 h{};
  cpu::narrow(&h, &f, 1);
  return h.bits;
}

// narrow() over v, at every tail length of the 16- and 32-lane loops, against to_bf16 bit for bit.
void expect_narrow_matches_scalar(const std::vector<uint32_t>& bits, const char* what) {
  VecF f(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) f[i] = std::bit_cast<float>(bits[i]);
  std::vector<cpu::bf16> got(f.size());
  cpu::narrow(got.data(), f.data(), long(f.size()));
  size_t bad = 0;
  for (size_t i = 0; i < f.size(); ++i)
    if (got[i].bits != cpu::to_bf16(f[i]).bits && bad++ < 5)
      ADD_FAILURE() << what << ": 0x" << std::hex << bits[i] << " -> 0x" << got[i].bits
                    << ", to_bf16 gives 0x" << cpu::to_bf16(f[i]).bits;
  EXPECT_EQ(bad, 0u) << what;
}

}  // namespace

TEST(CpuBf16Convert, EdgeCasesMatchScalarRounding) {
  // Runs on every CPU: the AVX512-BF16 path where the build targets it, the portable one otherwise.
  const std::vector<uint32_t> edge = {
      0x3f808000u,               // 1 + 2^-8: a tie, to the even 1
      0x3f818000u,               // 1 + 3 * 2^-8: a tie, to the even 1 + 2^-6
      0xbf808000u, 0xbf818000u,  // negative ties
      0x3f808001u, 0x3f807fffu,  // just above / below a tie
      0x7f7fffffu,               // max finite: rounds up to +inf
      0x7f7f7fffu,               // the largest that rounds to the max finite bf16
      0x7f800000u, 0xff800000u,  // +-inf
      0x7fc00000u, 0xffc00000u,  // quiet NaNs
      0x7f800001u, 0x7f80ffffu,  // signalling NaNs whose payload sits in the dropped bits
      0x7fbfffffu, 0xffffffffu,  // NaNs with full payloads
      0x00000000u, 0x80000000u,  // +-0
      0x00000001u, 0x80000001u,  // the smallest denormals: round to +-0
      0x00008000u, 0x00018000u,  // denormal ties
      0x0000c000u, 0x000f1234u,  // denormals that round to bf16 denormals
      0x007fffffu, 0x807fffffu,  // the largest denormals: round up to +-FLT_MIN
      0x00800000u, 0x00800001u,  // FLT_MIN and its neighbour
  };
  for (uint32_t b : edge)
    EXPECT_EQ(narrow_bits(std::bit_cast<float>(b)), cpu::to_bf16(std::bit_cast<float>(b)).bits)
        << std::hex << "0x" << b;
  // Known values: the ties, +inf from max finite, a NaN stays a NaN, -0 keeps its sign, a
  // denormal is not flushed (vcvtneps2bf16 alone would give 0).
  EXPECT_EQ(narrow_bits(std::bit_cast<float>(0x3f808000u)), 0x3f80);
  EXPECT_EQ(narrow_bits(std::bit_cast<float>(0x3f818000u)), 0x3f82);
  EXPECT_EQ(narrow_bits(std::bit_cast<float>(0x7f7fffffu)), 0x7f80);
  EXPECT_EQ(narrow_bits(std::bit_cast<float>(0x7f800001u)), 0x7fc0);
  EXPECT_EQ(narrow_bits(-0.f), 0x8000);
  EXPECT_EQ(narrow_bits(std::bit_cast<float>(0x000f1234u)), 0x000f);
  // Every edge case in every lane of a 32-lane block and of each tail length.
  for (size_t n = 1; n <= 70; ++n) {
    std::vector<uint32_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = edge[(i * 7 + n) % edge.size()];
    expect_narrow_matches_scalar(v, "edge block");
  }
  // One denormal among normal values: its block is redone, the others keep the vector result.
  std::vector<uint32_t> one(64, 0x3f818000u);
  one[37] = 0x000f1234u;
  expect_narrow_matches_scalar(one, "one denormal");
}

TEST(CpuBf16Convert, RandomBitsMatchScalarRounding) {
  std::mt19937 rng(42);
  std::vector<uint32_t> bits(1000003);  // not a multiple of 16 or 32: the tails too
  for (auto& b : bits) b = rng();       // every class: normals, denormals, NaNs, infinities
  expect_narrow_matches_scalar(bits, "random bits");
  std::normal_distribution<float> nd;  // and activation-like values
  for (auto& b : bits) b = std::bit_cast<uint32_t>(nd(rng));
  expect_narrow_matches_scalar(bits, "random normal");
}

TEST(CpuBf16Convert, WidenIsExactForEveryBf16) {
  std::vector<cpu::bf16> h(65536 + 5);
  for (size_t i = 0; i < h.size(); ++i) h[i].bits = uint16_t(i);
  VecF f(h.size());
  cpu::widen(f.data(), h.data(), long(h.size()));
  for (size_t i = 0; i < h.size(); ++i)
    ASSERT_EQ(std::bit_cast<uint32_t>(f[i]), uint32_t(h[i].bits) << 16) << i;
  // load16/store16 round trip of any lane count: bf16 -> fp32 -> bf16 is the identity (NaNs too:
  // a quiet NaN's bits survive to_bf16's quieting).
  for (long m = 1; m <= 16; ++m) {
    std::vector<cpu::bf16> src(16), dst(16, cpu::bf16{0x1234});
    for (long j = 0; j < 16; ++j) src[size_t(j)].bits = uint16_t(0x3f80 + 977 * j + m);
    cpu::store16(dst.data(), cpu::load16(src.data(), m), m);
    for (long j = 0; j < 16; ++j)
      EXPECT_EQ(dst[size_t(j)].bits, j < m ? src[size_t(j)].bits : 0x1234) << m << " " << j;
  }
}

// The element-wise kernels share one template between the modes and compute in fp32, so on
// bf16-representable inputs the bf16 mode's outputs are the fp32 mode's outputs rounded to bf16,
// bit for bit (the block and 16-lane restructuring changed no arithmetic). Odd sizes exercise the
// tails.
TEST(CpuBf16, ElementwiseKernelsAreFp32RoundedBitForBit) {
  REQUIRE_CPU_BF16();
  Fixture fx;
  auto bits = [](const VecF& v) {
    std::vector<uint16_t> b(v.size());
    for (size_t i = 0; i < v.size(); ++i) b[i] = float_to_bf16(v[i]);
    return b;
  };
  auto expect_rounded = [&](const char* what, const Bf16& got, const VecF& ref) {
    ASSERT_EQ(got.h.size(), ref.size());
    const std::vector<uint16_t> want = bits(ref);
    size_t bad = 0;
    for (size_t i = 0; i < ref.size(); ++i)
      if (got.h[i] != want[i] && !(std::isnan(ref[i]) && std::isnan(bf16_to_float(got.h[i]))) &&
          bad++ < 3)
        ADD_FAILURE() << what << "[" << i << "]: 0x" << std::hex << got.h[i] << " vs 0x" << want[i];
    EXPECT_EQ(bad, 0u) << what;
  };
  const size_t n = 3 * 1024 + 21;
  const VecF x = round_bf16(randv(n, 31, -5.f, 5.f)), dy = round_bf16(randv(n, 32));
  Bf16 bx(x), bdy(dy);
  {
    // The activation maps read bf16 inputs' results from tables (activations.cpp): every one of
    // the 65536 bf16 values (NaNs and infinities too; a NaN result need only stay a NaN).
    const size_t n = 65536 + 21;
    VecF x(n);
    for (size_t i = 0; i < n; ++i) x[i] = bf16_to_float(uint16_t(i));
    const VecF dy = round_bf16(randv(n, 32));
    Bf16 bx(x), bdy(dy);
    VecF ref(n);
    Bf16 out(VecF(n, 0.f));
    fx.f32->gelu_fwd(x.data(), ref.data(), n);
    fx.bf->gelu_fwd(bx.p(), out.p(), n);
    expect_rounded("gelu_fwd", out, ref);
    fx.f32->gelu_bwd(dy.data(), x.data(), ref.data(), n);
    fx.bf->gelu_bwd(bdy.p(), bx.p(), out.p(), n);
    expect_rounded("gelu_bwd", out, ref);
    fx.f32->gelu_tanh_fwd(x.data(), ref.data(), n);
    fx.bf->gelu_tanh_fwd(bx.p(), out.p(), n);
    expect_rounded("gelu_tanh_fwd", out, ref);
    fx.f32->gelu_tanh_bwd(dy.data(), x.data(), ref.data(), n);
    fx.bf->gelu_tanh_bwd(bdy.p(), bx.p(), out.p(), n);
    expect_rounded("gelu_tanh_bwd", out, ref);
    fx.f32->silu_fwd(x.data(), ref.data(), n);
    fx.bf->silu_fwd(bx.p(), out.p(), n);
    expect_rounded("silu_fwd", out, ref);
    fx.f32->silu_bwd(dy.data(), x.data(), ref.data(), n);
    fx.bf->silu_bwd(bdy.p(), bx.p(), out.p(), n);
    expect_rounded("silu_bwd", out, ref);
  }
  {
    VecF y = dy;  // axpy_act: y += a x, in place
    Bf16 by(dy);
    fx.f32->axpy_act(y.data(), x.data(), 0.75f, n);
    fx.bf->axpy_act(by.p(), bx.p(), 0.75f, n);
    expect_rounded("axpy_act", by, y);
  }
  for (const int D : {77, 512}) {  // LayerNorm and add_bias rows, with and without a tail
    const int M = int(n) / D;
    const size_t md = size_t(M) * D;
    const VecF xs(x.begin(), x.begin() + long(md)), gs(dy.begin(), dy.begin() + long(md));
    const VecF w = round_bf16(randv(size_t(D), 33)), b = round_bf16(randv(size_t(D), 34));
    Bf16 bxs(xs), bgs(gs), bb(b);
    VecF y(md), mu(static_cast<size_t>(M)), rs(static_cast<size_t>(M));
    VecF mu2(static_cast<size_t>(M)), rs2(static_cast<size_t>(M));
    Bf16 out(VecF(md, 0.f));
    fx.f32->layernorm_fwd(xs.data(), w.data(), b.data(), y.data(), mu.data(), rs.data(), M, D,
                          1e-6f);
    fx.bf->layernorm_fwd(bxs.p(), w.data(), b.data(), out.p(), mu2.data(), rs2.data(), M, D, 1e-6f);
    expect_rounded("layernorm_fwd", out, y);
    EXPECT_EQ(mu, mu2);
    EXPECT_EQ(rs, rs2);
    // dx accumulates (+=) into bf16-representable values; dw, db are fp32 and identical.
    VecF dx = round_bf16(randv(md, 35)), dw(size_t(D), 0.f), db(size_t(D), 0.f);
    VecF dw2 = dw, db2 = db;
    Bf16 bdx(dx);
    fx.f32->layernorm_bwd(gs.data(), xs.data(), w.data(), mu.data(), rs.data(), dx.data(),
                          dw.data(), db.data(), M, D);
    fx.bf->layernorm_bwd(bgs.p(), bxs.p(), w.data(), mu.data(), rs.data(), bdx.p(), dw2.data(),
                         db2.data(), M, D);
    expect_rounded("layernorm_bwd dx", bdx, dx);
    EXPECT_EQ(dw, dw2);
    EXPECT_EQ(db, db2);
    VecF yb = xs;  // add_bias in place
    Bf16 byb(xs);
    fx.f32->add_bias(yb.data(), b.data(), M, D);
    fx.bf->add_bias(byb.p(), bb.p(), M, D);
    expect_rounded("add_bias", byb, yb);
  }
  // adaLN, a feature count past one 64-feature block of the backward sums and not a multiple of 16.
  const int B = 3, N = 11, D = 85, ldm = 6 * D;
  const size_t nt = size_t(B) * N * D;
  const VecF xa(x.begin(), x.begin() + long(nt)), ya(dy.begin(), dy.begin() + long(nt));
  const VecF mod = round_bf16(randv(size_t(B) * ldm, 36));
  Bf16 bxa(xa), bya(ya), bm(mod);
  VecF ref(nt);
  Bf16 out(VecF(nt, 0.f));
  for (const bool with_shift : {true, false}) {
    fx.f32->modulate_fwd(xa.data(), with_shift ? mod.data() : nullptr, mod.data() + D, ldm,
                         ref.data(), B, N, D);
    fx.bf->modulate_fwd(bxa.p(), with_shift ? bm.p() : nullptr, fx.bf->act_at(bm.p(), D), ldm,
                        out.p(), B, N, D);
    expect_rounded(with_shift ? "modulate_fwd" : "modulate_fwd (no shift)", out, ref);
  }
  fx.f32->gate_fwd(xa.data(), ya.data(), mod.data() + 2 * D, ldm, ref.data(), B, N, D);
  fx.bf->gate_fwd(bxa.p(), bya.p(), fx.bf->act_at(bm.p(), 2 * D), ldm, out.p(), B, N, D);
  expect_rounded("gate_fwd", out, ref);
  // adaLN backward: dx and dy, and the per-sample sums over tokens (fp32 in both modes), rounded.
  const size_t nm = size_t(B) * ldm;
  VecF dsh(nm, 0.f), dsc(nm, 0.f), dg(nm, 0.f);
  Bf16 bdsh(dsh), bdsc(dsc), bdg(dg);
  fx.f32->modulate_bwd(ya.data(), xa.data(), mod.data() + D, ldm, ref.data(), dsh.data(),
                       dsc.data(), B, N, D);
  fx.bf->modulate_bwd(bya.p(), bxa.p(), fx.bf->act_at(bm.p(), D), ldm, out.p(), bdsh.p(), bdsc.p(),
                      B, N, D);
  expect_rounded("modulate_bwd dx", out, ref);
  expect_rounded("modulate_bwd dshift", bdsh, dsh);
  expect_rounded("modulate_bwd dscale", bdsc, dsc);
  fx.f32->gate_bwd(ya.data(), xa.data(), mod.data() + 2 * D, ldm, ref.data(), dg.data(), B, N, D);
  fx.bf->gate_bwd(bya.p(), bxa.p(), fx.bf->act_at(bm.p(), 2 * D), ldm, out.p(), bdg.p(), B, N, D);
  expect_rounded("gate_bwd dy", out, ref);
  expect_rounded("gate_bwd dgate", bdg, dg);
}
