// Backend::attention_varlen_fwd/bwd (FiTv2's packed batches, docs/fit.md) on the CPU: each sample's
// first lens[b] rows against a float64 attention over those rows alone (forward, logsumexp,
// backward), padded rows zero, the float64 backward against finite differences, and full lengths
// bit-identical to attention_fwd / attention_bwd.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "attention_ref.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

namespace {

using VecF = std::vector<float>;
using VecD = std::vector<double>;

uvit::Backend& be() {
  static auto b = uvit::make_cpu_backend();
  return *b;
}

VecF randv(size_t n, unsigned seed, float amp) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-amp, amp);
  VecF v(n);
  for (auto& x : v) x = u(g);
  return v;
}

// The official masked attention: key j is seen by query i iff both are valid or both padded
// (mask_q == mask_k); padded rows' outputs are then multiplied by the mask (zero), so their
// gradient never flows (dout of padded rows is taken as zero): the reference with lengths.
uvit_test::AttnRef varlen_ref(const VecD& qkv, const VecD& dout, const std::vector<int32_t>& lens,
                              int N, int H, int Dh, double scale) {
  return uvit_test::attn_ref(qkv, dout, int(lens.size()), N, H, Dh, scale, nullptr, &lens);
}

void expect_near_all(const VecF& got, const VecD& want, double tol, const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double e = std::fabs(double(got[i]) - want[i]);
    if (!(e <= worst)) worst = e, at = i;
  }
  EXPECT_LE(worst, tol) << what << ": worst at " << at << " got " << got[at] << " want "
                        << want[at];
}

}  // namespace

TEST(AttentionVarlen, AgainstFloat64) {
  struct Case {
    int N, H, Dh;
    std::vector<int32_t> lens;
  };
  const Case cases[] = {{9, 2, 8, {8, 9}},                 // FiT's 2x4 and 3x3 grids padded to 9
                        {7, 1, 16, {1, 7, 3}},             // a single valid token
                        {200, 2, 32, {200, 130, 129, 5}},  // more than one 128-query block
                        {65, 3, 72, {64, 65}}};
  for (const Case& c : cases) {
    const int B = int(c.lens.size()), D = c.H * c.Dh;
    const double scale = 1 / std::sqrt(double(c.Dh));
    SCOPED_TRACE(testing::Message() << "N=" << c.N << " H=" << c.H << " Dh=" << c.Dh);
    const VecF qkv = randv(size_t(B) * c.N * 3 * D, 11 + c.N, 1.5f);
    VecF dout = randv(size_t(B) * c.N * D, 12 + c.N, 1.f);
    const uvit_test::AttnRef ref =
        varlen_ref(VecD(qkv.begin(), qkv.end()), VecD(dout.begin(), dout.end()), c.lens, c.N, c.H,
                   c.Dh, scale);
    VecF out(dout.size(), NAN), lse(size_t(B) * c.H * c.N, NAN), dqkv(qkv.size(), NAN);
    be().attention_varlen_fwd(qkv.data(), c.lens.data(), out.data(), lse.data(), B, c.N, c.H, c.Dh,
                              float(scale));
    expect_near_all(out, ref.out, 2e-6, "out (padded rows 0)");
    expect_near_all(lse, ref.lse, 4e-6, "lse (padded rows 0)");
    // The padded rows of dout are whatever the caller has: they must not matter.
    be().attention_varlen_bwd(dout.data(), qkv.data(), out.data(), lse.data(), c.lens.data(),
                              dqkv.data(), B, c.N, c.H, c.Dh, float(scale));
    expect_near_all(dqkv, ref.dqkv, 2e-5, "dqkv (padded rows 0)");
  }
}

// The float64 reference's backward against central differences of sum(out * g) over valid rows.
TEST(AttentionVarlen, ReferenceGradientByFiniteDifferences) {
  const std::vector<int32_t> lens{3, 5};
  const int N = 5, H = 2, Dh = 4, D = H * Dh;
  const VecF q = randv(size_t(2) * N * 3 * D, 5, 1.5f), gf = randv(size_t(2) * N * D, 6, 1.f);
  VecD x(q.begin(), q.end()), g(gf.begin(), gf.end());
  const uvit_test::AttnRef r = varlen_ref(x, g, lens, N, H, Dh, 0.5);
  auto f = [&](const VecD& v) {
    const uvit_test::AttnRef o = varlen_ref(v, {}, lens, N, H, Dh, 0.5);
    double s = 0;
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < lens[size_t(b)]; ++i)
        for (int c = 0; c < D; ++c)
          s += o.out[(size_t(b) * N + i) * D + c] * g[(size_t(b) * N + i) * D + c];
    return s;
  };
  for (size_t k = 0; k < x.size(); k += 7) {
    const double h = 1e-5, x0 = x[k];
    x[k] = x0 + h;
    const double fp = f(x);
    x[k] = x0 - h;
    const double fm = f(x);
    x[k] = x0;
    EXPECT_NEAR(r.dqkv[k], (fp - fm) / (2 * h), 1e-7) << "element " << k;
  }
}

TEST(AttentionVarlen, FullLengthIsTheDenseOpBitForBit) {
  const int B = 3, N = 33, H = 2, Dh = 16, D = H * Dh;
  const std::vector<int32_t> lens(B, N);
  const VecF qkv = randv(size_t(B) * N * 3 * D, 21, 1.5f), dout = randv(size_t(B) * N * D, 22, 1.f);
  VecF o1(dout.size()), o2(dout.size()), l1(size_t(B) * H * N), l2(l1.size());
  VecF d1(qkv.size()), d2(qkv.size());
  be().attention_fwd(qkv.data(), o1.data(), l1.data(), B, N, H, Dh, 0.25f);
  be().attention_varlen_fwd(qkv.data(), lens.data(), o2.data(), l2.data(), B, N, H, Dh, 0.25f);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(l1, l2);
  be().attention_bwd(dout.data(), qkv.data(), o1.data(), l1.data(), d1.data(), B, N, H, Dh, 0.25f);
  be().attention_varlen_bwd(dout.data(), qkv.data(), o2.data(), l2.data(), lens.data(), d2.data(),
                            B, N, H, Dh, 0.25f);
  EXPECT_EQ(d1, d2);
}

TEST(AttentionVarlen, RefusesALengthOutsideTheSequence) {
  const std::vector<int32_t> lens{0};
  VecF qkv(3 * 4 * 2, 0.f), out(4 * 2);
  try {
    be().attention_varlen_fwd(qkv.data(), lens.data(), out.data(), nullptr, 1, 4, 1, 2, 1.f);
    FAIL() << "no error";
  } catch (const uvit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("sample 0 has 0 valid tokens"), std::string::npos)
        << e.what();
  }
}
