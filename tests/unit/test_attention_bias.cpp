// Attention with an additive relative position bias (Backend::attention_bias_fwd/bwd, MDT's BEiT
// bias, docs/mdt.md) on the CPU against a float64 reference written here: the scores are
// scale q.k + table[index[pi, pj], h], over the full grid and over gathered token subsets (a
// masked pass's ids_keep). The reference's analytic gradients (dqkv and the table gradient, a
// scatter-add of dS over the index) are checked by central finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "uvit/backend.hpp"

namespace {

using uvit::Backend;
using VecF = std::vector<float>;
using VecD = std::vector<double>;
using VecI = std::vector<int32_t>;

Backend& be() {
  static auto b = uvit::make_cpu_backend();
  return *b;
}

VecF randv(size_t n, unsigned seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  VecF v(n);
  for (auto& x : v) x = u(g);
  return v;
}

VecD to_d(const VecF& v) { return VecD(v.begin(), v.end()); }

// The BEiT index of a g x g grid: (dy + g - 1) (2g - 1) + (dx + g - 1) (docs/mdt.md).
VecI rel_index(int g) {
  const int L = g * g;
  VecI idx(size_t(L) * L);
  for (int i = 0; i < L; ++i)
    for (int j = 0; j < L; ++j)
      idx[size_t(i) * L + j] = (i / g - j / g + g - 1) * (2 * g - 1) + (i % g - j % g + g - 1);
  return idx;
}

struct Problem {
  int B, N, H, Dh, g;
  VecI index, ids;  // ids empty: the full grid (N = g^2)
  int R() const { return (2 * g - 1) * (2 * g - 1) + 3; }
  int pos(int b, int i) const { return ids.empty() ? i : ids[size_t(b) * N + i]; }
};

struct Ref {
  VecD out, lse, dqkv, dtable;
};

Ref reference(const Problem& p, const VecD& qkv, const VecD& table, const VecD& dout,
              double scale) {
  const int B = p.B, N = p.N, H = p.H, Dh = p.Dh, D = H * Dh, Lf = p.g * p.g;
  Ref r{VecD(size_t(B) * N * D), VecD(size_t(B) * H * N), VecD(qkv.size()), VecD(table.size())};
  auto at = [&](int b, int n, int k, int h, int d) {
    return qkv[(size_t(b) * N + n) * 3 * D + k * D + h * Dh + d];
  };
  auto slot = [&](int b, int i, int j, int h) {
    return size_t(p.index[size_t(p.pos(b, i)) * Lf + p.pos(b, j)]) * H + h;
  };
  VecD P(size_t(N) * N), dS(size_t(N) * N);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      for (int i = 0; i < N; ++i) {
        double mx = -1e300;
        for (int j = 0; j < N; ++j) {
          double s = 0;
          for (int d = 0; d < Dh; ++d) s += at(b, i, 0, h, d) * at(b, j, 1, h, d);
          s = s * scale + table[slot(b, i, j, h)];
          P[size_t(i) * N + j] = s;
          mx = std::max(mx, s);
        }
        double sum = 0;
        for (int j = 0; j < N; ++j) sum += std::exp(P[size_t(i) * N + j] - mx);
        for (int j = 0; j < N; ++j)
          P[size_t(i) * N + j] = std::exp(P[size_t(i) * N + j] - mx) / sum;
        r.lse[(size_t(b) * H + h) * N + i] = mx + std::log(sum);
        for (int d = 0; d < Dh; ++d) {
          double o = 0;
          for (int j = 0; j < N; ++j) o += P[size_t(i) * N + j] * at(b, j, 2, h, d);
          r.out[(size_t(b) * N + i) * D + h * Dh + d] = o;
        }
      }
      if (dout.empty()) continue;
      auto dO = [&](int i, int d) { return dout[(size_t(b) * N + i) * D + h * Dh + d]; };
      for (int i = 0; i < N; ++i) {
        double rs = 0;
        for (int j = 0; j < N; ++j) {
          double s = 0;
          for (int d = 0; d < Dh; ++d) s += dO(i, d) * at(b, j, 2, h, d);
          dS[size_t(i) * N + j] = s;
          rs += s * P[size_t(i) * N + j];
        }
        for (int j = 0; j < N; ++j) {
          double& e = dS[size_t(i) * N + j];
          e = P[size_t(i) * N + j] * (e - rs);
          r.dtable[slot(b, i, j, h)] += e;
        }
      }
      for (int i = 0; i < N; ++i)
        for (int d = 0; d < Dh; ++d) {
          double dq = 0, dk = 0, dv = 0;
          for (int j = 0; j < N; ++j) {
            dq += dS[size_t(i) * N + j] * at(b, j, 1, h, d);
            dk += dS[size_t(j) * N + i] * at(b, j, 0, h, d);
            dv += P[size_t(j) * N + i] * dO(j, d);
          }
          const size_t o = (size_t(b) * N + i) * 3 * D + h * Dh + d;
          r.dqkv[o] = scale * dq;
          r.dqkv[o + D] = scale * dk;
          r.dqkv[o + 2 * D] = dv;
        }
    }
  return r;
}

