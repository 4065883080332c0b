// Backend::bias_grad_strided on the CPU (fp32 and, where the CPU has bf16 units, bf16 acts): the
// same bits as bias_grad over the rows copied together (the same column sums in the same order),
// the per-row bias_grad calls it replaced within fp32 rounding, a double-precision sum, and its
// argument check. The CUDA version is compared with this one in test_cuda_bias_grad_strided.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "bias_grad_cases.hpp"
#include "gpu_compare.hpp"
#include "uvit/backend.hpp"
#include "uvit/error.hpp"

using namespace uvit;
using namespace uvit::test;
using VecF = std::vector<float>;

TEST(BiasGradStrided, MatchesTheCompactedRowsAndThePerRowLoop) {
  std::vector<std::string> precs = {"fp32"};
  if (cpu_has_bf16()) precs.push_back("bf16");
  for (const std::string& prec : precs) {
    auto be = make_backend("cpu", prec);
    for (const BiasGradCase& c : bias_grad_cases()) {
      SCOPED_TRACE(prec + " M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
                   " ld=" + std::to_string(c.ld));
      const size_t total = size_t(c.M - 1) * c.ld + c.N;
      const VecF host = randv(total, 3);
      DeviceBuffer dy(*be, total * 4), packed(*be, size_t(c.M) * c.N * 4);
      be->to_act(host.data(), dy.f32(), total);
      be->copy_act_2d(packed.f32(), c.N, dy.f32(), c.ld, c.M, c.N);
      const VecF db0 = randv(size_t(c.N), 4, -5.f, 5.f);
      VecF got = db0, compact = db0, per_row = db0;
      be->bias_grad_strided(dy.f32(), c.ld, got.data(), c.M, c.N);
      be->bias_grad(packed.f32(), compact.data(), c.M, c.N);
      for (int m = 0; m < c.M; ++m)
        be->bias_grad(be->act_at(dy.f32(), size_t(m) * c.ld), per_row.data(), 1, c.N);
      EXPECT_EQ(std::memcmp(got.data(), compact.data(), got.size() * 4), 0);
      compare("per-row loop", got, per_row, 1e-6);
      // The reference: the act values (bf16-rounded in bf16 mode) summed in double.
      VecF acts(total);
      be->from_act(dy.f32(), acts.data(), total);
      VecF want(size_t(c.N));
      for (int n = 0; n < c.N; ++n) {
        double s = 0;
        for (int m = 0; m < c.M; ++m) s += acts[size_t(m) * c.ld + n];
        want[size_t(n)] = float(db0[size_t(n)] + s);
      }
      // Exactly: every column is summed over the rows in order, in double (docs/kernels.md).
      EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * 4), 0);
      // Elements between the rows are not read: changing them changes nothing.
      if (c.ld > c.N) {
        VecF other = host;
        for (int m = 0; m + 1 < c.M; ++m)
          for (long k = c.N; k < c.ld; ++k) other[size_t(m) * c.ld + k] = 1e30f;
        be->to_act(other.data(), dy.f32(), total);
        VecF again = db0;
        be->bias_grad_strided(dy.f32(), c.ld, again.data(), c.M, c.N);
        EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * 4), 0);
      }
    }
    VecF db(4);
    DeviceBuffer dy(*be, 16 * 4);
    EXPECT_THROW(be->bias_grad_strided(dy.f32(), 3, db.data(), 2, 4), Error);
  }
}