void expect_close(const VecF& a, const VecD& b, double atol, double rtol, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(b[i]))) {
      ADD_FAILURE() << what << "[" << i << "]: got " << a[i] << ", expected " << b[i];
      return;
    }
}

// ids [B, N]: per sample, N distinct positions of the g^2 grid in a shuffled order.
VecI random_ids(int B, int N, int L, unsigned seed) {
  std::mt19937 g(seed);
  VecI ids;
  for (int b = 0; b < B; ++b) {
    VecI perm(L);
    for (int i = 0; i < L; ++i) perm[i] = i;
    std::shuffle(perm.begin(), perm.end(), g);
    ids.insert(ids.end(), perm.begin(), perm.begin() + N);
  }
  return ids;
}

Problem problem(int B, int H, int Dh, int g, int keep, unsigned seed) {
  Problem p{B, keep ? keep : g * g, H, Dh, g, rel_index(g), {}};
  if (keep) p.ids = random_ids(B, keep, g * g, seed);
  return p;
}

TEST(KernelAttentionBias, IndexFormulaCorners) {
  // 2 x 2 grid: tokens (0,0) (0,1) (1,0) (1,1); 3 x 3 offsets, row offset major.
  const VecI idx = rel_index(2);
  EXPECT_EQ(idx, (VecI{4, 3, 1, 0, 5, 4, 2, 1, 7, 6, 4, 3, 8, 7, 5, 4}));
}

TEST(KernelAttentionBias, ForwardBackwardAgainstFloat64) {
  // Full grids (the eval pass) and gathered subsets (the masked pass), N below and above the
  // kernel's 128-query tile.
  const Problem cases[] = {problem(2, 2, 8, 3, 0, 1),     problem(2, 3, 16, 4, 0, 2),
                           problem(1, 2, 32, 12, 0, 3),   problem(2, 2, 8, 4, 9, 4),
                           problem(3, 2, 16, 12, 100, 5), problem(2, 1, 8, 3, 1, 6)};
  for (const Problem& p : cases) {
    SCOPED_TRACE(testing::Message() << "B=" << p.B << " N=" << p.N << " H=" << p.H << " Dh=" << p.Dh
                                    << " g=" << p.g << " ids=" << !p.ids.empty());
    const int D = p.H * p.Dh;
    const double scale = 1 / std::sqrt(double(p.Dh));
    const VecF qkv = randv(size_t(p.B) * p.N * 3 * D, 10 + p.N, -1.5f, 1.5f);
    const VecF table = randv(size_t(p.R()) * p.H, 20 + p.N, -2.f, 2.f);
    const VecF dout = randv(size_t(p.B) * p.N * D, 30 + p.N);
    const Ref ref = reference(p, to_d(qkv), to_d(table), to_d(dout), scale);
    Backend::AttnBias bias;
    bias.table = table.data();
    bias.index = p.index.data();
    bias.ids = p.ids.empty() ? nullptr : p.ids.data();
    bias.R = p.R();
    bias.Lf = p.g * p.g;
    VecF out(dout.size(), NAN), lse(size_t(p.B) * p.H * p.N, NAN);
    be().attention_bias_fwd(qkv.data(), bias, out.data(), lse.data(), p.B, p.N, p.H, p.Dh,
                            float(scale));
    expect_close(out, ref.out, 2e-6, 2e-5, "out");
    expect_close(lse, ref.lse, 2e-6, 2e-6, "lse");
    VecF dqkv(qkv.size(), NAN);
    VecF dtable(table.size(), 0.5f);  // accumulated into
    be().attention_bias_bwd(dout.data(), qkv.data(), out.data(), lse.data(), bias, dqkv.data(),
                            dtable.data(), p.B, p.N, p.H, p.Dh, float(scale));
    expect_close(dqkv, ref.dqkv, 2e-5, 1e-4, "dqkv");
    VecD want = ref.dtable;
    for (auto& w : want) w += 0.5;
    expect_close(dtable, want, 2e-5, 1e-4, "dtable");
  }
}

TEST(KernelAttentionBias, ZeroTableIsPlainAttention) {
  const Problem p = problem(2, 2, 16, 5, 0, 7);
  const int D = p.H * p.Dh;
  const VecF qkv = randv(size_t(p.B) * p.N * 3 * D, 41, -1.5f, 1.5f);
  const VecF table(size_t(p.R()) * p.H, 0.f);
  Backend::AttnBias bias;
  bias.table = table.data();
  bias.index = p.index.data();
  bias.R = p.R();
  bias.Lf = p.N;
  VecF a(size_t(p.B) * p.N * D), b(a.size()), la(size_t(p.B) * p.H * p.N), lb(la.size());
  be().attention_fwd(qkv.data(), a.data(), la.data(), p.B, p.N, p.H, p.Dh, 0.25f);
  be().attention_bias_fwd(qkv.data(), bias, b.data(), lb.data(), p.B, p.N, p.H, p.Dh, 0.25f);
  EXPECT_EQ(a, b);
  EXPECT_EQ(la, lb);
}

TEST(KernelAttentionBias, ReferenceGradientsMatchFiniteDifferences) {
  for (int keep : {0, 5}) {
    const Problem p = problem(2, 2, 3, 3, keep, 11 + keep);
    const int D = p.H * p.Dh;
    const VecD qkv = to_d(randv(size_t(p.B) * p.N * 3 * D, 50, -1.5f, 1.5f));
    const VecD table = to_d(randv(size_t(p.R()) * p.H, 51, -2.f, 2.f));
    const VecD g = to_d(randv(size_t(p.B) * p.N * D, 52));
    const Ref ref = reference(p, qkv, table, g, 0.5);
    auto loss = [&](const VecD& q, const VecD& t) {
      const VecD o = reference(p, q, t, {}, 0.5).out;
      double s = 0;
      for (size_t i = 0; i < o.size(); ++i) s += o[i] * g[i];
      return s;
    };
    const double h = 1e-6;
    for (size_t i = 0; i < qkv.size(); i += 7) {
      VecD a = qkv, b = qkv;
      a[i] += h;
      b[i] -= h;
      const double num = (loss(a, table) - loss(b, table)) / (2 * h);
      EXPECT_NEAR(ref.dqkv[i], num, 1e-6 * (1 + std::fabs(num))) << "qkv " << i;
    }
    // Every table row, the 3 unused ones (gradient 0) included.
    for (size_t i = 0; i < table.size(); ++i) {
      VecD a = table, b = table;
      a[i] += h;
      b[i] -= h;
      const double num = (loss(qkv, a) - loss(qkv, b)) / (2 * h);
      EXPECT_NEAR(ref.dtable[i], num, 1e-6 * (1 + std::fabs(num))) << "table " << i;
    }
    const size_t unused = size_t(p.R() - 3) * p.H;
    for (size_t i = unused; i < table.size(); ++i) EXPECT_EQ(ref.dtable[i], 0.0);
  }
}

}  // namespace
